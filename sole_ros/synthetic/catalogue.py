"""The object classes of the synthetic scenes: how each is built from primitives and described.

Classes are told apart by shape (a mug is an open cylinder with a handle, a can a short closed
cylinder, a bottle a tall cylinder with a neck and cap, a book a thin flat box...) and vary in size
and colour, so a model cannot recognise a class from its colour alone. Each builder returns the
primitives, the footprint radius used for placement, and the words its caption is made of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sole_ros.synthetic.primitives import Box, Cylinder, Primitive, Sphere

# Named colours (RGB albedo in [0, 1]); the name goes into the caption.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.10, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.15, 0.30, 0.85),
    "yellow": (0.92, 0.85, 0.15),
    "orange": (0.95, 0.50, 0.10),
    "purple": (0.55, 0.20, 0.70),
    "white": (0.92, 0.92, 0.92),
    "black": (0.08, 0.08, 0.08),
    "gray": (0.50, 0.50, 0.50),
    "brown": (0.50, 0.30, 0.12),
    "pink": (0.95, 0.55, 0.70),
}
WOOD_COLOURS = ("brown", "white", "black", "gray")

# Size ranges of the small objects (metres), drawn uniformly. "compact": the first catalogue, on
# which demo.ckpt was trained: every object fits a 0.18 m cube but for bottles. "household": the
# spread of real products, from typical product dimensions (a 0.33 l can is 6.6 cm across and
# 11.5 cm tall, a 500 ml tall can 16.8 cm; a 1.5 l bottle about 31 cm with its neck; a cereal box
# 19 x 7 x 27 cm, a shoe box 30 x 18 x 11; a serving bowl up to 24 cm across; a hardcover
# 16 x 24 cm, an atlas 23 x 30; a tennis ball 6.7 cm, a football 22 cm). Real scans (mOSD) show
# objects of 0.16-0.33 m: a network trained on compact sizes wants them shrunk to 0.65-0.7, one
# trained on household sizes does not (sole_ros/weights/README.md, "Real product sizes").
OBJECT_SIZES: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "compact": {
        "mug": {"radius": (0.035, 0.05), "height": (0.08, 0.11)},
        "bowl": {"radius": (0.06, 0.09)},
        "bottle": {"radius": (0.03, 0.04), "height": (0.16, 0.24)},
        "box": {"length": (0.08, 0.18), "width": (0.08, 0.16), "height": (0.06, 0.14)},
        "ball": {"radius": (0.04, 0.07)},
        "can": {"radius": (0.028, 0.034), "height": (0.10, 0.125)},
        "book": {"length": (0.14, 0.22), "width": (0.10, 0.16), "thickness": (0.02, 0.04)},
    },
    "household": {
        "mug": {"radius": (0.037, 0.05), "height": (0.085, 0.12)},
        "bowl": {"radius": (0.06, 0.12)},
        "bottle": {"radius": (0.03, 0.045), "height": (0.16, 0.26)},
        "box": {"length": (0.10, 0.30), "width": (0.06, 0.20), "height": (0.06, 0.28)},
        "ball": {"radius": (0.033, 0.11)},
        "can": {"radius": (0.028, 0.05), "height": (0.09, 0.17)},
        "book": {"length": (0.17, 0.30), "width": (0.11, 0.23), "thickness": (0.015, 0.05)},
    },
}

# Object classes: small ones stand on tables, furniture on the floor. Ids are indices into CLASS_NAMES.
SMALL_OBJECT_CLASSES = ("mug", "bowl", "bottle", "box", "ball", "can", "book")
FURNITURE_CLASSES = ("chair", "table")
CLASS_NAMES: tuple[str, ...] = SMALL_OBJECT_CLASSES + FURNITURE_CLASSES
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}


@dataclass
class BuiltObject:
    primitives: list[Primitive]
    footprint_radius: float
    colour: str
    # Caption parts: the head noun phrase ("a red mug") and extra phrases ("a handle").
    head_phrase: str
    extra_phrases: tuple[str, ...] = ()
    caption_tail: str = ""  # words after the head phrase that carry the extra phrases
    # Furniture that other objects stand on: the height of its top and the top's (w, d) in its yaw frame.
    support_height: float | None = None
    support_size: tuple[float, float] | None = None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _colour(rng: np.random.Generator, choices=None) -> str:
    names = list(choices or COLOURS)
    return names[int(rng.integers(len(names)))]


def _jitter(albedo, rng, amount=0.04):
    return tuple(np.clip(np.asarray(albedo) + rng.uniform(-amount, amount, 3), 0, 1))


def build_mug(rng, x, y, z, yaw, sizes=OBJECT_SIZES["compact"]):
    size = sizes["mug"]
    colour = _colour(rng)
    albedo = _jitter(COLOURS[colour], rng)
    r, h = rng.uniform(*size["radius"]), rng.uniform(*size["height"])
    c, s = np.cos(yaw), np.sin(yaw)
    body = Cylinder(center=(x, y, z + h / 2), radius=r, height=h, open_top=True, albedo=albedo)
    # A C-shaped handle of three bars on the +x side (in the mug's yaw frame).
    t = 0.012
    reach = rng.uniform(0.025, 0.035)
    span = h * 0.6

    def at(dx, dz):
        return (x + c * dx, y + s * dx, z + dz)

    handle = [
        Box(center=at(r + reach / 2, h / 2 + span / 2), yaw=yaw, size=(reach, t, t), albedo=albedo),
        Box(center=at(r + reach / 2, h / 2 - span / 2), yaw=yaw, size=(reach, t, t), albedo=albedo),
        Box(center=at(r + reach, h / 2), yaw=yaw, size=(t, t, span + t), albedo=albedo),
    ]
    return BuiltObject(
        [body, *handle],
        r + reach + t,
        colour,
        f"{_article(colour)} {colour} mug",
        ("a handle",),
        "with a handle",
    )


def build_bowl(rng, x, y, z, yaw, sizes=OBJECT_SIZES["compact"]):
    size = sizes["bowl"]
    colour = _colour(rng)
    r = rng.uniform(*size["radius"])
    depth = r * rng.uniform(0.55, 0.8)
    # A spherical cap below its rim: the shell's lowest point touches the table.
    shell = Sphere(
        center=(x, y, z + r), radius=r, z_max=-r + depth, albedo=_jitter(COLOURS[colour], rng)
    )
    return BuiltObject([shell], r, colour, f"{_article(colour)} {colour} bowl")


def build_bottle(rng, x, y, z, yaw, sizes=OBJECT_SIZES["compact"]):
    size = sizes["bottle"]
    colour = _colour(rng, ("green", "blue", "white", "brown", "red", "orange"))
    cap = _colour(rng, ("white", "black", "red", "blue", "yellow"))
    r, h = rng.uniform(*size["radius"]), rng.uniform(*size["height"])
    neck_r, neck_h = r * 0.45, h * 0.22
    albedo = _jitter(COLOURS[colour], rng)
    parts = [
        Cylinder(center=(x, y, z + h / 2), radius=r, height=h, albedo=albedo),
        Cylinder(
            center=(x, y, z + h + neck_h / 2 - 0.002),
            radius=neck_r,
            height=neck_h + 0.004,
            albedo=albedo,
        ),
        Cylinder(
            center=(x, y, z + h + neck_h + 0.01),
            radius=neck_r * 1.15,
            height=0.02,
            albedo=_jitter(COLOURS[cap], rng),
        ),
    ]
    return BuiltObject(
        parts,
        r,
        colour,
        f"{_article(colour)} {colour} bottle",
        (f"{_article(cap)} {cap} cap",),
        f"with {_article(cap)} {cap} cap",
    )


def build_box(rng, x, y, z, yaw, sizes=OBJECT_SIZES["compact"]):
    size = sizes["box"]
    colour = _colour(rng)
    dims = tuple(rng.uniform(*size[side]) for side in ("length", "width", "height"))
    box = Box(
        center=(x, y, z + dims[2] / 2), yaw=yaw, size=dims, albedo=_jitter(COLOURS[colour], rng)
    )
    return BuiltObject(
        [box], float(np.hypot(dims[0], dims[1]) / 2), colour, f"{_article(colour)} {colour} box"
    )


def build_ball(rng, x, y, z, yaw, sizes=OBJECT_SIZES["compact"]):
    size = sizes["ball"]
    colour = _colour(rng)
    r = rng.uniform(*size["radius"])
    ball = Sphere(center=(x, y, z + r), radius=r, albedo=_jitter(COLOURS[colour], rng))
    return BuiltObject([ball], r, colour, f"{_article(colour)} {colour} ball")


def build_can(rng, x, y, z, yaw, sizes=OBJECT_SIZES["compact"]):
    size = sizes["can"]
    colour = _colour(rng)
    r, h = rng.uniform(*size["radius"]), rng.uniform(*size["height"])
    albedo = _jitter(COLOURS[colour], rng)
    lid = _jitter(COLOURS["gray"], rng)
    parts = [
        Cylinder(center=(x, y, z + h / 2), radius=r, height=h, albedo=albedo),
        # A slightly narrower metal lid on top.
        Cylinder(center=(x, y, z + h + 0.004), radius=r * 0.92, height=0.008, albedo=lid),
    ]
    return BuiltObject(
        parts, r, colour, f"{_article(colour)} {colour} can", ("a metal lid",), "with a metal lid"
    )


def build_book(rng, x, y, z, yaw, sizes=OBJECT_SIZES["compact"]):
    size = sizes["book"]
    colour = _colour(rng)
    w, d, t = (rng.uniform(*size[side]) for side in ("length", "width", "thickness"))
    cover = 0.004
    albedo = _jitter(COLOURS[colour], rng)
    parts = [  # two covers around the white pages
        Box(center=(x, y, z + cover / 2), yaw=yaw, size=(w, d, cover), albedo=albedo),
        Box(
            center=(x, y, z + t / 2),
            yaw=yaw,
            size=(w - 0.006, d - 0.006, t - 2 * cover),
            albedo=_jitter(COLOURS["white"], rng, 0.02),
        ),
        Box(center=(x, y, z + t - cover / 2), yaw=yaw, size=(w, d, cover), albedo=albedo),
    ]
    return BuiltObject(
        parts,
        float(np.hypot(w, d) / 2),
        colour,
        f"{_article(colour)} {colour} book",
        ("white pages",),
        "with white pages",
    )


def build_table(rng, x, y, z, yaw, size=None):
    colour = _colour(rng, WOOD_COLOURS)
    albedo = _jitter(COLOURS[colour], rng)
    w, d = size if size is not None else (rng.uniform(1.0, 1.4), rng.uniform(0.7, 0.9))
    h, top, leg = rng.uniform(0.70, 0.78), 0.04, 0.05
    c, s = np.cos(yaw), np.sin(yaw)
    parts = [Box(center=(x, y, z + h - top / 2), yaw=yaw, size=(w, d, top), albedo=albedo)]
    for sx in (-1, 1):
        for sy in (-1, 1):
            lx, ly = sx * (w / 2 - leg), sy * (d / 2 - leg)
            parts.append(
                Box(
                    center=(x + c * lx - s * ly, y + s * lx + c * ly, z + (h - top) / 2),
                    yaw=yaw,
                    size=(leg, leg, h - top),
                    albedo=albedo,
                )
            )
    return BuiltObject(
        parts,
        float(np.hypot(w, d) / 2),
        colour,
        f"{_article(colour)} {colour} table",
        ("four legs",),
        "with four legs",
        support_height=z + h,
        support_size=(w, d),
    )


def build_chair(rng, x, y, z, yaw):
    colour = _colour(rng, WOOD_COLOURS + ("red", "blue", "green"))
    albedo = _jitter(COLOURS[colour], rng)
    w, seat_h, back_h, leg = (
        rng.uniform(0.40, 0.48),
        rng.uniform(0.42, 0.48),
        rng.uniform(0.35, 0.5),
        0.04,
    )
    c, s = np.cos(yaw), np.sin(yaw)

    def at(lx, ly, lz):
        return (x + c * lx - s * ly, y + s * lx + c * ly, z + lz)

    # The chair faces +x of its yaw frame; the backrest is on the -x side.
    parts = [
        Box(center=at(0, 0, seat_h - 0.02), yaw=yaw, size=(w, w, 0.04), albedo=albedo),
        Box(
            center=at(-w / 2 + 0.02, 0, seat_h + back_h / 2),
            yaw=yaw,
            size=(0.04, w, back_h),
            albedo=albedo,
        ),
    ]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(
                Box(
                    center=at(sx * (w / 2 - leg), sy * (w / 2 - leg), (seat_h - 0.04) / 2),
                    yaw=yaw,
                    size=(leg, leg, seat_h - 0.04),
                    albedo=albedo,
                )
            )
    return BuiltObject(
        parts,
        float(w / np.sqrt(2)),
        colour,
        f"{_article(colour)} {colour} chair",
        ("a backrest",),
        "with a backrest",
    )


BUILDERS: dict[str, Callable[..., BuiltObject]] = {
    "mug": build_mug,
    "bowl": build_bowl,
    "bottle": build_bottle,
    "box": build_box,
    "ball": build_ball,
    "can": build_can,
    "book": build_book,
    "chair": build_chair,
    "table": build_table,
}
