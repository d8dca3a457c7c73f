"""A picture of a segmented scene: every found instance in its own colour, the rest in grey, each
labelled with its phrase and score next to its 3D box. Pure numpy + PIL, so it runs headless.

The view is an oblique perspective: "up" is the scene's dominant plane normal (floor or table),
snapped to a coordinate axis when close to one; the camera looks down at 35 degrees from the side
the sensor was on when that can be told (a single scan only has surfaces facing its sensor, and
seen from behind it looks hollow). Points are splatted with a z-buffer, nearest wins.

    render_instances_png(points, colors, instances, "scene.png", title="mug, bowl")
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct, saturated colours that stay readable against the grey scene and under white text.
PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 200, 200),
        (240, 50, 230),
        (155, 175, 20),
        (0, 128, 128),
        (170, 110, 40),
        (128, 0, 0),
        (0, 0, 128),
        (128, 128, 0),
        (255, 90, 90),
        (100, 100, 255),
        (30, 110, 30),
    ],
    dtype=np.uint8,
)
BACKGROUND = (255, 255, 255)
ELEVATION_DEG = 35.0
FIELD_OF_VIEW_DEG = 45.0
MAX_RENDER_POINTS = 600_000  # beyond this a uniform subsample looks the same and renders faster
MAX_LEGEND_ROWS = 12


def palette_color(index: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


def instance_colors(num_points: int, instances: Sequence, colors=None) -> np.ndarray:
    """(N,3) uint8: the scene's colours greyed and lightened, each instance's points in its
    palette colour (instance i gets PALETTE[i]; where instances overlap, the earlier one wins, so
    pass them best first)."""
    if colors is None:
        grey = np.full(num_points, 0.55, np.float32)
    else:
        c = np.asarray(colors)
        c = c.astype(np.float32) / 255.0 if c.dtype == np.uint8 else c.astype(np.float32)
        grey = c.clip(0, 1) @ np.array([0.299, 0.587, 0.114], np.float32)
    # Keep a little of the scene's shading so shapes stay readable, but far from the instance hues.
    out = np.repeat((0.45 + 0.4 * grey)[:, None], 3, axis=1)
    for i in reversed(range(len(instances))):  # the first (best) instance ends on top
        idx = _indices(instances[i], num_points)
        shade = 0.8 + 0.2 * grey[idx, None]
        out[idx] = PALETTE[i % len(PALETTE)].astype(np.float32) / 255.0 * shade
    return (out.clip(0, 1) * 255 + 0.5).astype(np.uint8)


def _indices(instance, num_points: int) -> np.ndarray:
    idx = np.asarray(instance.point_indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= num_points):
        raise ValueError(
            f"instance {getattr(instance, 'label', '?')!r} has point indices outside 0..{num_points - 1}"
        )
    return idx


# --- the viewpoint --------------------------------------------------------------------------------


def scene_up(points: np.ndarray) -> np.ndarray:
    """The scene's up direction: normal of its dominant plane (least-variance axis), the side
    where most of the mass sticks out; snapped to a coordinate axis when within 25 degrees."""
    if points.shape[0] < 3:
        return np.array([0.0, 0.0, 1.0])  # no plane to find: ROS's convention (REP 103)
    centred = points - np.median(points, axis=0)
    _, vectors = np.linalg.eigh(np.cov(centred.T) + 1e-12 * np.eye(3))
    up = vectors[:, 0]
    heights = centred @ up
    # A floor or table is a peak at the bottom; objects and walls rise above it (positive skew).
    if np.mean((heights - heights.mean()) ** 3) < 0:
        up = -up
    axis = int(np.argmax(np.abs(up)))
    if abs(up[axis]) > math.cos(math.radians(25)):
        up = np.sign(up[axis]) * np.eye(3)[axis]
    return up / np.linalg.norm(up)


def _horizontal(v: np.ndarray, up: np.ndarray) -> np.ndarray:
    h = v - (v @ up) * up
    n = np.linalg.norm(h)
    return h / n if n > 1e-9 else np.zeros(3)


def view_matrix(
    points: np.ndarray, up: np.ndarray | None = None, sensor: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(R, eye): camera rotation (rows: right, down, forward) and position for an oblique view."""
    up = scene_up(points) if up is None else np.asarray(up, float) / np.linalg.norm(up)
    lo, hi = np.percentile(points, [1, 99], axis=0)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    # Look from the sensor's side when the sensor was outside the scene (a single scan);
    # otherwise from a fixed side of the scene.
    side = np.zeros(3)
    if sensor is not None:
        side = _horizontal(np.asarray(sensor, float) - centre, up)
    if not side.any():
        for candidate in (
            np.array([-1.0, -0.6, 0.0]),
            np.array([0.0, -1.0, -0.6]),
            np.array([-0.6, 0.0, -1.0]),
        ):
            side = _horizontal(candidate, up)
            if side.any():
                break
    elevation = math.radians(ELEVATION_DEG)
    direction = math.cos(elevation) * side + math.sin(elevation) * up  # from the centre to the eye
    distance = radius / math.sin(math.radians(FIELD_OF_VIEW_DEG) / 2)
    eye = centre + distance * direction
    forward = -direction
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward]), eye


