"""A synthetic building explored room by room: update cost, object id stability, query latency.

The cost of each segmentation update as the map grows, whole map against regions, object id
stability, and query latency. Prints figures and writes a plot; not a test.

    python bench/bench_building.py [--rooms 12] [--frames 8] [--whole-rooms 3] [--plot PATH]

Each mode runs in a process of its own, so the peak memory printed and plotted is its own.

The building is ``--rooms`` rooms of the project's scene generator (walled, a table, chairs,
small objects), side by side 6 m apart along x, each seen by its own camera sweep (320 x 240,
Kinect-like noise) with the poses moved into the building's frame. The map is 2 cm voxels; the
model is the demo weights (random tiny weights when absent), on the CPU, with the object memory.

After each room is mapped, the pipeline segments (``segment``) and the object memory takes the
parts: the update's time and the process's peak resident memory during it are printed, for
segmentation.mode regions (4 m crops, 0.5 m overlap) and, for the first ``--whole-rooms`` rooms,
whole. Then: the share of remembered objects that keep their id from one update to the next, the
old ids found again after revisiting the first room with a new sweep, and the latency of one query
on the whole building against the same query after one room (queries from the memory, at most
query.decoded_crops crops decoded, and with every crop decoded).

Once ``--whole-rooms`` rooms are mapped, both modes are compared on the same map (the frames and
their order are the same in both processes, so the maps are): class-agnostic AP and AP50 against
the rendered instances (every object seen in at least 100 voxels, walls and floor included) of
the memory's objects (regions) and of the whole-map pass's parts (whole), and how the answers to
eight phrases agree: of the whole-map pass's first five answers (100 voxels or more), the share
that one of the memory's first ten answers covers with IoU above 0.5 (and the same for the answers
of regions with the decoder on every crop).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sole_ros.evaluation.instance_ap import SceneGroundTruth, ScenePrediction, evaluate_instances  # noqa: E402
from sole_ros.inference.regions import RegionSegmenter  # noqa: E402
from sole_ros.memory import keys_from_centres  # noqa: E402
from sole_ros.pipeline import PipelineSettings, build_pipeline, find_default_checkpoint  # noqa: E402
from sole_ros.scene import voxel_keys  # noqa: E402
from sole_ros.synthetic import backproject, generate_scene, render_sequence  # noqa: E402

ROOM_PITCH = 6.0  # metres between room centres along x
PHRASES = ("chair", "table", "mug", "book", "bottle", "bowl", "lamp", "plant")


def shifted(pose: np.ndarray, dx: float) -> np.ndarray:
    moved = pose.copy()
    moved[0, 3] += dx
    return moved


def room_frames(room: int, frames: int, sweep_seed: int):
    """One room's frames with poses in the building's frame: room k's scene centred at x = 6 k."""
    scene = generate_scene(seed=100 + room, kind="room")  # a room around the origin
    dx = room * ROOM_PITCH
    return [
        (f, shifted(f.pose, dx))
        for f in render_sequence(scene, frames, width=320, height=240, seed=sweep_seed)
    ]


def true_objects(
    frames, voxel_size: float, min_voxels: int = 30
) -> dict[tuple[int, int], np.ndarray]:
    """The ground-truth objects the frames saw: (room, instance id) -> their voxel keys."""
    keys: dict[tuple[int, int], list[np.ndarray]] = {}
    for room, (frame, pose) in frames:
        points, pixels = backproject(frame.depth, frame.K, pose)
        instance = frame.instance.reshape(-1)[pixels]
        for object_id in np.unique(instance[instance > 0]):
            keys.setdefault((room, int(object_id)), []).append(
                keys_from_centres(points[instance == object_id], voxel_size)
            )
    merged = {name: np.unique(np.concatenate(parts)) for name, parts in keys.items()}
    return {name: k for name, k in merged.items() if k.shape[0] >= min_voxels}


