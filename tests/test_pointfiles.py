"""Point files (.ply/.pcd/.npz) in and out, and the instance picture.

Files are written by hand here (explicit byte orders, header text), not by the code under test,
so a layout mistake in the reader cannot cancel itself out.
"""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
from conftest import shared_data
from PIL import Image

from sole_ros.pointfiles import PointFileError, read_point_file, write_ply
from sole_ros.visualize import PALETTE, instance_colors, render_instances_png, scene_up

RNG = np.random.default_rng(7)
POINTS = RNG.normal(size=(50, 3)).astype(np.float32)
RGB8 = RNG.integers(0, 256, size=(50, 3)).astype(np.uint8)
FEATURES = RNG.normal(size=(50, 4)).astype(np.float32)


def ply_header(fmt: str, count: int, properties: list[str], extra: list[str] = ()) -> bytes:
    lines = ["ply", f"format {fmt} 1.0", "comment made by hand", f"element vertex {count}"]
    lines += [f"property {p}" for p in properties] + list(extra) + ["end_header"]
    return ("\n".join(lines) + "\n").encode()


VERTEX_PROPERTIES = [
    "float x",
    "float y",
    "float z",
    "uchar red",
    "uchar green",
    "uchar blue",
    "float feature_0",
    "float feature_1",
    "float feature_2",
    "float feature_3",
    "float nx",
]


def vertex_table(order: str) -> bytes:
    dtype = np.dtype(
        [
            ("x", order + "f4"),
            ("y", order + "f4"),
            ("z", order + "f4"),
            ("r", "u1"),
            ("g", "u1"),
            ("b", "u1"),
            ("f", order + "f4", (4,)),
            ("nx", order + "f4"),
        ]
    )
    table = np.zeros(len(POINTS), dtype)
    table["x"], table["y"], table["z"] = POINTS.T
    table["r"], table["g"], table["b"] = RGB8.T
    table["f"] = FEATURES
    table["nx"] = 9.0  # not a feature: must be ignored
    return table.tobytes()


@pytest.mark.parametrize("fmt,order", [("binary_little_endian", "<"), ("binary_big_endian", ">")])
def test_binary_ply_with_colours_features_and_faces(tmp_path, fmt, order):
    path = tmp_path / "scene.ply"
    face = ["element face 1", "property list uchar int vertex_indices"]
    face_bytes = struct.pack(order + "B3i", 3, 0, 1, 2)
    path.write_bytes(
        ply_header(fmt, len(POINTS), VERTEX_PROPERTIES, face) + vertex_table(order) + face_bytes
    )
    scene = read_point_file(path)
    np.testing.assert_array_equal(scene.points, POINTS.astype(np.float64))
    np.testing.assert_allclose(scene.colors, RGB8 / 255.0, atol=1e-6)
    np.testing.assert_array_equal(scene.features, FEATURES)
    np.testing.assert_array_equal(scene.source_index, np.arange(len(POINTS)))


def test_ascii_ply_float_colours_and_nan_rows(tmp_path):
    path = tmp_path / "scene.ply"
    points = POINTS.astype(np.float64).copy()
    points[[3, 10]] = np.nan
    colours = RGB8 / 255.0
    rows = [" ".join(f"{v:.9g}" for v in (*p, *c)) for p, c in zip(points, colours)]
    header = ply_header(
        "ascii",
        len(points),
        ["double x", "double y", "double z", "float red", "float green", "float blue"],
        ["element face 2", "property list uchar int vertex_indices"],
    )
    path.write_bytes(header + ("\n".join(rows) + "\n3 0 1 2\n4 0 1 2 3\n").encode())
    scene = read_point_file(path)
    keep = np.setdiff1d(np.arange(len(points)), [3, 10])
    np.testing.assert_array_equal(scene.source_index, keep)
    np.testing.assert_allclose(scene.points, points[keep], rtol=1e-8)
    np.testing.assert_allclose(scene.colors, colours[keep], atol=1e-6)
    assert scene.features is None and scene.num_input == len(points)
    np.testing.assert_array_equal(scene.to_input_indices([0, 3, 8]), keep[[0, 3, 8]])


