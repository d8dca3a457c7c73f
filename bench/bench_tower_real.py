"""How a checkpoint's trained image tower names real camera frames: floor recall, real against synthetic.

    sole-ros bench tower_real [--checkpoint sole_ros/weights/demo.ckpt] [--png out.png]

The image tower of the demo weights (`sole-ros train-image-tower`) learnt from rendered synthetic
frames only, and no real frame here has labels. The floor needs none: its pixels are the inliers
of the dominant plane among the depth points of each frame's lowest third (RANSAC, 2 cm). Printed
per frame of ../shared/data/redwood_rgbd: that floor's share of the frame, the share of it the
tower names "floor" (nearest vocabulary phrase, per pixel, as train-image-tower's held-out figures
are taken) and the share of the other pixels it calls floor; then the same recall on held-out
synthetic frames rendered in this run (their ground truth), and the ratio of the two. --png
writes each real frame beside its per-pixel names.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_scene import REDWOOD, K, load_frames  # noqa: E402  (this folder's scene benchmark reads the frames)

SIZE = (320, 240)  # width, height: the size the tower was trained on
FX, CX, CY = K[0, 0] / 2, K[0, 2] / 2, K[1, 2] / 2  # Redwood's intrinsics at half resolution
# one colour per vocabulary phrase (mug ... table, floor, wall) for --png
PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [128, 128, 128],
        [255, 255, 255],
    ],
    np.uint8,
)


def redwood_frames():
    """(colour uint8 [240,320,3], depth m [240,320]) of each Redwood frame, at half resolution."""
    from PIL import Image

    depths, colors, _, _ = load_frames()
    for depth, color in zip(depths, colors):
        yield (
            np.array(Image.fromarray(color).resize(SIZE, Image.BILINEAR)),
            np.array(Image.fromarray(depth).resize(SIZE, Image.NEAREST)).astype(np.float64)
            / 1000.0,
        )


def geometric_floor(depth: np.ndarray, tries: int = 500, band: float = 0.02) -> np.ndarray:
    """bool [H,W]: pixels within 2 cm of the plane that most depth points of the frame's lowest
    third lie on (RANSAC over point triples, seeded: the same answer every run)."""
    height, width = depth.shape
    v, u = np.mgrid[0:height, 0:width]
    points = np.stack([(u - CX) / FX * depth, (v - CY) / FX * depth, depth], axis=-1)
    seen = depth > 0
    lower = points[seen & (v >= 2 * height // 3)]
    rng = np.random.default_rng(0)
    best, plane = -1, None
    for _ in range(tries):
        a, b, c = lower[rng.choice(len(lower), 3, replace=False)]
        normal = np.cross(b - a, c - a)
        if np.linalg.norm(normal) < 1e-9:
            continue
        normal /= np.linalg.norm(normal)
        inliers = int((np.abs((lower - a) @ normal) < band).sum())
        if inliers > best:
            best, plane = inliers, (normal, a)
    normal, origin = plane
    return seen & (np.abs((points - origin) @ normal) < band)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "sole_ros" / "weights" / "demo.ckpt"))
    parser.add_argument(
        "--synthetic-frames",
        type=int,
        default=16,
        help="held-out synthetic frames to compare with (scenes 300-, 2 each; default: %(default)s)",
    )
    parser.add_argument("--png", help="write the real frames beside their per-pixel names here")
    args = parser.parse_args(argv)
    if not REDWOOD.is_dir():
        print(f"no real frames: {REDWOOD} is absent (../shared/data beside the checkout)")
        return 1

    import torch

    from sole_ros.model.checkpoint import read_checkpoint
    from sole_ros.scene.dense_clip import DenseClipFeatures
    from sole_ros.training.image_tower import (
        clip_with_text_tower_of,
        render_labelled_images,
        sample_at_pixels,
        vocabulary,
        vocabulary_embeddings,
    )

    data = read_checkpoint(args.checkpoint)
    hp = data.get("hyper_parameters", {})
    tower = hp.get("clip", {}).get("image_tower") if isinstance(hp, dict) else None
    if "clip_state_dict" not in data or not tower:
        print(f"{args.checkpoint} has no image tower trained by sole-ros train-image-tower")
        return 1
    clip = clip_with_text_tower_of(
        data, hp["clip"]["model_name"], "cpu"
    )  # the checkpoint's own CLIP
    dense = DenseClipFeatures(clip, short_side=int(tower["short_side"]))
    embeddings = vocabulary_embeddings(clip).float()
    names = vocabulary()
    floor = names.index("floor")

    @torch.no_grad()
    def nearest_phrase(color: np.ndarray) -> np.ndarray:
        grid = dense.grid_features(dense.network_input(color[None]))[0]
        features = sample_at_pixels(
            grid, torch.arange(color.shape[0] * color.shape[1]), SIZE
        ).float()
        return (features @ embeddings.t()).argmax(dim=1).reshape(color.shape[:2]).numpy()

    real_hits = real_total = 0
    rows = []
    print(
        f"{args.checkpoint}: image tower trained on synthetic frames, per-pixel nearest of {len(names)} phrases"
    )
    for index, (color, depth) in enumerate(redwood_frames()):
        truth = geometric_floor(depth)
        named = nearest_phrase(color)
        real_hits += int((named[truth] == floor).sum())
        real_total += int(truth.sum())
        shares = np.bincount(named.reshape(-1), minlength=len(names)) / named.size
        top = ", ".join(f"{names[i]} {shares[i]:.2f}" for i in np.argsort(-shares)[:4])
        print(
            f"  Redwood {index:05d}: floor {truth.mean():.2f} of the frame; named floor "
            f"{np.mean(named[truth] == floor):.2f} of it, {np.mean(named[~truth] == floor):.2f} of the rest; "
            f"most named: {top}"
        )
        rows.append(np.concatenate([color, PALETTE[named]], axis=1))

    frames = render_labelled_images(range(300, 300 + (args.synthetic_frames + 1) // 2), 2, SIZE)
    synthetic_hits = synthetic_total = 0
    for color, target in zip(
        frames.colors[: args.synthetic_frames], frames.targets[: args.synthetic_frames]
    ):
        truth = target == floor
        synthetic_hits += int((nearest_phrase(color)[truth] == floor).sum())
        synthetic_total += int(truth.sum())
    real = real_hits / max(real_total, 1)
    synthetic = synthetic_hits / max(synthetic_total, 1)
    print(
        f"floor recall: real {real:.3f} ({real_total} px), held-out synthetic {synthetic:.3f} "
        f"({synthetic_total} px); real / synthetic {real / max(synthetic, 1e-9):.2f}"
    )
    if args.png:
        from PIL import Image

        Image.fromarray(np.concatenate(rows, axis=0)).save(args.png)
        print(f"wrote {args.png} (colours: " + ", ".join(names) + " in PALETTE order)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
