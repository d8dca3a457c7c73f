"""The message conversion layer (sole_ros.ros.*) over real ROS 2 message types.

Clouds and images are built by hand here (numpy structured arrays, explicit byte orders), not by
the code under test, so a layout bug cannot cancel itself out.
"""

from __future__ import annotations

import array
import math
import threading

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")

from builtin_interfaces.msg import Time  # noqa: E402
from fuzzing import fuzz_settings  # noqa: E402
from geometry_msgs.msg import (  # noqa: E402
    Point,
    Pose,
    PoseStamped,
    PoseWithCovarianceStamped,
    Quaternion,
    Transform,
    TransformStamped,
    Vector3,
)
from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from sole_ros.messages.frames import rgbd_frame  # noqa: E402
from sole_ros.ros.errors import MalformedMessage, message_bytes  # noqa: E402
from sole_ros.ros.images import (  # noqa: E402
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    camera_matrix,
    color_image_fields,
    color_to_rgb,
    depth_image_fields,
    depth_to_metres,
)
from sole_ros.ros.markers import PALETTE, instance_markers  # noqa: E402
from sole_ros.ros.pointcloud import make_cloud, read_points  # noqa: E402
from sole_ros.ros.sync import UNMATCHED, ApproximateTimeSync, subscribe_synchronized  # noqa: E402
from sole_ros.ros.transforms import (  # noqa: E402
    PoseBuffer,
    PoseLookupError,
    extrinsic_matrix,
    matrix_from_odometry,
    matrix_from_pose_stamped,
    matrix_from_transform_stamped,
    pose_to_matrix,
    seconds_to_stamp,
    stamp_to_seconds,
)

FUZZ = fuzz_settings(300, suppress_health_check=[HealthCheck.too_slow])
F32, F64, U32, U8 = PointField.FLOAT32, PointField.FLOAT64, PointField.UINT32, PointField.UINT8
NP_OF = {
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
    PointField.UINT32: "u4",
    PointField.UINT8: "u1",
    PointField.INT32: "i4",
    PointField.UINT16: "u2",
}


def as_data(raw: bytes) -> array.array:
    data = array.array("B")
    data.frombytes(raw)
    return data


def hand_cloud(
    columns: dict[str, np.ndarray],
    layout: dict[str, tuple[int, int]],
    point_step: int,
    *,
    height: int = 1,
    row_pad: int = 0,
    bigendian: bool = False,
    junk: int = 0xA5,
) -> PointCloud2:
    """A cloud with fields at the given (offset, datatype); padding bytes hold ``junk``."""
    order = ">" if bigendian else "<"
    names = list(layout)
    record = np.dtype(
        {
            "names": names,
            "formats": [order + NP_OF[layout[n][1]] for n in names],
            "offsets": [layout[n][0] for n in names],
            "itemsize": point_step,
        }
    )
    count = len(next(iter(columns.values())))
    assert count % height == 0
    width = count // height
    rows = np.full((height, width * point_step + row_pad), junk, np.uint8)
    table = np.frombuffer(
        rows[:, : width * point_step].tobytes(), dtype=record
    ).copy()  # keeps the junk
    for name in names:
        table[name] = columns[name]
    rows[:, : width * point_step] = np.frombuffer(table.tobytes(), np.uint8).reshape(height, -1)
    msg = PointCloud2(
        height=height,
        width=width,
        point_step=point_step,
        row_step=width * point_step + row_pad,
        is_bigendian=bigendian,
        is_dense=False,
    )
    msg.fields = [
        PointField(name=n, offset=layout[n][0], datatype=layout[n][1], count=1) for n in names
    ]
    msg.data = as_data(rows.tobytes())
    return msg


def packed_rgb(rgb: np.ndarray, alpha: int | None = None) -> np.ndarray:
    c = rgb.astype(np.uint32)
    value = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    if alpha is not None:
        value |= np.uint32(alpha) << np.uint32(24)
    return value


@pytest.fixture
def rng():
    return np.random.default_rng(5)


# ---------------------------------------------------------------- point clouds


def test_make_cloud_round_trip_with_colour_and_extra_fields(rng):
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    ids = np.arange(50, dtype=np.uint32) * 1000
    scores = rng.random(50).astype(np.float32)
    msg = make_cloud(Header(frame_id="map"), xyz, rgb, {"instance_id": ids, "score": scores})

    assert msg.header.frame_id == "map"
    assert (msg.height, msg.width, msg.is_bigendian, msg.is_dense) == (1, 50, False, True)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "instance_id", "score"]
    assert [f.datatype for f in msg.fields] == [F32, F32, F32, F32, U32, F32]
    assert msg.row_step == msg.point_step * 50 == len(msg.data)
    back_xyz, back_rgb = read_points(msg)
    np.testing.assert_array_equal(back_xyz, xyz)
    np.testing.assert_array_equal(back_rgb, rgb)
    # The extra fields hold their values at their declared offsets.
    points = np.frombuffer(msg.data, np.uint8).reshape(50, msg.point_step)
    by_name = {f.name: f for f in msg.fields}
    got_ids = points[:, by_name["instance_id"].offset :][:, :4].copy().view("<u4").ravel()
    got_scores = points[:, by_name["score"].offset :][:, :4].copy().view("<f4").ravel()
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got_scores, scores)


def test_make_cloud_rgb_is_the_float32_rviz_expects():
    msg = make_cloud(Header(), np.zeros((1, 3)), np.array([[255, 128, 1]], np.uint8))
    rgb_field = next(f for f in msg.fields if f.name == "rgb")
    assert rgb_field.datatype == F32
    raw = bytes(msg.data)[rgb_field.offset : rgb_field.offset + 4]
    assert int.from_bytes(raw, "little") == 0x00FF8001