def test_written_ply_is_binary_little_endian_with_scalars(tmp_path):
    path = tmp_path / "out.ply"
    instance = np.arange(len(POINTS), dtype=np.int32) % 3 - 1
    score = np.linspace(0, 1, len(POINTS)).astype(np.float32)
    write_ply(path, POINTS, RGB8, instance=instance, score=score)
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    assert b"format binary_little_endian 1.0" in header
    assert b"property int instance" in header and b"property float score" in header
    table = np.frombuffer(
        body,
        dtype=np.dtype(
            [("xyz", "<f4", (3,)), ("rgb", "u1", (3,)), ("instance", "<i4"), ("score", "<f4")]
        ),
    )
    np.testing.assert_array_equal(table["xyz"], POINTS)
    np.testing.assert_array_equal(table["rgb"], RGB8)
    np.testing.assert_array_equal(table["instance"], instance)
    np.testing.assert_array_equal(table["score"], score)
    again = read_point_file(path)
    np.testing.assert_allclose(again.colors * 255, RGB8, atol=1e-3)


def pcd_bytes(kind: str, fields: list[tuple[str, str, int]], table: np.ndarray) -> bytes:
    names = " ".join(f for f, _, _ in fields)
    header = (
        f"# .PCD v0.7\nVERSION 0.7\nFIELDS {names}\nSIZE {' '.join(str(s) for _, _, s in fields)}\n"
        f"TYPE {' '.join(t for _, t, _ in fields)}\nCOUNT {' '.join('1' for _ in fields)}\n"
        f"WIDTH {len(table)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(table)}\nDATA {kind}\n"
    )
    if kind == "ascii":
        rows = [
            " ".join(repr(float(v)) if isinstance(v, np.floating) else str(v) for v in row)
            for row in table
        ]
        return (header + "\n".join(rows) + "\n").encode()
    return header.encode() + table.tobytes()