def _sensor_guess(points: np.ndarray) -> np.ndarray | None:
    """The origin when it lies outside the points' box: the sensor of a scan in its own frame."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    inside = np.all((lo <= 0) & (0 <= hi))
    return None if inside else np.zeros(3)


# --- drawing --------------------------------------------------------------------------------------


class _Projector:
    """World points -> pixels, scaled so the scene fills ``region`` (x0, y0, x1, y1) with a margin."""

    def __init__(self, R: np.ndarray, eye: np.ndarray, points: np.ndarray, region, margin: int):
        self.R, self.eye = R, eye
        x0, y0, x1, y1 = region
        cam = (points - eye) @ R.T
        z = np.maximum(cam[:, 2], 1e-6)
        u, v = cam[:, 0] / z, cam[:, 1] / z
        ulo, uhi = np.percentile(u, [0.5, 99.5])
        vlo, vhi = np.percentile(v, [0.5, 99.5])
        self.scale = min(
            (x1 - x0 - 2 * margin) / max(uhi - ulo, 1e-9),
            (y1 - y0 - 2 * margin) / max(vhi - vlo, 1e-9),
        )
        self.offset = np.array(
            [
                (x0 + x1) / 2 - self.scale * (ulo + uhi) / 2,
                (y0 + y1) / 2 - self.scale * (vlo + vhi) / 2,
            ]
        )

    def __call__(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cam = (np.asarray(points, float).reshape(-1, 3) - self.eye) @ self.R.T
        z = cam[:, 2]
        uv = cam[:, :2] / np.maximum(z, 1e-6)[:, None] * self.scale + self.offset
        return uv, z


def _splat(
    canvas: np.ndarray, uv: np.ndarray, depth: np.ndarray, rgb: np.ndarray, size: int
) -> None:
    """Square splats of ``size`` pixels with a z-buffer (the nearest point owns a pixel)."""
    height, width = canvas.shape[:2]
    base = np.floor(uv).astype(np.int64)
    offsets = [(dx, dy) for dx in range(size) for dy in range(size)]
    cols = np.concatenate([base[:, 0] + dx - size // 2 for dx, _ in offsets])
    rows = np.concatenate([base[:, 1] + dy - size // 2 for _, dy in offsets])
    which = np.tile(np.arange(uv.shape[0]), len(offsets))
    ok = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    cols, rows, which = cols[ok], rows[ok], which[ok]
    pixel = rows * width + cols
    order = np.lexsort((depth[which], pixel))
    pixel, which = pixel[order], which[order]
    first = np.r_[True, pixel[1:] != pixel[:-1]]
    # Points nearer the camera a little darker at their rim would be nicer; a flat splat is enough.
    canvas.reshape(-1, 3)[pixel[first]] = rgb[which[first]]


def _box_corners(center, size) -> np.ndarray:
    c, h = np.asarray(center, float).reshape(3), np.asarray(size, float).reshape(3) / 2
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    return c + signs * h


_BOX_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_colour(rgb) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 150 else (255, 255, 255)


def _place(rect: list[float], taken: list[list[float]], region) -> list[float]:
    """Move a label rectangle inside ``region``, then down (or up) until it overlaps no other."""

    def overlaps(r):
        return any(r[0] < t[2] and t[0] < r[2] and r[1] < t[3] and t[1] < r[3] for t in taken)

    x0, y0, x1, y1 = region
    h = rect[3] - rect[1]
    w = rect[2] - rect[0]
    left = min(max(rect[0], x0 + 2), x1 - w - 2)
    top = min(max(rect[1], y0 + 2), y1 - h - 2)
    for k in [0] + [j for i in range(1, 16) for j in (i, -i)]:
        y = top + k * (h + 2)
        if y0 + 2 <= y <= y1 - h - 2 and not overlaps([left, y, left + w, y + h]):
            return [left, y, left + w, y + h]
    return [left, top, left + w, top + h]


def label_text(instance) -> str:
    return (
        f"{getattr(instance, 'label', '') or 'object'} {float(getattr(instance, 'score', 0.0)):.2f}"
    )


def render_instances_png(
    points,
    colors,
    instances: Sequence,
    path,
    title: str | None = None,
    width: int = 1280,
    height: int = 960,
    up=None,
    sensor="auto",
) -> str:
    """Render the scene with its instances highlighted and labelled; returns the PNG's path.

    points (N,3); colors (N,3) uint8 or float 0..1, or None; instances: objects with
    point_indices (into points), label, score, bbox_center, bbox_size (centroid, num_points used
    when present). ``up``: the scene's up vector (default: estimated); ``sensor``: where the
    sensor was ("auto": the origin when it lies outside the scene, None: unknown).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise ValueError(f"points must be a non-empty (N, 3) array, not {points.shape}")
    finite = np.isfinite(points).all(axis=1)
    instances = list(instances)
    rgb = instance_colors(points.shape[0], instances, colors)
    shown = np.flatnonzero(finite)
    if shown.shape[0] > MAX_RENDER_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(shown, MAX_RENDER_POINTS, replace=False))
    pts = points[shown]
    if sensor == "auto":
        sensor = _sensor_guess(pts)
    R, eye = view_matrix(pts, up=up, sensor=sensor)
    font = _font(max(14, height // 50))
    title_font = _font(max(16, height // 40))
    # Layout: a title strip on top, the legend in a panel on the right, the scene in the rest.
    top = (
        int(title_font.size * 1.8)
        if title and hasattr(title_font, "size")
        else (30 if title else 0)
    )
    legend_width = int(width * 0.26) if instances else 0
    region = (0, top, width - legend_width, height)
    margin = max(width, height) // 24
    project = _Projector(R, eye, pts, region, margin)
    uv, depth = project(pts)
    front = depth > 1e-6
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    # Splat size from the point density on screen: sparse clouds get bigger dots.
    area = (region[2] - region[0]) * (region[3] - region[1])
    size = int(np.clip(round(math.sqrt(area / max(front.sum(), 1))), 2, 6))
    _splat(canvas, uv[front], depth[front], rgb[shown][front], size)

    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    labels = _draw_boxes(draw, instances, project, font, region, line=max(2, width // 500))
    # The scene region is clipped so that boxes reaching out of view do not run over the panels.
    draw.rectangle([region[2], 0, width, height], fill=BACKGROUND)
    if top:
        draw.rectangle([0, 0, width, top - 1], fill=BACKGROUND)
    for rect, text, colour, left, top_ in labels:
        draw.rectangle(rect, fill=colour)
        draw.text(
            (rect[0] + 4 - left, rect[1] + 3 - top_), text, fill=_text_colour(colour), font=font
        )

    if legend_width:
        draw.line([(region[2], top + 8), (region[2], height - 8)], fill=(200, 200, 200), width=1)
    _legend(draw, instances, font, (region[2] + 12, top + 8, width - 8, height - 8))
    if title:
        draw.text((12, 8), title, fill=(20, 20, 20), font=title_font)
    return _save_png(image, path)


def _draw_boxes(
    draw: ImageDraw.ImageDraw, instances: list, project, font, region, line: int
) -> list:
    """Each instance's 3D box, worst first so that the best one's is on top; returns where each
    label goes (rect, text, colour, and the text's offsets) without drawing it yet."""
    taken: list[list[float]] = []
    order = sorted(range(len(instances)), key=lambda i: float(getattr(instances[i], "score", 0.0)))
    labels = []
    for i in order:
        inst = instances[i]
        colour = palette_color(i)
        corners, z = project(_box_corners(inst.bbox_center, inst.bbox_size))
        if (z <= 1e-6).any():
            continue
        for a, b in _BOX_EDGES:
            draw.line([tuple(corners[a]), tuple(corners[b])], fill=colour, width=line)
        text = label_text(inst)
        left, top_, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left + 8, bottom - top_ + 6
        anchor = corners[np.argmin(corners[:, 1])]  # above the box's highest corner on screen
        rect = _place(
            [anchor[0] - w / 2, anchor[1] - h - 4, anchor[0] + w / 2, anchor[1] - 4], taken, region
        )
        taken.append(rect)
        labels.append((rect, text, colour, left, top_))
    return labels


def _save_png(image: Image.Image, path) -> str:
    """Write the PNG under a temporary name, then rename it: a reader never sees half a file."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}.png"
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _legend(draw: ImageDraw.ImageDraw, instances: list, font, box) -> None:
    """Instances listed best first in the panel ``box`` (x0, y0, x1, y1): colour, label, score, points."""
    x0, y0, x1, y1 = box
    rows = sorted(range(len(instances)), key=lambda i: -float(getattr(instances[i], "score", 0.0)))
    if not rows:
        draw.text((12, y1 - 24), "no instances found", fill=(90, 90, 90), font=font)
        return
    _, top, _, bottom = draw.textbbox((0, 0), "Ag", font=font)
    step = bottom - top + 8
    fits = max(1, int((y1 - y0) // step) - 1)
    shown = rows[: min(fits, MAX_LEGEND_ROWS)]
    y = y0
    for i in shown:
        inst = instances[i]
        n = getattr(inst, "num_points", None)
        text = label_text(inst) + (f"  ({n} pts)" if n is not None else "")
        draw.rectangle([x0, y + 2, x0 + step - 8, y + step - 6], fill=palette_color(i))
        draw.text(
            (x0 + step, y - top + 1),
            _fit(draw, text, font, x1 - x0 - step),
            fill=(20, 20, 20),
            font=font,
        )
        y += step
    if len(rows) > len(shown):
        draw.text(
            (x0 + step, y - top + 1),
            f"... and {len(rows) - len(shown)} more",
            fill=(90, 90, 90),
            font=font,
        )


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."