def test_make_cloud_marks_non_finite_points_and_checks_inputs():
    xyz = np.array([[0, 0, 1], [np.nan, 0, 1], [1, 2, 3]], np.float32)
    msg = make_cloud(Header(), xyz)
    assert msg.is_dense is False
    back, rgb = read_points(msg)
    assert rgb is None
    np.testing.assert_array_equal(back, xyz[[0, 2]])
    with pytest.raises(ValueError, match="shape"):
        make_cloud(Header(), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="uint8"):
        make_cloud(Header(), np.zeros((2, 3)), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="int64"):
        make_cloud(
            Header(), np.zeros((2, 3)), extra_fields={"instance_id": np.arange(2, dtype=np.int64)}
        )
    with pytest.raises(ValueError, match="shape"):
        make_cloud(Header(), np.zeros((2, 3)), extra_fields={"score": np.zeros(3, np.float32)})
    empty = make_cloud(Header(), np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    assert (empty.width, len(empty.data)) == (0, 0)
    assert read_points(empty)[0].shape == (0, 3)


def test_shuffled_fields_padding_and_float64(rng):
    xyz = rng.normal(size=(20, 3))
    rgb = rng.integers(0, 256, (20, 3), dtype=np.uint8)
    # rgb first, then z, x, y as float64, an unrelated field and 7 bytes of tail padding.
    layout = {"rgb": (0, F32), "intensity": (4, F32), "z": (8, F64), "x": (16, F64), "y": (24, F64)}
    cols = {
        "rgb": packed_rgb(rgb).view(np.float32),
        "intensity": np.ones(20, np.float32),
        "x": xyz[:, 0],
        "y": xyz[:, 1],
        "z": xyz[:, 2],
    }
    got_xyz, got_rgb = read_points(hand_cloud(cols, layout, point_step=39, row_pad=5))
    np.testing.assert_array_equal(got_xyz, xyz.astype(np.float32))
    np.testing.assert_array_equal(got_rgb, rgb)


@pytest.mark.parametrize("colour_type", [F32, U32])
def test_big_endian_cloud(rng, colour_type):
    xyz = rng.normal(size=(10, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (10, 3), dtype=np.uint8)
    packed = packed_rgb(rgb)
    layout = {"x": (0, F32), "y": (4, F32), "z": (8, F32), "rgb": (16, colour_type)}
    cols = {
        "x": xyz[:, 0],
        "y": xyz[:, 1],
        "z": xyz[:, 2],
        "rgb": packed.view(np.float32) if colour_type == F32 else packed,
    }
    msg = hand_cloud(cols, layout, point_step=20, bigendian=True)
    got_xyz, got_rgb = read_points(msg)
    np.testing.assert_array_equal(got_xyz, xyz)
    np.testing.assert_array_equal(got_rgb, rgb)
    msg.is_bigendian = False  # the same bytes read the wrong way round are different numbers
    assert not np.array_equal(read_points(msg)[0], xyz)


def test_organised_cloud_with_nans_keeps_row_major_order():
    height, width = 3, 4
    xyz = np.arange(height * width * 3, dtype=np.float32).reshape(-1, 3)
    xyz[1, 0] = np.nan
    xyz[6, 2] = np.inf
    xyz[11, 1] = -np.inf
    layout = {"x": (0, F32), "y": (4, F32), "z": (8, F32)}
    msg = hand_cloud(
        {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}, layout, 16, height=height, row_pad=8
    )
    got, rgb = read_points(msg)
    assert rgb is None
    np.testing.assert_array_equal(got, np.delete(xyz, [1, 6, 11], axis=0))


def test_rgba_uint32_packing(rng):
    rgb = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    layout = {"x": (0, F32), "y": (4, F32), "z": (8, F32), "rgba": (12, U32)}
    cols = {
        "x": np.zeros(6),
        "y": np.zeros(6),
        "z": np.ones(6),
        "rgba": packed_rgb(rgb, alpha=0x7F),
    }
    got_xyz, got_rgb = read_points(hand_cloud(cols, layout, 16))
    assert got_xyz.dtype == np.float32 and got_rgb.dtype == np.uint8
    np.testing.assert_array_equal(got_rgb, rgb)


def test_field_count_zero_is_read_as_one_element():
    layout = {"x": (0, F32), "y": (4, F32), "z": (8, F32)}
    msg = hand_cloud({"x": [1.0], "y": [2.0], "z": [3.0]}, layout, 12)
    for field in msg.fields:
        field.count = 0
    np.testing.assert_array_equal(read_points(msg)[0], [[1, 2, 3]])


def test_float64_beyond_float32_range_is_dropped_not_kept_as_inf():
    layout = {"x": (0, F64), "y": (8, F64), "z": (16, F64)}
    msg = hand_cloud({"x": [1.0, 1e300], "y": [2.0, 0.0], "z": [3.0, 0.0]}, layout, 24)
    np.testing.assert_array_equal(read_points(msg)[0], [[1, 2, 3]])


def test_message_bytes_accepts_buffers_and_int_sequences_only():
    np.testing.assert_array_equal(message_bytes(array.array("B", [1, 2])), [1, 2])
    np.testing.assert_array_equal(message_bytes(b"\x03\x04"), [3, 4])
    np.testing.assert_array_equal(message_bytes([5, 6]), [5, 6])
    with pytest.raises(MalformedMessage, match="byte buffer"):
        message_bytes([1, 300])


def _valid_cloud() -> PointCloud2:
    layout = {"x": (0, F32), "y": (4, F32), "z": (8, F32), "rgb": (12, F32)}
    return hand_cloud(
        {"x": np.zeros(4), "y": np.zeros(4), "z": np.ones(4), "rgb": np.zeros(4, np.float32)},
        layout,
        16,
        height=2,
    )


def _break(field_name=None, **changes):
    def apply(msg):
        target = msg if field_name is None else next(f for f in msg.fields if f.name == field_name)
        for key, value in changes.items():
            setattr(target, key, value)
        return msg

    return apply


MALFORMED_CLOUDS = {
    "no x field": (_break("x", name="intensity"), "no 'x' field"),
    "x as uint16": (_break("x", datatype=PointField.UINT16), "float32 or float64"),
    "unknown datatype": (_break("y", datatype=9), "unknown datatype"),
    "datatype 0": (_break("z", datatype=0), "unknown datatype"),
    "field past point_step": (_break("rgb", offset=14), "does not fit"),
    "field count past point_step": (_break("z", count=3), "does not fit"),
    "rgb as uint8": (_break("rgb", datatype=U8), "packed"),
    "data too short": (lambda m: setattr(m, "data", m.data[:-1]) or m, "bytes"),
    "data too long": (
        lambda m: setattr(m, "data", m.data + array.array("B", [0] * 16)) or m,
        "bytes",
    ),
    "wider than row_step": (_break(width=3), "row_step 32 is less than width 3"),
    "taller than data": (_break(height=5), "bytes"),
    "row_step too small": (_break(row_step=16), "row_step"),
    "point_step zero": (_break(point_step=0), "point_step"),
    "duplicate field": (
        lambda m: (
            setattr(
                m,
                "fields",
                list(m.fields) + [PointField(name="x", offset=0, datatype=F32, count=1)],
            )
            or m
        ),
        "twice",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED_CLOUDS))
def test_malformed_clouds_are_rejected_with_a_reason(case):
    breaker, reason = MALFORMED_CLOUDS[case]
    read_points(_valid_cloud())  # the unbroken message is fine
    with pytest.raises(MalformedMessage, match=reason) as info:
        read_points(breaker(_valid_cloud()))
    assert "\n" not in str(info.value)


field_strategy = st.builds(
    PointField,
    name=st.sampled_from(["x", "y", "z", "rgb", "rgba", "intensity"]),
    offset=st.integers(0, 40),
    datatype=st.integers(0, 10),
    count=st.integers(0, 3),
)


@st.composite
def fuzzed_clouds(draw):
    msg = PointCloud2()
    msg.height = draw(st.integers(0, 4))
    msg.width = draw(st.integers(0, 5))
    msg.point_step = draw(st.integers(0, 40))
    msg.row_step = draw(st.one_of(st.just(msg.width * msg.point_step), st.integers(0, 250)))
    msg.is_bigendian = draw(st.booleans())
    # Often a plausible xyz layout, sometimes anything at all.
    plausible = [
        PointField(name=n, offset=4 * i, datatype=F32, count=1) for i, n in enumerate("xyz")
    ]
    msg.fields = draw(
        st.one_of(
            st.lists(field_strategy, max_size=6),
            st.lists(field_strategy, max_size=2).map(lambda extra: plausible + extra),
        )
    )
    size = draw(st.one_of(st.just(msg.row_step * msg.height), st.integers(0, 600)))
    msg.data = as_data(draw(st.binary(min_size=size, max_size=size)))
    return msg


@FUZZ
@given(fuzzed_clouds())
def test_fuzzed_clouds_give_a_valid_result_or_malformed_message(msg):
    try:
        xyz, rgb = read_points(msg)
    except MalformedMessage as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert xyz.dtype == np.float32 and xyz.ndim == 2 and xyz.shape[1] == 3
    assert xyz.shape[0] <= msg.width * msg.height
    assert np.isfinite(xyz).all()
    if rgb is not None:
        assert rgb.dtype == np.uint8 and rgb.shape == xyz.shape


@FUZZ
@given(
    st.integers(0, 30).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(-1e6, 1e6, width=32), min_size=3 * n, max_size=3 * n),
            st.binary(min_size=3 * n, max_size=3 * n),
        )
    )
)
def test_make_cloud_read_points_round_trip_property(values):
    coords, colour = values
    xyz = np.array(coords, np.float32).reshape(-1, 3)
    rgb = np.frombuffer(colour, np.uint8).reshape(-1, 3)
    got_xyz, got_rgb = read_points(make_cloud(Header(), xyz, rgb))
    np.testing.assert_array_equal(got_xyz, xyz)
    np.testing.assert_array_equal(got_rgb, rgb)