def test_pcd_binary_and_ascii_packed_colours_with_nan_rows(tmp_path):
    packed = (RGB8[:, 0].astype(np.uint32) << 16) | (RGB8[:, 1].astype(np.uint32) << 8) | RGB8[:, 2]
    table = np.zeros(len(POINTS), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
    table["x"], table["y"], table["z"] = POINTS.T
    table["rgb"] = packed.view(np.float32)  # PCL's convention: the colour bits in a float
    table["x"][[0, 7]] = np.nan
    path = tmp_path / "scene.pcd"
    # ascii cannot round-trip every float bit pattern (some are NaNs), so binary carries rgb here
    path.write_bytes(
        pcd_bytes("binary", [("x", "F", 4), ("y", "F", 4), ("z", "F", 4), ("rgb", "F", 4)], table)
    )
    scene = read_point_file(path)
    keep = np.setdiff1d(np.arange(len(POINTS)), [0, 7])
    np.testing.assert_array_equal(scene.source_index, keep)
    np.testing.assert_array_equal(scene.points, POINTS[keep].astype(np.float64))
    np.testing.assert_allclose(scene.colors * 255, RGB8[keep], atol=1e-3)

    ascii_path = tmp_path / "plain.pcd"
    table2 = np.zeros(
        len(POINTS), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgba", "<u4")]
    )
    table2["x"], table2["y"], table2["z"] = POINTS.T
    table2["rgba"] = packed | np.uint32(0xFF000000)
    ascii_path.write_bytes(
        pcd_bytes("ascii", [("x", "F", 4), ("y", "F", 4), ("z", "F", 4), ("rgba", "U", 4)], table2)
    )
    plain = read_point_file(ascii_path)
    np.testing.assert_allclose(plain.points, POINTS, atol=1e-6)
    np.testing.assert_allclose(plain.colors * 255, RGB8, atol=1e-3)


def test_real_kinect_scan_binary_compressed():
    path = shared_data("mosd", "learn0.pcd")
    from pypcd4 import PointCloud

    raw = PointCloud.from_path(path).pc_data
    scene = read_point_file(path)
    xyz = np.stack([raw["x"], raw["y"], raw["z"]], axis=1)
    finite = np.isfinite(xyz).all(axis=1)
    assert scene.num_input == 640 * 480 and len(scene) == finite.sum() > 100_000
    np.testing.assert_array_equal(scene.source_index, np.flatnonzero(finite))
    np.testing.assert_array_equal(scene.points, xyz[finite])
    packed = raw["rgba"][finite]
    np.testing.assert_allclose(scene.colors[:, 0] * 255, (packed >> 16) & 0xFF, atol=1e-3)
    np.testing.assert_allclose(scene.colors[:, 2] * 255, packed & 0xFF, atol=1e-3)


def test_npz_variants(tmp_path):
    np.savez(tmp_path / "a.npz", points=POINTS, colors=RGB8, features=FEATURES)
    a = read_point_file(tmp_path / "a.npz")
    np.testing.assert_allclose(a.colors, RGB8 / 255.0, atol=1e-6)
    np.testing.assert_array_equal(a.features, FEATURES)
    points = POINTS.astype(np.float64).copy()
    points[5, 2] = np.inf
    np.savez(tmp_path / "b.npz", points=points, colors=RGB8 / 255.0)
    b = read_point_file(tmp_path / "b.npz")
    assert b.features is None and 5 not in b.source_index and len(b) == len(POINTS) - 1
    np.testing.assert_allclose(b.colors, np.delete(RGB8, 5, axis=0) / 255.0, atol=1e-6)


def one_line_error(path, *fragments):
    with pytest.raises(PointFileError) as info:
        read_point_file(path)
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_errors_are_one_line(tmp_path):
    one_line_error(tmp_path / "scene.xyz", "unsupported file type '.xyz'", ".ply, .pcd, .npz")
    one_line_error(tmp_path / "missing.ply", "no such file")
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(
        ply_header("binary_little_endian", len(POINTS), VERTEX_PROPERTIES) + vertex_table("<")[:100]
    )
    one_line_error(truncated, "truncated")
    no_z = tmp_path / "no_z.ply"
    no_z.write_bytes(ply_header("ascii", 1, ["float x", "float y"]) + b"1 2\n")
    one_line_error(no_z, "no z")
    bad_format = tmp_path / "bad_format.ply"
    bad_format.write_bytes(b"ply\nformat binary_middle_endian 1.0\nend_header\n")
    one_line_error(bad_format, "unknown PLY format")
    (tmp_path / "garbage.pcd").write_bytes(b"\x00\x01garbage" * 50)
    one_line_error(tmp_path / "garbage.pcd", "not a PCD file")
    (tmp_path / "garbage.npz").write_bytes(b"garbage" * 50)
    one_line_error(tmp_path / "garbage.npz", "not an NPZ file")
    np.savez(tmp_path / "nopoints.npz", xyz=POINTS)
    one_line_error(tmp_path / "nopoints.npz", "no 'points' array", "xyz")
    np.savez(tmp_path / "object.npz", points=np.array([[1, 2, 3]], dtype=object))
    one_line_error(tmp_path / "object.npz", "cannot read NPZ")  # refused, never unpickled
    np.savez(tmp_path / "shape.npz", points=POINTS, colors=RGB8[:10])
    one_line_error(tmp_path / "shape.npz", "colors must have shape (50, 3)")
    np.savez(tmp_path / "allnan.npz", points=np.full((4, 3), np.nan))
    one_line_error(tmp_path / "allnan.npz", "no finite points")


def test_corrupt_compressed_pcd_is_one_line(tmp_path):
    data = shared_data("mosd", "learn9.pcd").read_bytes()
    path = tmp_path / "cut.pcd"
    path.write_bytes(data[: len(data) // 3])
    one_line_error(path, "cannot read PCD file")


# --- the picture ---------------------------------------------------------------------------------


class Found:
    """An instance as the segmenter returns it (duck-typed: only the fields the picture reads)."""

    def __init__(self, points, indices, label, score):
        p = points[indices]
        lo, hi = p.min(axis=0), p.max(axis=0)
        self.point_indices, self.label, self.score = np.asarray(indices), label, score
        self.centroid, self.bbox_center = p.mean(0), (lo + hi) / 2
        self.bbox_size, self.num_points = hi - lo, len(indices)


def tabletop():
    """A grey z-up table top with two coloured blocks on it."""
    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 120), np.linspace(-0.4, 0.4, 100)), -1).reshape(
        -1, 2
    )
    table = np.c_[g, np.zeros(len(g))]
    blocks = []
    for cx in (-0.2, 0.2):
        c = RNG.uniform(-0.05, 0.05, size=(1500, 3)) + [cx, 0, 0.06]
        blocks.append(c)
    points = np.concatenate([table, *blocks])
    colors = np.full((len(points), 3), 0.7, np.float32)
    return points, colors, len(table)


