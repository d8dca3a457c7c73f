"""How the command line reports instances: a table or one JSON document, a coloured PLY and a PNG.

Shared by `segment` (a point file) and `bag` (the fused map), so both answer in the same shape.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from sole_ros.cli.errors import CliError


def _vector(value) -> list[float]:
    return [round(float(v), 6) for v in np.asarray(value, dtype=np.float64).reshape(-1)]


def instance_record(rank: int, instance, point_indices: np.ndarray | None = None) -> dict:
    """One instance as plain JSON data. ``point_indices``: the indices to report (e.g. mapped back
    to the input file's rows); None leaves them out."""
    center = np.asarray(instance.bbox_center, dtype=np.float64)
    size = np.asarray(instance.bbox_size, dtype=np.float64)
    record = {
        "rank": rank,
        "label": instance.label,
        "score": round(float(instance.score), 6),
        "num_points": int(instance.num_points),
        "centroid": _vector(instance.centroid),
        "box": {
            "center": _vector(center),
            "size": _vector(size),
            "min": _vector(center - size / 2),
            "max": _vector(center + size / 2),
        },
    }
    if point_indices is not None:
        record["point_indices"] = [int(i) for i in point_indices]
    return record


def print_table(instances, phrases, out=sys.stdout) -> None:
    quoted = ", ".join(f'"{p}"' for p in phrases)
    if not instances:
        print(f"no instances found for {quoted}", file=out)
        return
    print(f"{len(instances)} instance{'s' if len(instances) != 1 else ''} for {quoted}:", file=out)
    width = max(5, max(len(i.label) for i in instances))
    print(
        f"  {'#':>2}  {'label':<{width}}  {'score':>5}  {'points':>7}  {'centroid x y z (m)':<26}  box size (m)",
        file=out,
    )
    for rank, inst in enumerate(instances, 1):
        c = np.asarray(inst.centroid, dtype=np.float64)
        s = np.asarray(inst.bbox_size, dtype=np.float64)
        print(
            f"  {rank:>2}  {inst.label:<{width}}  {inst.score:>5.3f}  {inst.num_points:>7}  "
            f"{c[0]:>8.3f}{c[1]:>9.3f}{c[2]:>9.3f}  {s[0]:>6.3f}{s[1]:>7.3f}{s[2]:>7.3f}",
            file=out,
        )


def print_json(document: dict) -> None:
    json.dump(document, sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")


def write_outputs(
    out_dir: str,
    stem: str,
    points,
    colors,
    instances,
    title: str,
    source_index: np.ndarray | None = None,
) -> dict:
    """<stem>.segmented.ply (instance colours, per-point instance rank and score) and
    <stem>.segmented.png; returns their paths."""
    from sole_ros.pointfiles import PointFileError, write_ply
    from sole_ros.visualize import instance_colors, render_instances_png

    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise CliError(
            f"cannot create the output folder {out_dir}: {error.strerror or error}"
        ) from None
    points = np.asarray(points)
    count = points.shape[0]
    instance_id = np.full(count, -1, np.int32)
    score = np.zeros(count, np.float32)
    for rank in reversed(range(len(instances))):  # the better instance wins a shared point
        idx = np.asarray(instances[rank].point_indices, dtype=np.int64)
        instance_id[idx] = rank
        score[idx] = instances[rank].score
    scalars = {"instance": instance_id, "score": score}
    if source_index is not None:
        scalars["source_index"] = np.asarray(source_index, dtype=np.int32)
    ply = os.path.join(out_dir, f"{stem}.segmented.ply")
    png = os.path.join(out_dir, f"{stem}.segmented.png")
    try:
        write_ply(ply, points, instance_colors(count, instances, colors), **scalars)
        render_instances_png(points, colors, instances, png, title=title)
    except (PointFileError, OSError) as error:
        raise CliError(f"cannot write the results: {error}") from None
    return {"ply": ply, "png": png}


def title_for(phrases, instances) -> str:
    return f"{', '.join(phrases)}: {len(instances)} instance{'s' if len(instances) != 1 else ''}"