# ---------------------------------------------------------------- images


def hand_image(
    pixels: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False
) -> Image:
    """An Image whose rows carry ``pad`` junk bytes after the pixels."""
    height, width = pixels.shape[:2]
    dtype = pixels.dtype.newbyteorder(">" if bigendian else "<")
    row_bytes = pixels.reshape(height, -1).astype(dtype).view(np.uint8).reshape(height, -1)
    rows = np.concatenate([row_bytes, np.full((height, pad), 0xEE, np.uint8)], axis=1)
    msg = Image(
        height=height, width=width, encoding=encoding, is_bigendian=bigendian, step=rows.shape[1]
    )
    msg.data = as_data(rows.tobytes())
    return msg


@pytest.mark.parametrize(
    "encoding,channels,order",
    [
        ("rgb8", 3, [0, 1, 2]),
        ("bgr8", 3, [2, 1, 0]),
        ("rgba8", 4, [0, 1, 2]),
        ("bgra8", 4, [2, 1, 0]),
        ("mono8", 1, [0, 0, 0]),
    ],
)
@pytest.mark.parametrize("pad", [0, 3])
def test_color_encodings_with_step_padding(rng, encoding, channels, order, pad):
    stored = rng.integers(0, 256, (5, 7, channels), dtype=np.uint8)
    rgb = color_to_rgb(hand_image(stored, encoding, pad=pad))
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, stored[:, :, order])


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 1, 4])  # an odd pad leaves 16-bit rows unaligned
def test_16bit_depth_is_millimetres(encoding, bigendian, pad):
    mm = np.array([[0, 1000, 1500], [65535, 1, 2500]], np.uint16)
    depth = depth_to_metres(hand_image(mm, encoding, pad=pad, bigendian=bigendian))
    assert depth.dtype == np.float32 and depth.shape == (2, 3)
    assert math.isnan(depth[0, 0])  # 0 = no return
    np.testing.assert_allclose(depth[0, 1:], [1.0, 1.5])
    np.testing.assert_allclose(depth[1], [65.535, 0.001, 2.5], rtol=1e-6)


@pytest.mark.parametrize("bigendian", [False, True])
def test_float_depth_is_metres_and_invalid_is_nan(bigendian):
    metres = np.array([[1.25, np.nan, np.inf], [-1.0, 0.0, 3.5]], np.float32)
    depth = depth_to_metres(hand_image(metres, "32FC1", pad=2, bigendian=bigendian))
    np.testing.assert_array_equal(depth[0, 0], 1.25)
    np.testing.assert_array_equal(depth[1, 2], 3.5)
    assert np.isnan(depth[[0, 0, 1, 1], [1, 2, 0, 1]]).all()