def test_scene_up_finds_the_table_normal():
    points, _, _ = tabletop()
    np.testing.assert_allclose(scene_up(points), [0, 0, 1])
    # the same scene in a camera's optical frame (y down): up is -y
    optical = points @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float).T
    np.testing.assert_allclose(scene_up(optical), [0, -1, 0], atol=1e-9)


def test_picture_highlights_and_labels_instances(tmp_path):
    points, colors, n_table = tabletop()
    found = [
        Found(points, np.arange(n_table, n_table + 1500), "red box", 0.91),
        Found(points, np.arange(n_table + 1500, n_table + 3000), "mug", 0.42),
    ]
    out = render_instances_png(points, colors, found, tmp_path / "scene.png", title="red box, mug")
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (960, 1280, 3)
    pixels = image.reshape(-1, 3).astype(int)
    for i in range(2):
        # each instance's palette colour (shaded by at most 20%) covers a visible area
        near = np.abs(pixels - PALETTE[i].astype(int)).max(axis=1) <= 0.2 * 255
        assert near.sum() > 2000, i
    # the rest is grey: the table is drawn (many grey pixels) in no palette colour
    grey = (np.ptp(pixels, axis=1) < 4) & (pixels[:, 0] < 240)
    assert grey.sum() > 20000
    empty = np.asarray(
        Image.open(render_instances_png(points, colors, [], tmp_path / "none.png")).convert("RGB")
    )
    palette_hits = [
        (np.abs(empty.reshape(-1, 3).astype(int) - PALETTE[i]).max(axis=1) <= 20).sum()
        for i in range(2)
    ]
    assert max(palette_hits) < 50  # nothing highlighted without instances


def test_instance_colors_best_first_wins_shared_points():
    colours = instance_colors(
        5, [Found(np.eye(5, 3), [1, 2], "a", 0.9), Found(np.eye(5, 3), [2, 3], "b", 0.5)]
    )
    assert tuple(colours[2]) != tuple(colours[3]) and tuple(colours[2]) == tuple(colours[1])
    assert len({tuple(c) for c in colours[[0, 4]]}) == 1  # both grey


def test_picture_rejects_bad_indices(tmp_path):
    points, colors, _ = tabletop()
    bad = Found(points, [0, 1], "x", 0.5)
    bad.point_indices = np.array([0, len(points) + 5])
    with pytest.raises(ValueError, match="outside"):
        render_instances_png(points, colors, [bad], tmp_path / "bad.png")


@pytest.mark.parametrize(
    "points",
    [
        np.zeros((1, 3)),
        np.array([[0.0, 0, 0], [1, 0, 0]]),
        np.c_[np.linspace(0, 1, 50), np.zeros(50), np.zeros(50)],
    ],
)
def test_picture_of_degenerate_scenes(points, tmp_path):
    with Image.open(render_instances_png(points, None, [], tmp_path / "tiny.png")) as png:
        assert png.size == (1280, 960)


# --- declared counts, bounds, downsampling -------------------------------------------------------

XYZ_PLY = ["float x", "float y", "float z"]


def xyz_pcd(points: int, kind: str = "binary", width: int | None = None) -> bytes:
    width = points if width is None else width
    return (
        f"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {width}\nHEIGHT 1\n"
        f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {points}\nDATA {kind}\n"
    ).encode()