def ids_of_true_objects(memory, truth: dict) -> dict:
    """For each true object, the id the memory gives its voxels (``identify``: the remembered
    object of highest IoU, if it reaches the memory's overlap threshold): the id a query's answer
    on that object would carry."""
    return {name: memory.identify(keys) for name, keys in truth.items()}


def same_ids(before: dict, after: dict) -> tuple[int, int]:
    """(true objects named in both with the same id, true objects named in both)."""
    both = [name for name in before if before[name] is not None and after.get(name) is not None]
    return sum(before[name] == after[name] for name in both), len(both)


class PeakMemory:
    """The process's peak resident memory while inside the block (sampled every 20 ms)."""

    def __enter__(self):
        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_pipeline(mode: str):
    weights = find_default_checkpoint()
    model = (
        dict(checkpoint=weights)
        if weights
        else dict(
            model_config="tiny",
            allow_random_weights=True,
            clip_model="sole-tiny",
            clip_pretrained=None,
        )
    )
    settings = PipelineSettings(
        **model,
        device="cpu",
        voxel_size=0.02,
        max_voxels=4_000_000,
        object_memory=True,
        max_objects=5000,
        segmentation_mode=mode,
        region_size=4.0,
        region_overlap=0.5,
        keyframe_translation=0.0,
        keyframe_rotation_deg=0.0,
    )
    return build_pipeline(settings, log=lambda *_: None)


def update(pipeline, label: str):
    with PeakMemory() as memory:
        start = time.perf_counter()
        segmentation = pipeline.segment()
        seconds = time.perf_counter() - start
    crops = pipeline.segmenter._scene if isinstance(pipeline.segmenter, RegionSegmenter) else None
    encoded = f", crops {len(crops.crops)} ({crops.encoded} encoded)" if crops is not None else ""
    print(
        f"{label}: {len(segmentation.snapshot):,} voxels, update {seconds:.2f} s, peak RSS "
        f"{memory.peak / 2**20:,.0f} MiB, {len(segmentation.objects)} parts{encoded}",
        flush=True,
    )
    return seconds, memory.peak, {object_id for object_id, _ in segmentation.objects}