MALFORMED_IMAGES = [
    (
        depth_to_metres,
        lambda: hand_image(np.zeros((2, 2, 3), np.uint8), "rgb8"),
        "unsupported depth encoding 'rgb8'",
    ),
    (
        color_to_rgb,
        lambda: hand_image(np.zeros((2, 2), np.uint16), "16UC1"),
        "unsupported colour encoding '16UC1'",
    ),
    (
        color_to_rgb,
        lambda: hand_image(np.zeros((2, 2, 2), np.uint8), "yuv422"),
        "unsupported colour encoding",
    ),
    (
        color_to_rgb,
        lambda: hand_image(np.zeros((2, 2, 3), np.uint8), ""),
        "unsupported colour encoding",
    ),
    (
        color_to_rgb,
        lambda: _with(hand_image(np.zeros((2, 2, 3), np.uint8), "rgb8"), step=5),
        "step 5",
    ),
    (
        color_to_rgb,
        lambda: _with(hand_image(np.zeros((2, 2, 3), np.uint8), "rgb8"), height=3),
        "bytes",
    ),
    (
        color_to_rgb,
        lambda: _with(hand_image(np.zeros((2, 2, 3), np.uint8), "rgb8"), width=3),
        "step",
    ),
    (
        depth_to_metres,
        lambda: _with(hand_image(np.zeros((2, 2), np.uint16), "16UC1", pad=1), step=9),
        "bytes",
    ),
    (
        depth_to_metres,
        lambda: _truncate(hand_image(np.zeros((2, 2), np.float32), "32FC1")),
        "bytes",
    ),
]


def _with(msg, **changes):
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def _truncate(msg):
    msg.data = msg.data[:-1]
    return msg


@pytest.mark.parametrize("convert,make,reason", MALFORMED_IMAGES)
def test_malformed_images_are_rejected_with_a_reason(convert, make, reason):
    with pytest.raises(MalformedMessage, match=reason):
        convert(make())


@st.composite
def fuzzed_images(draw):
    msg = Image()
    msg.height = draw(st.integers(0, 5))
    msg.width = draw(st.integers(0, 5))
    msg.encoding = draw(
        st.sampled_from(
            [
                "rgb8",
                "bgr8",
                "rgba8",
                "bgra8",
                "mono8",
                "16UC1",
                "mono16",
                "32FC1",
                "64FC1",
                "8UC3",
                "bayer_rggb8",
                "",
                "RGB8",
            ]
        )
    )
    msg.step = draw(st.one_of(st.integers(0, 40), st.just(msg.width * 4)))
    msg.is_bigendian = draw(st.booleans())
    size = draw(st.one_of(st.just(msg.step * msg.height), st.integers(0, 200)))
    msg.data = as_data(draw(st.binary(min_size=size, max_size=size)))
    return msg


@FUZZ
@given(fuzzed_images())
def test_fuzzed_images_give_a_valid_result_or_malformed_message(msg):
    for convert in (depth_to_metres, color_to_rgb):
        try:
            out = convert(msg)
        except MalformedMessage as exc:
            assert str(exc) and "\n" not in str(exc)
            continue
        assert out.shape[:2] == (msg.height, msg.width)
        if convert is depth_to_metres:
            assert out.dtype == np.float32
            finite = out[np.isfinite(out)]
            assert (finite > 0).all() and np.isnan(out[~np.isfinite(out)]).all()
        else:
            assert out.dtype == np.uint8 and out.shape[2] == 3


@pytest.mark.parametrize("encoding", sorted(DEPTH_ENCODINGS))
def test_depth_encoder_and_decoder_read_the_same_table(encoding):
    metres = np.array([[1.25, np.nan, 0.0], [-1.0, 2.5, 0.002]])
    msg = Image(**depth_image_fields(metres, encoding))
    assert msg.encoding == encoding and msg.step == 3 * DEPTH_ENCODINGS[encoding][0].itemsize
    back = depth_to_metres(msg)
    np.testing.assert_allclose(back[[0, 1, 1], [0, 1, 2]], [1.25, 2.5, 0.002], atol=5e-4)
    assert np.isnan(back[[0, 0, 1], [1, 2, 0]]).all()  # no reading stays no reading


@pytest.mark.parametrize("encoding", sorted(COLOR_ENCODINGS))
def test_colour_encoder_and_decoder_read_the_same_table(rng, encoding):
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb[:] = rgb[:, :, :1]  # grey survives a round trip through one channel
    np.testing.assert_array_equal(color_to_rgb(Image(**color_image_fields(rgb, encoding))), rgb)


def test_the_map_accepts_every_encoding_the_messages_decode():
    """The scene's input checks list encodings too: they must be the decoders' table."""
    from sole_ros.scene import validation

    assert set(validation.COLOR_ENCODINGS) == set(COLOR_ENCODINGS)
    assert {k: np.dtype(v) for k, v in validation.DEPTH_ENCODINGS.items()} == {
        k: dtype for k, (dtype, _) in DEPTH_ENCODINGS.items()
    }