def test_pcd_counts_are_checked_against_the_data(tmp_path):
    data = POINTS.tobytes()  # 50 points of 12 bytes
    cases = {
        "cut.pcd": (
            xyz_pcd(50) + data[:300],
            ["truncated", "POINTS 50 of 12 bytes (600 bytes)", "300 bytes follow"],
        ),
        "more.pcd": (
            xyz_pcd(20) + data,
            ["more data than its header declares", "POINTS 20", "360 bytes more"],
        ),
        "fewer.pcd": (xyz_pcd(80) + data, ["truncated", "POINTS 80", "(50 points)"]),
        "width.pcd": (xyz_pcd(50, width=49) + data, ["POINTS 50 but WIDTH x HEIGHT = 49 x 1 = 49"]),
    }
    ascii_rows = "".join(f"{x} {y} {z}\n" for x, y, z in POINTS).encode()
    cases["ascii_more.pcd"] = (xyz_pcd(10, "ascii") + ascii_rows, ["POINTS 10", "holds 50"])
    cases["ascii_fewer.pcd"] = (xyz_pcd(60, "ascii") + ascii_rows, ["POINTS 60", "holds 50"])
    cases["ascii_huge.pcd"] = (
        xyz_pcd(2**62, "ascii", width=2**62) + ascii_rows,
        ["truncated", "room for at most"],
    )
    for name, (content, fragments) in cases.items():
        (tmp_path / name).write_bytes(content)
        one_line_error(tmp_path / name, *fragments)
    # the same data with honest headers reads, and a trailing line end is no extra data
    (tmp_path / "ok.pcd").write_bytes(xyz_pcd(50) + data + b"\n")
    np.testing.assert_array_equal(
        read_point_file(tmp_path / "ok.pcd").points, POINTS.astype(np.float64)
    )
    (tmp_path / "ok_ascii.pcd").write_bytes(xyz_pcd(50, "ascii") + ascii_rows)
    assert len(read_point_file(tmp_path / "ok_ascii.pcd")) == 50


def test_compressed_pcd_block_size_must_match_points(tmp_path):
    data = shared_data("mosd", "learn0.pcd").read_bytes()
    assert b"POINTS 307200\n" in data
    path = tmp_path / "lying.pcd"
    path.write_bytes(
        data.replace(b"POINTS 307200\n", b"POINTS 307199\n")
        .replace(b"WIDTH 640\n", b"WIDTH 307199\n")
        .replace(b"HEIGHT 480\n", b"HEIGHT 1\n")
    )
    one_line_error(path, "POINTS 307199", "compressed block unpacks to")


def test_ply_counts_are_checked_against_the_data_before_reading(tmp_path):
    import tracemalloc

    data = POINTS.tobytes()
    cases = {
        "more.ply": (
            ply_header("binary_little_endian", 20, XYZ_PLY) + data,
            ["more data than its header declares", "20 vertices of 12 bytes", "360 bytes more"],
        ),
        "faces_cut.ply": (
            ply_header("binary_little_endian", 50, XYZ_PLY, ["element face 4", "property int a"])
            + data
            + b"\0" * 8,
            ["truncated", "element face 4 (16 bytes), 8 bytes follow"],
        ),
        "ascii_more.ply": (
            ply_header("ascii", 10, XYZ_PLY) + b"0 0 0\n" * 50,
            ["more data than its header declares", "the file has 40 more lines"],
        ),
        "ascii_cut.ply": (
            ply_header("ascii", 60, XYZ_PLY) + b"0 0 0\n" * 50,
            ["truncated", "element vertex 60", "300 follow"],
        ),
    }
    for name, (content, fragments) in cases.items():
        (tmp_path / name).write_bytes(content)
        one_line_error(tmp_path / name, *fragments)
    for fmt, body in (("binary_little_endian", data), ("ascii", b"0 0 0\n" * 50)):
        huge = tmp_path / f"huge_{fmt}.ply"
        huge.write_bytes(ply_header(fmt, 2**62, XYZ_PLY) + body)
        tracemalloc.start()
        started = time.perf_counter()
        one_line_error(huge, "truncated", str(2**62))
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert elapsed < 1.0 and peak < 1 << 20, (fmt, elapsed, peak)
    # honest files with a trailing line end, or faces after the vertices, still read
    (tmp_path / "ok.ply").write_bytes(
        ply_header("binary_little_endian", 50, XYZ_PLY) + data + b"\n"
    )
    assert len(read_point_file(tmp_path / "ok.ply")) == 50
    faces = ply_header(
        "ascii", 3, XYZ_PLY, ["element face 1", "property list uchar int vertex_indices"]
    )
    (tmp_path / "faces.ply").write_bytes(faces + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    assert len(read_point_file(tmp_path / "faces.ply")) == 3


def test_npz_shape_that_lies_is_refused_before_allocating(tmp_path):
    import io
    import zipfile

    npy = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        npy, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 3)}
    )
    npy.write(POINTS.astype("<f8").tobytes())
    with zipfile.ZipFile(tmp_path / "lying.npz", "w") as archive:
        archive.writestr("points.npy", npy.getvalue())
    one_line_error(tmp_path / "lying.npz", "declares shape (1000000000000, 3)", "holds 1200 bytes")