def query_seconds(pipeline, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pipeline.query(["chair"], max_results=10)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def ground_truth(snapshot, truth: dict) -> SceneGroundTruth:
    """Per map voxel the true object it belongs to (the first one listed, where noise makes two
    claim a voxel), one class for all."""
    keys = voxel_keys.pack(
        np.floor(np.asarray(snapshot.coords) / snapshot.voxel_size).astype(np.int64)
    )
    instances = np.zeros(keys.shape[0], dtype=np.int64)
    for number, object_keys in enumerate(truth.values(), start=1):
        instances[np.isin(keys, object_keys) & (instances == 0)] = number
    return SceneGroundTruth((instances > 0).astype(np.int64), instances)


def agnostic_ap(snapshot, truth: dict, parts) -> dict:
    """Class-agnostic AP and AP50 of ``parts`` (Instances over the snapshot's voxels)."""
    masks = np.zeros((snapshot.coords.shape[0], len(parts)), dtype=bool)
    for column, part in enumerate(parts):
        masks[part.point_indices, column] = True
    prediction = ScenePrediction(masks, np.ones(len(parts)), [part.score for part in parts])
    result = evaluate_instances(
        [(ground_truth(snapshot, truth), prediction)],
        class_ids=[1],
        agnostic_predictions=[prediction],
    ).summary()
    return {"ap": result["agnostic_ap"], "ap50": result["agnostic_ap50"], "parts": len(parts)}


def answers(pipeline) -> dict:
    """Per phrase, the point indices of the first ten answers."""
    return {
        phrase: [
            inst.point_indices.tolist()
            for inst in pipeline.query([phrase], max_results=10).instances
        ]
        for phrase in PHRASES
    }


def agreement(
    reference: dict, other: dict, first: int = 5, min_voxels: int = 100
) -> tuple[int, int]:
    """(reference answers covered, reference answers): of each phrase's first ``first`` reference
    answers of ``min_voxels`` or more, those one of the other's answers covers with IoU > 0.5."""
    covered = total = 0
    for phrase, mine in reference.items():
        theirs = [set(a) for a in other.get(phrase, [])]
        for answer in [set(a) for a in mine if len(a) >= min_voxels][:first]:
            total += 1
            covered += any(len(answer & t) > 0.5 * len(answer | t) for t in theirs)
    return covered, total


def run_mode(mode: str, rooms: int, frames: int, compare_at: int) -> dict:
    """Map ``rooms`` rooms one after the other in ``mode``, segmenting after each; the figures,
    with the comparison's (AP, answers) after ``compare_at`` rooms."""
    rendered = []
    start = time.perf_counter()
    for room in range(rooms):
        rendered.append(room_frames(room, frames, sweep_seed=1))
    print(
        f"{mode}: rendered {rooms * frames} frames in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    truths = [
        true_objects([(room, item) for item in frames_of_room], 0.02)
        for room, frames_of_room in enumerate(rendered)
    ]
    pipeline = make_pipeline(mode)
    voxels, seconds, peaks = [], [], []
    named_before = None
    kept, total, named_share = 0, 0, []
    truth: dict = {}
    first_query = None
    compared: dict = {}
    for room in range(rooms):
        for i, (frame, pose) in enumerate(rendered[room]):
            pipeline.ingest_rgbd(
                frame.depth, frame.K, pose, color=frame.color, stamp=room * 100.0 + i
            )
        took, peak, _ = update(pipeline, f"{mode} room {room + 1}")
        truth.update(truths[room])
        named = ids_of_true_objects(pipeline.memory, truth)
        named_share.append(np.mean([v is not None for v in named.values()]))
        if named_before is not None:
            same, both = same_ids(named_before, named)
            kept, total = kept + same, total + both
        named_before = named
        voxels.append(pipeline.map.num_voxels)
        seconds.append(took)
        peaks.append(peak)
        if room == 0:
            first_query = query_seconds(pipeline)
        if room + 1 == compare_at:
            snapshot = pipeline.segmentation.snapshot
            parts = [inst for _, inst in pipeline.segmentation.objects]
            compared = {"ap": agnostic_ap(snapshot, truth, parts), "answers": answers(pipeline)}
            if mode == "regions":  # the same map's answers with the decoder on every crop
                decoded, pipeline.decoded_crops = pipeline.decoded_crops, 0
                compared["every_crop"] = answers(pipeline)
                pipeline.decoded_crops = decoded
            print(
                f"{mode} after {compare_at} rooms: class-agnostic AP {compared['ap']['ap']:.3f}, AP50 "
                f"{compared['ap']['ap50']:.3f} ({len(parts)} parts)",
                flush=True,
            )
    last_query = query_seconds(pipeline)
    print(
        f"{mode}: last update / first update {seconds[-1] / seconds[0]:.2f}x; query 'chair' "
        f"{first_query * 1000:.0f} ms after one room, {last_query * 1000:.0f} ms after {rooms} "
        f"({last_query / first_query:.2f}x)",
        flush=True,
    )
    if mode == "regions":
        decoded, pipeline.decoded_crops = pipeline.decoded_crops, 0
        every_crop = query_seconds(pipeline, repeats=3)
        pipeline.decoded_crops = decoded
        print(
            f"{mode}: with the decoder on every crop (query.decoded_crops 0) the same query takes "
            f"{every_crop * 1000:.0f} ms after {rooms} rooms ({every_crop / first_query:.2f}x)",
            flush=True,
        )
    print(
        f"{mode}: true objects (>= 30 voxels seen) that the memory names: {100 * np.mean(named_share):.0f}% "
        f"on average over the updates",
        flush=True,
    )
    if total:
        print(
            f"{mode}: of the true objects named in two successive updates, {kept} of {total} "
            f"({100 * kept / total:.1f}%) kept their id",
            flush=True,
        )
    if mode == "regions":
        before = {name: v for name, v in named_before.items() if name[0] == 0}
        again = room_frames(0, frames, sweep_seed=7)  # another sweep of the first room
        for i, (frame, pose) in enumerate(again):
            pipeline.ingest_rgbd(frame.depth, frame.K, pose, color=frame.color, stamp=10_000.0 + i)
        update(pipeline, "regions, first room revisited")
        after = ids_of_true_objects(pipeline.memory, {name: truth[name] for name in before})
        same, both = same_ids(before, after)
        print(
            f"revisit: of the first room's true objects named before and after another sweep, {same} of "
            f"{both} have their old id ({100 * same / max(1, both):.0f}%)",
            flush=True,
        )
    return {"voxels": voxels, "seconds": seconds, "peaks": peaks, "compared": compared}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=12)
    parser.add_argument("--frames", type=int, default=8, help="frames per room")
    parser.add_argument(
        "--whole-rooms", type=int, default=3, help="rooms to run the whole-map mode for"
    )
    parser.add_argument(
        "--mode",
        choices=("both", "regions", "whole"),
        default="both",
        help="both: each mode in a process of its own, so their peak memory is their own",
    )
    parser.add_argument("--json", help="(with one --mode) write its figures here")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "figures" / "building_updates.png"))
    args = parser.parse_args()

    print(
        f"weights: {find_default_checkpoint() or 'random tiny'}; {args.rooms} rooms x {args.frames} frames",
        flush=True,
    )
    if args.mode != "both":
        rooms = args.rooms if args.mode == "regions" else min(args.whole_rooms, args.rooms)
        figures = run_mode(
            args.mode, rooms, args.frames, compare_at=min(args.whole_rooms, args.rooms)
        )
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(figures))
        return 0
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("regions", "whole"):
            out = pathlib.Path(folder) / f"{mode}.json"
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--mode",
                    mode,
                    "--rooms",
                    str(args.rooms),
                    "--frames",
                    str(args.frames),
                    "--whole-rooms",
                    str(args.whole_rooms),
                    "--json",
                    str(out),
                ],
                check=True,
            )
            figures[mode] = json.loads(out.read_text())
    regions, whole = figures["regions"]["compared"], figures["whole"]["compared"]
    if regions and whole:
        at = min(args.whole_rooms, args.rooms)
        mine, theirs = regions["ap"], whole["ap"]
        print(
            f"after {at} rooms, class-agnostic AP / AP50: memory (regions) {mine['ap']:.3f} / {mine['ap50']:.3f}, "
            f"whole-map pass {theirs['ap']:.3f} / {theirs['ap50']:.3f}; difference "
            f"{mine['ap'] - theirs['ap']:+.3f} / {mine['ap50'] - theirs['ap50']:+.3f}"
        )
        for name, key in (
            ("the memory's (at most query.decoded_crops crops decoded)", "answers"),
            ("those of every crop decoded", "every_crop"),
        ):
            covered, total = agreement(whole["answers"], regions[key])
            print(
                f"answers to {len(PHRASES)} phrases after {at} rooms: {covered} of the whole-map pass's {total} "
                f"first answers are among {name} ({100 * covered / max(1, total):.0f}%)"
            )

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib absent: no plot")
        return 0
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, measured in figures.items():
        voxels, seconds, peaks = measured["voxels"], measured["seconds"], measured["peaks"]
        millions = np.array(voxels) / 1e6
        left.plot(millions, seconds, "o-", label=mode)
        right.plot(millions, np.array(peaks) / 2**30, "o-", label=mode)
    left.set(
        xlabel="map size (million voxels)", ylabel="segmentation update (s)", title="update time"
    )
    right.set(xlabel="map size (million voxels)", ylabel="peak RSS (GiB)", title="peak memory")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