def _sensor_messages(depth_size=(8, 6), color_size=(8, 6)):
    (dw, dh), (cw, ch) = depth_size, color_size
    header = Header(stamp=seconds_to_stamp(5.0), frame_id="cam")
    depth = Image(header=header, **depth_image_fields(np.full((dh, dw), 1.5)))
    rgb = np.zeros((ch, cw, 3), np.uint8)
    rgb[:, : cw // 2] = [200, 10, 10]
    color = Image(header=header, **color_image_fields(rgb))
    info = camera_info(width=dw, height=dh, fx=10.0, fy=10.0, cx=3.5, cy=2.5)
    return depth, info, color


def test_frame_builder_decodes_and_asks_the_pose_last():
    depth, info, color = _sensor_messages()
    asked = []
    frame = rgbd_frame(
        depth,
        info,
        color,
        pose=lambda stamp, frame_id: asked.append((stamp, frame_id)) or np.eye(4),
    )
    assert asked == [(5.0, "cam")] and frame.inputs == ("depth", "color")
    np.testing.assert_allclose(frame.depth, 1.5)
    assert frame.color.shape == (6, 8, 3) and frame.K[0, 0] == 10.0
    with pytest.raises(MalformedMessage):  # a bad message never waits for its pose
        rgbd_frame(_with(depth, step=1), info, color, pose=lambda *_: pytest.fail("pose asked"))


def test_colour_of_another_size_is_resized_when_scaled_and_refused_otherwise():
    """The one rule for node and bag: a uniformly scaled colour view is resized to the depth
    image; another aspect ratio is not registered to it and is refused with the reason."""
    notes = []
    depth, info, color = _sensor_messages(color_size=(16, 12))
    frame = rgbd_frame(depth, info, color, pose=lambda *_: np.eye(4), on_resize=notes.append)
    assert frame.color.shape == (6, 8, 3) and len(notes) == 1 and "16x12" in notes[0]
    np.testing.assert_array_equal(frame.color[:, 0], [[200, 10, 10]] * 6)  # the left half stays red
    depth, info, color = _sensor_messages(color_size=(16, 6))
    with pytest.raises(MalformedMessage, match="aspect ratios differ"):
        rgbd_frame(depth, info, color, pose=lambda *_: np.eye(4))


def camera_info(width=640, height=480, fx=525.0, fy=526.0, cx=319.5, cy=239.5) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    return info


def test_camera_matrix_and_size_check():
    info = camera_info()
    k = camera_matrix(info, Image(width=640, height=480))
    np.testing.assert_array_equal(k, [[525, 0, 319.5], [0, 526, 239.5], [0, 0, 1]])
    np.testing.assert_array_equal(camera_matrix(info), k)
    # A half-size stream: focal lengths halve, the principal point keeps its place on the sensor.
    half = camera_matrix(info, (320, 240))
    np.testing.assert_allclose(half, [[262.5, 0, 159.5], [0, 263, 119.5], [0, 0, 1]])
    with pytest.raises(MalformedMessage, match="320x240 but camera_info describes 640x480"):
        camera_matrix(info, (320, 240), allow_scaled=False)
    with pytest.raises(MalformedMessage, match="640x400"):
        camera_matrix(info, Image(width=640, height=400))  # not a uniform scale


def test_camera_matrix_binning_and_roi():
    info = camera_info()
    info.binning_x = info.binning_y = 2
    np.testing.assert_allclose(
        camera_matrix(info, (320, 240)), [[262.5, 0, 159.75], [0, 263, 119.75], [0, 0, 1]]
    )
    info = camera_info()
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 40, 200, 100
    np.testing.assert_allclose(
        camera_matrix(info, (200, 100)), [[525, 0, 219.5], [0, 526, 199.5], [0, 0, 1]]
    )
    info.roi.x_offset = 500
    with pytest.raises(MalformedMessage, match="ROI"):
        camera_matrix(info)


@pytest.mark.parametrize(
    "k,reason",
    [
        ([0.0] * 9, "fx=0"),  # the default (uncalibrated) CameraInfo
        ([525, 0, 319.5, 0, -526, 239.5, 0, 0, 1], "fy=-526"),
        ([525, 0, np.nan, 0, 526, 239.5, 0, 0, 1], "non-finite"),
        ([525, 0, 319.5, 0, 526, 239.5, 0, 0, 2], "not an intrinsic matrix"),
    ],
)
def test_camera_matrix_rejects_bad_intrinsics(k, reason):
    info = camera_info()
    info.k = [float(v) for v in k]
    with pytest.raises(MalformedMessage, match=reason):
        camera_matrix(info)


# ---------------------------------------------------------------- transforms


def quaternion(axis, angle) -> Quaternion:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    s = math.sin(angle / 2)
    return Quaternion(x=axis[0] * s, y=axis[1] * s, z=axis[2] * s, w=math.cos(angle / 2))


def rot_z(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rot_x(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def test_stamps():
    assert stamp_to_seconds(Time(sec=12, nanosec=500_000_000)) == 12.5
    assert seconds_to_stamp(12.25) == Time(sec=12, nanosec=250_000_000)
    assert seconds_to_stamp(1.9999999999) == Time(sec=2, nanosec=0)  # rounding carries
    stamp = Time(sec=1_700_000_000, nanosec=123_456_789)
    back = seconds_to_stamp(stamp_to_seconds(stamp))
    assert back.sec == stamp.sec and abs(back.nanosec - stamp.nanosec) < 1000
    for bad in (-1.0, math.nan, math.inf, 2.0**31):
        with pytest.raises(ValueError):
            seconds_to_stamp(bad)


def test_pose_to_matrix_by_hand():
    m = pose_to_matrix(Point(x=1.0, y=2.0, z=3.0), quaternion([0, 0, 1], math.pi / 2))
    expected = np.eye(4)
    expected[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    expected[:3, 3] = [1, 2, 3]
    np.testing.assert_allclose(m, expected, atol=1e-12)
    # Rounded by hand to 4 digits: within tolerance, and normalised.
    m = pose_to_matrix(Vector3(), Quaternion(x=0.0, y=0.0, z=0.7071, w=0.7071))
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize(
    "q,reason",
    [
        ((0.0, 0.0, 0.0, 2.0), "norm 2"),
        ((0.0, 0.0, 0.0, 0.0), "norm 0"),
        ((0.0, 0.0, 0.5, 0.5), "norm 0.707"),
        ((math.nan, 0.0, 0.0, 1.0), "not finite"),
    ],
)
def test_quaternion_validation(q, reason):
    with pytest.raises(MalformedMessage, match=reason):
        pose_to_matrix(Point(), Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))
    with pytest.raises(MalformedMessage, match="position"):
        pose_to_matrix(Point(x=math.inf), Quaternion())


def test_matrices_from_messages():
    pose = Pose(position=Point(x=1.0), orientation=quaternion([0, 0, 1], 0.3))
    expected = np.eye(4)
    expected[:3, :3] = rot_z(0.3)
    expected[0, 3] = 1.0
    odom = Odometry()
    odom.pose.pose = pose
    np.testing.assert_allclose(matrix_from_odometry(odom), expected, atol=1e-12)
    np.testing.assert_allclose(
        matrix_from_pose_stamped(PoseStamped(pose=pose)), expected, atol=1e-12
    )
    with_cov = PoseWithCovarianceStamped()
    with_cov.pose.pose = pose
    np.testing.assert_allclose(matrix_from_pose_stamped(with_cov), expected, atol=1e-12)
    tf = TransformStamped(
        transform=Transform(translation=Vector3(x=1.0), rotation=quaternion([0, 0, 1], 0.3))
    )
    np.testing.assert_allclose(matrix_from_transform_stamped(tf), expected, atol=1e-12)


def _pose(translation, yaw):
    m = np.eye(4)
    m[:3, :3] = rot_z(yaw)
    m[:3, 3] = translation
    return m


def test_pose_buffer_interpolates_translation_linearly_and_rotation_by_slerp():
    buffer = PoseBuffer()
    buffer.add(10.0, _pose([0, 0, 0], 0.0))
    buffer.add(11.0, _pose([2, 0, 4], math.pi / 2))
    np.testing.assert_allclose(buffer.lookup(10.5), _pose([1, 0, 2], math.pi / 4), atol=1e-9)
    np.testing.assert_allclose(buffer.lookup(10.25), _pose([0.5, 0, 1], math.pi / 8), atol=1e-9)
    c = math.cos(math.pi / 4)
    np.testing.assert_allclose(buffer.lookup(10.5)[:2, :2], [[c, -c], [c, c]], atol=1e-9)
    np.testing.assert_allclose(buffer.lookup(11.0), _pose([2, 0, 4], math.pi / 2), atol=1e-12)


def test_pose_buffer_tolerance_outside_the_range_and_errors():
    buffer = PoseBuffer()
    with pytest.raises(PoseLookupError, match="no pose"):
        buffer.lookup(1.0)
    buffer.add(10.0, _pose([0, 0, 0], 0.0))
    buffer.add(11.0, _pose([1, 0, 0], 0.0))
    np.testing.assert_allclose(
        buffer.lookup(11.04, tolerance=0.05), _pose([1, 0, 0], 0.0)
    )  # no extrapolation
    np.testing.assert_allclose(buffer.lookup(9.97, tolerance=0.05), np.eye(4))
    with pytest.raises(PoseLookupError, match="after the newest"):
        buffer.lookup(11.2, tolerance=0.05)
    with pytest.raises(PoseLookupError, match="before the oldest"):
        buffer.lookup(9.0, tolerance=0.05)
    gappy = PoseBuffer(max_gap=0.5)
    gappy.add(0.0, np.eye(4))
    gappy.add(2.0, np.eye(4))
    with pytest.raises(PoseLookupError, match="gap"):
        gappy.lookup(1.0)
    with pytest.raises(ValueError, match="rotation"):
        buffer.add(12.0, np.diag([1.0, 1.0, -1.0, 1.0]))


def test_pose_buffer_order_age_and_time_jumps():
    buffer = PoseBuffer(max_age=5.0, max_size=100)
    for t in (3.0, 1.0, 2.0):  # out of order
        buffer.add(t, _pose([t, 0, 0], 0.0))
    np.testing.assert_allclose(buffer.lookup(1.5)[0, 3], 1.5)
    buffer.add(2.0, _pose([20, 0, 0], 0.0))  # same stamp replaces
    assert len(buffer) == 3
    np.testing.assert_allclose(buffer.lookup(2.0)[0, 3], 20.0)
    buffer.add(7.5, np.eye(4))  # 1.0 and 2.0 are now more than 5 s old
    assert len(buffer) == 2
    with pytest.raises(PoseLookupError):
        buffer.lookup(2.0, tolerance=0.1)
    buffer.add(0.5, np.eye(4))  # 7 s back in time: a restarted bag, start over
    assert len(buffer) == 1
    small = PoseBuffer(max_size=3)
    for t in range(10):
        small.add(float(t), np.eye(4))
    assert len(small) == 3


def test_pose_buffer_add_message_and_sensor_extrinsic():
    buffer = PoseBuffer()
    for t, x in ((1.0, 0.0), (2.0, 1.0)):
        odom = Odometry()
        odom.header.stamp = seconds_to_stamp(t)
        odom.pose.pose = Pose(position=Point(x=x), orientation=quaternion([0, 0, 1], math.pi / 2))
        buffer.add_message(odom)
    extrinsic = [0.1, 0.0, 0.5, -math.pi / 2, 0.0, -math.pi / 2]  # a camera looking along base +x
    world_from_sensor = buffer.lookup(1.5, base_from_sensor=extrinsic)
    base_from_sensor = np.eye(4)
    base_from_sensor[:3, :3] = rot_z(-math.pi / 2) @ rot_x(-math.pi / 2)
    base_from_sensor[:3, 3] = [0.1, 0.0, 0.5]
    np.testing.assert_allclose(
        world_from_sensor, _pose([0.5, 0, 0], math.pi / 2) @ base_from_sensor, atol=1e-9
    )
    # The camera's optical axis (z) points along the world +y (base +x rotated by 90 deg yaw).
    np.testing.assert_allclose(world_from_sensor[:3, 2], [0, 1, 0], atol=1e-9)
    np.testing.assert_allclose(world_from_sensor[:3, 3], [0.5, 0.1, 0.5], atol=1e-9)
    np.testing.assert_allclose(
        buffer.lookup(1.5, base_from_sensor=base_from_sensor), world_from_sensor, atol=1e-9
    )


def test_extrinsic_matrix_conventions_and_validation():
    np.testing.assert_allclose(
        extrinsic_matrix([0, 0, 0, 0.4, 0, 0])[:3, :3], rot_x(0.4), atol=1e-12
    )
    m = extrinsic_matrix([1, 2, 3, 0.4, 0, 0.7])  # fixed axes: roll first, then yaw
    np.testing.assert_allclose(m[:3, :3], rot_z(0.7) @ rot_x(0.4), atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(extrinsic_matrix(m.ravel()), m)
    with pytest.raises(ValueError, match="shape"):
        extrinsic_matrix([1, 2, 3])
    with pytest.raises(ValueError, match="rotation"):
        extrinsic_matrix(np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        extrinsic_matrix([0, 0, math.nan, 0, 0, 0])


# ---------------------------------------------------------------- synchroniser


def image_at(t: float, name: str = "") -> Image:
    return Image(header=Header(stamp=seconds_to_stamp(t), frame_id=name))


def collector():
    got = []
    return got, lambda *msgs: got.append(
        tuple((m.header.frame_id, round(stamp_to_seconds(m.header.stamp), 6)) for m in msgs)
    )


def test_sync_pairs_equal_stamps_immediately_in_any_arrival_order():
    got, callback = collector()
    sync = ApproximateTimeSync(2, callback, slop=0.01)
    sync.add(0, image_at(1.0, "d"))
    assert got == []
    sync.add(1, image_at(1.0, "c"))
    assert got == [(("d", 1.0), ("c", 1.0))]
    sync.add(1, image_at(1.1, "c"))
    sync.add(0, image_at(1.1, "d"))
    assert got[-1] == (("d", 1.1), ("c", 1.1))
    assert sync.pending() == [0, 0] and sync.dropped == 0


def test_sync_slop_rejects_pairs_too_far_apart():
    got, callback = collector()
    sync = ApproximateTimeSync(2, callback, slop=0.05)
    sync.add(0, image_at(1.0, "d"))
    sync.add(1, image_at(1.1, "c"))
    assert got == [] and sync.dropped == 1  # depth 1.0 can never be matched
    sync.add(0, image_at(1.14, "d"))
    sync.add(0, image_at(1.2, "d"))
    assert got == []  # colour 1.13 could still come and fit better than 1.1
    sync.add(1, image_at(1.2, "c"))
    assert got == [(("d", 1.14), ("c", 1.1)), (("d", 1.2), ("c", 1.2))]


def test_sync_a_lost_frame_does_not_shift_the_pairing():
    got, callback = collector()
    sync = ApproximateTimeSync(2, callback, slop=0.05)  # slop larger than the frame period
    sync.add(0, image_at(0.000, "d"))
    sync.add(1, image_at(0.033, "c"))  # colour 0.000 was lost
    assert got == []  # depth 0.033 may still come and fit better
    sync.add(0, image_at(0.033, "d"))
    assert got == [(("d", 0.033), ("c", 0.033))]
    assert sync.dropped == 1


def test_sync_a_lagging_stream_is_paired_by_stamp_not_arrival():
    got, callback = collector()
    sync = ApproximateTimeSync(2, callback, slop=0.05)
    for t in (0.0, 0.033, 0.066):
        sync.add(0, image_at(t, "d"))
    sync.add(1, image_at(0.0, "c"))
    sync.add(1, image_at(0.033, "c"))
    assert got == [(("d", 0.0), ("c", 0.0)), (("d", 0.033), ("c", 0.033))]


def test_sync_constant_offset_waits_for_the_next_frame():
    got, callback = collector()
    sync = ApproximateTimeSync(2, callback, slop=0.02)
    sync.add(0, image_at(0.000, "d"))
    sync.add(1, image_at(0.005, "c"))
    assert got == []
    sync.add(0, image_at(0.033, "d"))
    assert got == [(("d", 0.0), ("c", 0.005))]


def test_sync_drops_stale_and_bounds_queues_and_handles_time_jumps():
    got, callback = collector()
    sync = ApproximateTimeSync(2, callback, slop=0.01, queue_size=3, jump_back=1.0)
    for t in range(10):
        sync.add(0, image_at(float(t), "d"))
    assert sync.pending() == [3, 0] and sync.dropped == 7
    sync.add(1, image_at(9.0, "c"))
    assert got[-1] == (("d", 9.0), ("c", 9.0))
    sync.add(0, image_at(8.5, "d"))  # older than what input 0 delivered
    assert sync.pending() == [0, 0]
    sync.add(0, image_at(1.0, "d"))  # far back: time restarted
    sync.add(1, image_at(1.0, "c"))
    assert got[-1] == (("d", 1.0), ("c", 1.0))


def test_sync_depth_colour_and_camera_infos():
    got, callback = collector()
    sync = ApproximateTimeSync(4, callback, slop=0.01)
    for index, name in enumerate(["d", "c", "di", "ci"]):
        sync.add(index, image_at(2.0, name))
        sync.add(index, image_at(2.5, name))
    assert got == [tuple((n, t) for n in ["d", "c", "di", "ci"]) for t in (2.0, 2.5)]


def test_sync_is_thread_safe_and_delivers_in_order():
    delivered = []
    sync = ApproximateTimeSync(
        2,
        lambda d, c: delivered.append((d.header.stamp.sec, c.header.stamp.sec)),
        slop=0.0,
        queue_size=1000,
    )
    frames = [[image_at(float(t)) for t in range(300)] for _ in range(2)]
    threads = [
        threading.Thread(target=lambda i=i: [sync.add(i, m) for m in frames[i]]) for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert delivered == [(t, t) for t in range(300)]


def test_sync_at_the_end_of_the_streams_pairs_what_waits_oldest_first():
    """What a bag replay sees: colour 0.3 s late, within the slop, and no depth image ever at the
    colour's stamps: once the streams end the frames pair in order."""
    got, callback = collector()
    sync = ApproximateTimeSync(2, callback, slop=0.5)
    for i in range(3):
        sync.add(0, image_at(1.0 + 0.1 * i, "d"))
        sync.add(1, image_at(1.3 + 0.1 * i, "c"))
    assert got == []  # a depth image stamped like the colour may still come
    sync.flush()
    assert [(d[1], c[1]) for d, c in got] == [
        (1.0, 1.3),
        (1.1, 1.4),
        (1.2, 1.5),
    ] and sync.dropped == 0


def test_sync_several_lost_frames_do_not_shift_the_pairing():
    got, callback = collector()
    sync = ApproximateTimeSync(2, callback, slop=0.15)  # more than the three lost frames span
    for t in (0.0, 0.033, 0.066, 0.1):
        sync.add(0, image_at(t, "d"))
    sync.add(1, image_at(0.1, "c"))  # colour 0.0, 0.033 and 0.066 were lost
    assert got == [(("d", 0.1), ("c", 0.1))] and sync.dropped == 3


def test_sync_flush_delivers_what_waits_and_drops_the_rest():
    got, callback = collector()
    drops = []
    sync = ApproximateTimeSync(2, callback, slop=0.02, on_drop=lambda i, r: drops.append((i, r)))
    sync.add(0, image_at(1.0, "d"))
    sync.add(1, image_at(1.01, "c"))
    sync.add(1, image_at(2.0, "c"))
    assert got == []  # a depth image stamped 1.01 may still come
    sync.add(0, image_at(3.0, "d"))  # now none can: the pair goes, colour 2.0 can never pair
    assert got == [(("d", 1.0), ("c", 1.01))] and drops == [(1, UNMATCHED)]
    sync.flush()
    assert drops == [(1, UNMATCHED), (0, UNMATCHED)] and sync.pending() == [0, 0]


def test_sync_validates_arguments():
    with pytest.raises(ValueError):
        ApproximateTimeSync(1, slop=0.1)
    with pytest.raises(ValueError):
        ApproximateTimeSync(2, slop=-0.1)
    with pytest.raises(IndexError):
        ApproximateTimeSync(2, slop=0.1).add(2, image_at(1.0))


def test_subscribe_synchronized_over_dds(ros_client):
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import SingleThreadedExecutor

    node = ros_client
    got = []
    group = ReentrantCallbackGroup()
    handle = subscribe_synchronized(
        node,
        [(Image, "sync_test/depth"), (Image, "sync_test/color")],
        lambda d, c: got.append((d.encoding, c.encoding)),
        slop=0.01,
        backend="builtin",
        callback_group=group,
    )
    assert handle.backend == "builtin"
    assert all(sub.callback_group is group for sub in handle.subscriptions)
    depth_pub = node.create_publisher(Image, "sync_test/depth", 10)
    color_pub = node.create_publisher(Image, "sync_test/color", 10)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        for i in range(200):
            if got:
                break
            stamp = seconds_to_stamp(100.0 + i)
            depth_pub.publish(Image(header=Header(stamp=stamp), encoding="16UC1"))
            color_pub.publish(Image(header=Header(stamp=stamp), encoding="rgb8"))
            executor.spin_once(timeout_sec=0.05)
        assert got and got[0] == ("16UC1", "rgb8")
    finally:
        executor.remove_node(node)
        handle.destroy(node)


def test_subscribe_synchronized_backend_choice(ros_client):
    try:
        import message_filters  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError):
            subscribe_synchronized(
                ros_client, [(Image, "a"), (Image, "b")], print, slop=0.1, backend="message_filters"
            )
        assert (
            subscribe_synchronized(
                ros_client, [(Image, "a"), (Image, "b")], print, slop=0.1
            ).backend
            == "builtin"
        )
    else:
        synchronized = subscribe_synchronized(
            ros_client, [(Image, "a"), (Image, "b")], print, slop=0.1
        )
        assert synchronized.backend == "message_filters"
    with pytest.raises(ValueError, match="backend"):
        subscribe_synchronized(
            ros_client, [(Image, "a"), (Image, "b")], print, slop=0.1, backend="magic"
        )


# ---------------------------------------------------------------- markers


class FakeInstance:
    """Duck-typed like the inference library's Instance (plus an id)."""

    def __init__(self, id, label, score, center, size):
        self.id, self.label, self.score = id, label, score
        self.bbox_center = np.asarray(center, float)
        self.bbox_size = np.asarray(size, float)
        self.centroid = self.bbox_center.copy()
        self.num_points = 100


def test_instance_markers_content():
    header = Header(frame_id="map", stamp=Time(sec=5))
    instances = [
        FakeInstance(0, "mug", 0.8712, [1, 2, 0.5], [0.1, 0.1, 0.2]),
        FakeInstance(7, "chair", 0.5, [3, 0, 0.4], [0.5, 0.6, 0.8]),
    ]
    markers = instance_markers(header, instances, lifetime=2.5).markers
    assert markers[0].action == Marker.DELETEALL and markers[0].ns == "sole"
    assert len(markers) == 1 + 2 * len(instances)
    boxes = [m for m in markers[1:] if m.type == Marker.CUBE]
    texts = [m for m in markers[1:] if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(texts) == 2
    assert [t.text for t in texts] == ["mug 0.87", "chair 0.50"]
    assert len({(m.ns, m.id) for m in markers[1:]}) == 4  # unique ids
    for box, text, inst in zip(boxes, texts, instances):
        assert box.header.frame_id == text.header.frame_id == "map"
        assert box.action == Marker.ADD
        np.testing.assert_allclose(
            [box.pose.position.x, box.pose.position.y, box.pose.position.z], inst.bbox_center
        )
        np.testing.assert_allclose([box.scale.x, box.scale.y, box.scale.z], inst.bbox_size)
        assert text.pose.position.z > inst.bbox_center[2] + inst.bbox_size[2] / 2  # above the box
        assert (box.lifetime.sec, box.lifetime.nanosec) == (2, 500_000_000)
        assert box.color.a < 1.0
    assert (boxes[0].color.r, boxes[0].color.g, boxes[0].color.b) == pytest.approx(PALETTE[0])
    assert (boxes[1].color.r, boxes[1].color.g, boxes[1].color.b) == pytest.approx(PALETTE[7])


def test_instance_markers_lines_style_empty_and_bad_input():
    inst = FakeInstance(3, "book", 0.9, [0, 0, 0], [2, 2, 2])
    markers = instance_markers(Header(frame_id="map"), [inst], style="lines").markers
    box = markers[1]
    assert box.type == Marker.LINE_LIST and len(box.points) == 24
    ends = np.array([[p.x, p.y, p.z] for p in box.points]).reshape(12, 2, 3)
    lengths = np.linalg.norm(ends[:, 0] - ends[:, 1], axis=1)
    np.testing.assert_allclose(lengths, 2.0)  # 12 axis-aligned edges of the 2 m cube
    assert np.abs(ends).max() == 1.0
    no_id = FakeInstance(0, "cup", 0.5, [0, 0, 0], [1, 1, 1])
    del no_id.id  # like the inference library's Instance: colour by position instead
    second = instance_markers(Header(), [inst, no_id]).markers[3]
    assert (second.color.r, second.color.g, second.color.b) == pytest.approx(PALETTE[1])
    only_delete = instance_markers(Header(), []).markers
    assert [m.action for m in only_delete] == [Marker.DELETEALL]
    with pytest.raises(ValueError, match="bbox_size"):
        instance_markers(Header(), [FakeInstance(1, "x", 0.5, [0, 0, 0], [np.nan, 1, 1])])
    # Distinct neighbouring ids get distinct colours; the same id always the same.
    assert len(set(PALETTE)) == len(PALETTE)