def test_max_points_is_refused_from_the_header_without_reading_the_data(tmp_path):
    import tracemalloc

    from sole_ros.pointfiles import TooManyPointsError

    # 20 M vertices declared, the data a hole in a sparse file: reading it would take 240 MB
    path = tmp_path / "large.ply"
    header = ply_header("binary_little_endian", 20_000_000, XYZ_PLY)
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + 12 * 20_000_000)
    tracemalloc.start()
    with pytest.raises(TooManyPointsError) as info:
        read_point_file(path, max_points=1_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (info.value.count, info.value.limit) == (20_000_000, 1_000_000) and peak < 1 << 20
    for name, content in (
        ("a.pcd", xyz_pcd(50) + POINTS.tobytes()),
        ("a.ply", ply_header("binary_little_endian", 50, XYZ_PLY) + POINTS.tobytes()),
    ):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(TooManyPointsError, match="50 points, more than the 49 allowed"):
            read_point_file(tmp_path / name, max_points=49)
        assert len(read_point_file(tmp_path / name, max_points=50)) == 50
    np.savez(tmp_path / "a.npz", points=POINTS)
    with pytest.raises(TooManyPointsError):
        read_point_file(tmp_path / "a.npz", max_points=49)


def test_coordinates_beyond_the_bound_are_refused(tmp_path):
    from sole_ros.pointfiles import MAX_COORDINATE

    points = POINTS.astype(np.float64)
    points[[2, 4]] = np.nan
    points[9] = (0.0, 0.0, -2 * MAX_COORDINATE)
    np.savez(tmp_path / "far.npz", points=points)
    one_line_error(
        tmp_path / "far.npz",
        f"up to {MAX_COORDINATE:g} m from the origin",
        "one at 20000 m",
        "(row 9)",
    )
    points[9] = (0.0, 0.0, -0.9 * MAX_COORDINATE)  # within the bound: read as it is
    np.savez(tmp_path / "near.npz", points=points)
    assert read_point_file(tmp_path / "near.npz").points[7, 2] == -0.9 * MAX_COORDINATE


def test_voxel_downsample_keeps_the_first_row_of_each_cube():
    from sole_ros.pointfiles import PointFile, voxel_downsample

    rng = np.random.default_rng(3)
    points = rng.uniform(-1.0, 1.0, size=(3000, 3))
    rows = np.sort(rng.choice(5000, size=3000, replace=False))  # rows of a file with dropped ones
    colors = rng.uniform(0, 1, size=(3000, 3)).astype(np.float32)
    scene = PointFile(
        points=points,
        colors=colors,
        features=points[:, :1].astype(np.float32),
        source_index=rows,
        num_input=5000,
    )
    thin = voxel_downsample(scene, 0.3)
    first: dict = {}
    for i, cell in enumerate(map(tuple, np.floor(points / 0.3).astype(int))):
        first.setdefault(cell, i)
    kept = np.array(sorted(first.values()))
    np.testing.assert_array_equal(thin.source_index, rows[kept])
    np.testing.assert_array_equal(thin.points, points[kept])
    np.testing.assert_array_equal(thin.colors, colors[kept])
    assert thin.num_input == 5000 and len(thin) == len(kept) < 3000
    np.testing.assert_array_equal(thin.to_input_indices([0, 1]), rows[kept[:2]])
    with pytest.raises(ValueError):
        voxel_downsample(scene, 0.0)
