"""Procedural tabletop and room scenes with ground-truth instances, classes and captions.

World frame: metres, z up, the floor at z = 0. Instance ids start at 1 (0 is the background:
floor, walls, or nothing); class ids index ``CLASS_NAMES`` (-1 for the background).
Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``, so a seed is a scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sole_ros.synthetic.catalogue import (
    BUILDERS,
    CLASS_IDS,
    CLASS_NAMES,
    OBJECT_SIZES,
    SMALL_OBJECT_CLASSES,
    BuiltObject,
    build_table,
)
from sole_ros.synthetic.primitives import Box, Cylinder, Primitive, Sphere

BACKGROUND_INSTANCE = 0
BACKGROUND_CLASS = -1


@dataclass
class SceneObject:
    instance_id: int
    class_name: str
    colour: str
    primitives: list[Primitive]
    caption: str
    entity_phrases: tuple[str, ...]  # the noun phrases of the caption, the object's own first

    @property
    def class_id(self) -> int:
        return CLASS_IDS[self.class_name]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        centres = np.array([p.bounding_sphere()[0] for p in self.primitives])
        radii = np.array([p.bounding_sphere()[1] for p in self.primitives])[:, None]
        return (centres - radii).min(axis=0), (centres + radii).max(axis=0)

    def share_inside(self, points: np.ndarray, slack: float = 0.02) -> float:
        """The share of ``points`` inside the object's bounds grown by ``slack`` (m): how much of an
        answer lies on this object (the demo's criterion, with a voxel of slack)."""
        low, high = self.bounds()
        return float(np.all((points >= low - slack) & (points <= high + slack), axis=1).mean())


@dataclass
class Scene:
    kind: str  # "tabletop" or "room"
    seed: int
    objects: list[SceneObject]
    background: list[Primitive]
    # Where cameras look and how far they stay: the centre of the main table and its top height.
    focus: np.ndarray
    light_direction: np.ndarray = field(default_factory=lambda: np.array([0.3, -0.4, 0.87]))
    extent: float = 3.0  # half-size of the floor (and of the room)

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    def object(self, instance_id: int) -> SceneObject:
        return next(o for o in self.objects if o.instance_id == instance_id)

    def labelled_primitives(self) -> list[tuple[Primitive, int, int]]:
        """Every primitive with its (instance id, class id); the background last."""
        out = [(p, o.instance_id, o.class_id) for o in self.objects for p in o.primitives]
        return out + [(p, BACKGROUND_INSTANCE, BACKGROUND_CLASS) for p in self.background]


def _caption(
    built: BuiltObject, relation: str, category: str, relation_phrase: str = "the table"
) -> tuple[str, tuple[str, ...]]:
    """'a red mug with a handle on the table' and its noun phrases ('a red mug', 'a handle',
    'the table', and the head noun alone, 'mug', as a noun-chunk parser also returns it)."""
    words = [built.head_phrase]
    phrases = [built.head_phrase, *built.extra_phrases]
    if built.caption_tail:
        words.append(built.caption_tail)
    if relation:
        words.append(relation)
        phrases.append(relation_phrase)
    phrases.append(category)
    return " ".join(words), tuple(phrases)


def _top(primitive: Primitive) -> float:
    """Height of a primitive's highest point (every primitive is upright: yaw only)."""
    if isinstance(primitive, Box):
        return float(primitive.center[2] + primitive.size[2] / 2)
    if isinstance(primitive, Cylinder):
        return float(primitive.center[2] + primitive.height / 2)
    if isinstance(primitive, Sphere):
        return float(primitive.center[2] + primitive.radius)
    raise TypeError(f"no top height for {type(primitive).__name__}")


# What clutter stacks: flat-topped supports, and what stands on them.
STACK_SUPPORTS = ("box", "book")
STACKED_CLASSES = ("box", "book", "can", "mug", "bowl")


def _add_clutter(
    rng, table: BuiltObject, table_xy, table_yaw, small, placed, clutter: float, sizes
):
    """Real tabletops are cluttered: objects stacked on boxes and books, and neighbours that
    touch. Each box or book carries another object with probability ``clutter``; each object gets
    a touching neighbour with probability ``clutter`` / 2. Returns (name, built, relation, relation
    phrase) for the new objects; ``placed`` grows with the touching ones."""
    w, d = table.support_size
    c, s = np.cos(table_yaw), np.sin(table_yaw)
    added = []
    for (name, built), (x, y, margin) in zip(list(small), list(placed)):
        if name in STACK_SUPPORTS and rng.random() < clutter:
            top_name = str(rng.choice(STACKED_CLASSES))
            reach = 0.3 * (margin - 0.02)  # off-centre, but resting on the support
            ox, oy = rng.uniform(-reach, reach, 2)
            stacked = BUILDERS[top_name](
                rng,
                x + ox,
                y + oy,
                max(_top(p) for p in built.primitives),
                rng.uniform(0, 2 * np.pi),
                sizes=sizes,
            )
            added.append((top_name, stacked, f"on {built.head_phrase}", built.head_phrase))
        if rng.random() < clutter / 2:
            side_name = str(rng.choice(SMALL_OBJECT_CLASSES))
            yaw, angle = rng.uniform(0, 2 * np.pi, 2)
            state = rng.bit_generator.state
            radius = BUILDERS[side_name](rng, 0.0, 0.0, 0.0, yaw, sizes=sizes).footprint_radius
            rng.bit_generator.state = state
            # Bounding circles overlapping by 10%: the objects touch or nearly do.
            gap = 0.9 * (radius + margin - 0.02)
            nx, ny = x + gap * np.cos(angle), y + gap * np.sin(angle)
            lx, ly = (
                c * (nx - table_xy[0]) + s * (ny - table_xy[1]),
                -s * (nx - table_xy[0]) + c * (ny - table_xy[1]),
            )
            on_table = abs(lx) < w / 2 - radius and abs(ly) < d / 2 - radius
            free = all(
                np.hypot(nx - px, ny - py) >= 0.9 * (radius + pr - 0.02)
                for px, py, pr in placed
                if (px, py) != (x, y)
            )
            if on_table and free:
                neighbour = BUILDERS[side_name](rng, nx, ny, table.support_height, yaw, sizes=sizes)
                placed.append((nx, ny, radius + 0.02))
                added.append((side_name, neighbour, "on the table", "the table"))
    return added


def _place_on_table(
    rng, table: BuiltObject, table_xy, table_yaw, classes, placed, sizes, max_tries=200
):
    """Rejection-sample non-overlapping footprints on the table top; returns built objects."""
    w, d = table.support_size
    c, s = np.cos(table_yaw), np.sin(table_yaw)
    out = []
    for name in classes:
        for _ in range(max_tries):
            yaw = rng.uniform(0, 2 * np.pi)
            # Build at the origin first to learn the footprint, then at the chosen spot (same draws).
            state = rng.bit_generator.state
            probe = BUILDERS[name](rng, 0.0, 0.0, 0.0, yaw, sizes=sizes)
            margin = probe.footprint_radius + 0.02
            if 2 * margin >= min(w, d):
                continue
            lx, ly = (
                rng.uniform(-w / 2 + margin, w / 2 - margin),
                rng.uniform(-d / 2 + margin, d / 2 - margin),
            )
            x, y = table_xy[0] + c * lx - s * ly, table_xy[1] + s * lx + c * ly
            if any(np.hypot(x - px, y - py) < margin + pr for px, py, pr in placed):
                continue
            after = rng.bit_generator.state
            rng.bit_generator.state = state
            built = BUILDERS[name](rng, x, y, table.support_height, yaw, sizes=sizes)
            rng.bit_generator.state = after
            placed.append((x, y, margin))
            out.append((name, built))
            break
    return out


def _floor(extent: float) -> Box:
    return Box(
        center=(0.0, 0.0, -0.01), size=(2 * extent, 2 * extent, 0.02), albedo=(0.62, 0.58, 0.52)
    )


def _walls(extent: float, height: float = 2.6) -> list[Box]:
    t, albedo = 0.1, (0.85, 0.84, 0.80)
    return [
        Box(
            center=(0.0, sign * (extent + t / 2), height / 2),
            size=(2 * extent + 2 * t, t, height),
            albedo=albedo,
        )
        for sign in (-1, 1)
    ] + [
        Box(
            center=(sign * (extent + t / 2), 0.0, height / 2),
            size=(t, 2 * extent, height),
            albedo=albedo,
        )
        for sign in (-1, 1)
    ]


def _draw_classes(rng: np.random.Generator, kind: str, num_objects: int | None) -> list:
    """The small objects' classes: every class once in a room (plus a few more), any in a tabletop."""
    if kind == "room":
        n_extra = (
            int(rng.integers(0, 3))
            if num_objects is None
            else max(0, num_objects - len(SMALL_OBJECT_CLASSES))
        )
        return list(SMALL_OBJECT_CLASSES) + list(rng.choice(SMALL_OBJECT_CLASSES, n_extra))
    n = int(rng.integers(4, 8)) if num_objects is None else num_objects
    return list(rng.choice(SMALL_OBJECT_CLASSES, n))


def _chairs_around(
    rng: np.random.Generator, table: BuiltObject, table_xy: np.ndarray, table_yaw: float
) -> list[BuiltObject]:
    """Two to four chairs facing the table from different sides, a little way out."""
    n_chairs = int(rng.integers(2, 5))
    sides = rng.permutation(4)[:n_chairs]
    w, d = table.support_size
    chairs = []
    for side in sides:
        local = [
            (w / 2 + 0.35, 0.0),
            (-w / 2 - 0.35, 0.0),
            (0.0, d / 2 + 0.35),
            (0.0, -d / 2 - 0.35),
        ][side]
        offset = rng.uniform(-0.15, 0.15)
        lx, ly = (local[0], offset) if side < 2 else (offset, local[1])
        c, s = np.cos(table_yaw), np.sin(table_yaw)
        x, y = table_xy[0] + c * lx - s * ly, table_xy[1] + s * lx + c * ly
        facing = float(np.arctan2(table_xy[1] - y, table_xy[0] - x) + rng.uniform(-0.2, 0.2))
        chairs.append(BUILDERS["chair"](rng, x, y, 0.0, facing))
    return chairs


def generate_scene(
    seed: int,
    kind: str = "tabletop",
    num_objects: int | None = None,
    classes: list[str] | None = None,
    clutter: float = 0.0,
    sizes: str = "compact",
) -> Scene:
    """A random scene.

    ``tabletop``: one table with ``num_objects`` small objects (default 4-7) on a floor patch.
    ``room``: a walled room with a table, 2-4 chairs around it and small objects on the table; by
    default every small-object class appears at least once, so a room shows all classes.
    ``classes`` fixes the small objects' classes (one object each) instead of drawing them.
    ``clutter`` (0..1) adds stacked and touching objects (see ``_add_clutter``); they are drawn
    from their own random stream, so the rest of the scene is the same as without clutter.
    ``sizes`` names the small objects' size ranges (``OBJECT_SIZES``: "compact" or "household").
    """
    if not 0.0 <= clutter <= 1.0:
        raise ValueError(f"clutter must be within 0..1, got {clutter}")
    if sizes not in OBJECT_SIZES:
        raise ValueError(f"unknown object sizes {sizes!r}: use one of {sorted(OBJECT_SIZES)}")
    size_ranges = OBJECT_SIZES[sizes]
    if kind not in ("tabletop", "room"):
        raise ValueError(f"unknown scene kind {kind!r}: use 'tabletop' or 'room'")
    unknown = set(classes or ()) - set(SMALL_OBJECT_CLASSES)
    if unknown:
        raise ValueError(
            f"classes {sorted(unknown)} cannot stand on a table; choose from {SMALL_OBJECT_CLASSES}"
        )
    rng = np.random.default_rng(seed)
    extent = 1.6 if kind == "tabletop" else float(rng.uniform(2.2, 2.8))
    table_yaw = float(rng.uniform(0, np.pi))
    table_xy = np.zeros(2) if kind == "tabletop" else rng.uniform(-0.3, 0.3, 2)
    table = build_table(rng, table_xy[0], table_xy[1], 0.0, table_yaw)

    classes = [
        str(c) for c in (classes if classes is not None else _draw_classes(rng, kind, num_objects))
    ]
    placed: list[tuple[float, float, float]] = []
    small = _place_on_table(rng, table, table_xy, table_yaw, classes, placed, size_ranges)

    built_objects: list[tuple[str, BuiltObject, str, str]] = [("table", table, "", "")]
    built_objects += [(name, b, "on the table", "the table") for name, b in small]
    if clutter > 0:
        built_objects += _add_clutter(
            np.random.default_rng([seed, 1]),
            table,
            table_xy,
            table_yaw,
            small,
            placed,
            clutter,
            size_ranges,
        )
    if kind == "room":
        built_objects += [
            ("chair", chair, "next to the table", "the table")
            for chair in _chairs_around(rng, table, table_xy, table_yaw)
        ]

    objects = []
    for instance_id, (name, built, relation, relation_phrase) in enumerate(built_objects, start=1):
        caption, phrases = _caption(built, relation, name, relation_phrase)
        objects.append(
            SceneObject(instance_id, name, built.colour, built.primitives, caption, phrases)
        )
    background = [_floor(extent)] + (_walls(extent) if kind == "room" else [])
    focus = np.array([table_xy[0], table_xy[1], table.support_height])
    light = rng.normal([0.3, -0.4, 1.0], 0.2)
    return Scene(kind, seed, objects, background, focus, light / np.linalg.norm(light), extent)
