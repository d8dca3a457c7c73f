"""`sole-ros segment` on a 10 M-point file: time and peak memory with the default point bound
(refused from the header) and with --downsample. Prints figures; not a test.

    python bench/bench_segment_bounds.py [--points 10000000] [--downsample 0.02]

The file is a binary PLY of a 6 x 5 x 2.5 m room (floor, four walls and twelve boxes, points on
their surfaces, colours), written to a temporary folder. Each run is the real command in its own
process; its peak resident memory is the child's ru_maxrss. The model is the demo weights (random
tiny weights when absent).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def room_points(count: int, seed: int = 0) -> np.ndarray:
    """(count, 6) float32 x,y,z,r,g,b: points on a room's floor, walls and boxes."""
    rng = np.random.default_rng(seed)
    size = np.array([6.0, 5.0, 2.5])
    boxes = [
        (rng.uniform([0.5, 0.5, 0.0], [5.0, 4.0, 0.0]), rng.uniform(0.2, 0.8, 3)) for _ in range(12)
    ]
    faces = [(np.zeros(3), np.array([size[0], size[1], 0.0]))]  # floor
    for axis in (0, 1):
        for side in (0.0, size[axis]):
            low, high = np.zeros(3), size.copy()
            low[axis] = high[axis] = side
            faces.append((low, high))
    for corner, extent in boxes:
        top = corner + np.array([0, 0, extent[2]])
        faces.append((top, top + np.array([extent[0], extent[1], 0.0])))
        for axis in (0, 1):
            low, high = corner.copy(), corner + extent
            high[axis] = low[axis]
            faces.append((low, high))
    areas = np.array(
        [np.prod([hi - lo for lo, hi in zip(low, high) if hi > lo]) for low, high in faces]
    )
    per_face = rng.multinomial(count, areas / areas.sum())
    parts = [rng.uniform(low, high, size=(n, 3)) for (low, high), n in zip(faces, per_face)]
    xyz = np.concatenate(parts).astype(np.float32)
    colours = np.repeat(rng.integers(0, 256, (len(faces), 3)), per_face, axis=0).astype(np.float32)
    return np.hstack([xyz, colours])


def write_ply(path: pathlib.Path, rows: np.ndarray) -> None:
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {rows.shape[0]}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    ).encode()
    record = np.zeros(rows.shape[0], dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    record["xyz"], record["rgb"] = rows[:, :3], rows[:, 3:].astype(np.uint8)
    with open(path, "wb") as out:
        out.write(header)
        out.write(record.tobytes())


def run(args: list[str]) -> tuple[int, float, float, str]:
    """(exit code, seconds, peak MiB of the child, last stderr line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "sole_ros.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # ru_maxrss of children is the largest child so far: run the larger case last
    return result.returncode, seconds, max(peak, before) / 1024, lines[-1] if lines else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--downsample", type=float, default=0.02)
    args = parser.parse_args(argv)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="sole_bench_"))
    path = folder / "room.ply"
    start = time.perf_counter()
    write_ply(path, room_points(args.points))
    print(
        f"{args.points:,} points, {path.stat().st_size / 2**20:.0f} MiB PLY written in "
        f"{time.perf_counter() - start:.1f} s",
        flush=True,
    )
    common = [str(path), "--query", "box", "--out-dir", str(folder), "--json"]
    code, seconds, peak, last = run(["segment", *common])
    print(f"default bound: exit {code}, {seconds:.1f} s, peak {peak:.0f} MiB: {last}", flush=True)
    code, seconds, peak, last = run(["segment", *common, "--downsample", str(args.downsample)])
    print(
        f"--downsample {args.downsample:g}: exit {code}, {seconds:.1f} s, peak {peak:.0f} MiB"
        + (f": {last}" if code else ""),
        flush=True,
    )
    path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
