"""The training commands of ``sole-ros``: train, eval, train-image-tower and average-weights.

train / eval: settings come from a JSON file (``--config``, the fields of TrainConfig) and/or flags;
flags win, and ``--set dotted.name=value`` (value parsed as JSON when it parses) reaches any field.
Heavy modules load only when a command runs. Multi-GPU / multi-node: start it under torchrun, e.g.
``torchrun --nproc_per_node 4 -m sole_ros.cli train --config run.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from sole_ros.cli.errors import CliError

_FLAGS = {  # flag -> dotted TrainConfig field
    "output_dir": "output_dir",
    "data": "data.kind",
    "data_root": "data.root",
    "features_dir": "data.features_dir",
    "mca_dir": "data.mca_dir",
    "mea_dir": "data.mea_dir",
    "synthetic_count": "data.synthetic_count",
    "synthetic_eval_count": "data.synthetic_eval_count",
    "synthetic_kind": "data.synthetic_kind",
    "synthetic_source": "data.synthetic_source",
    "synthetic_first_seed": "data.synthetic_first_seed",
    "synthetic_object_sizes": "data.synthetic_object_sizes",
    "model_size": "model_size",
    "clip_model": "clip_model",
    "backbone_checkpoint": "backbone_checkpoint",
    "init_checkpoint": "init_checkpoint",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "grad_clip": "grad_clip",
    "max_steps": "max_steps",
    "device": "device",
    "seed": "seed",
    "checkpoint_every": "checkpoint_every_steps",
}


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        choices=("synthetic", "scannet", "scannet200", "mosd"),
        help="kind of scenes (mosd: real Kinect tabletop scans, class-agnostic)",
    )
    g.add_argument(
        "--data-root", help="processed ScanNet(200) folder (Mask3D/SOLE layout) or mOSD .pcd folder"
    )
    g.add_argument("--features-dir", help="per-point CLIP features (<scan>_0.pt, OpenScene layout)")
    g.add_argument("--mca-dir", help="released MCA targets (<scan>.pickle)")
    g.add_argument("--mea-dir", help="released MEA targets (<scan>.pickle)")
    g.add_argument("--synthetic-count", type=int, help="synthetic training scenes")
    g.add_argument("--synthetic-eval-count", type=int, help="synthetic evaluation scenes")
    g.add_argument("--synthetic-first-seed", type=int)
    g.add_argument("--synthetic-kind", choices=("tabletop", "room", "mixed"))
    g.add_argument("--synthetic-source", choices=("surface", "scan"))
    g.add_argument(
        "--synthetic-object-sizes",
        choices=("compact", "household"),
        help="small objects' size ranges: compact (default, demo.ckpt's) or household (real products')",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="JSON file with TrainConfig fields")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any setting by dotted name, e.g. --set model_overrides.num_queries=50",
    )
    p.add_argument("--device", help="auto, cpu or cuda[:N]")


def register(subparsers) -> None:
    """The four training commands, in the order --help lists them."""
    register_train(subparsers)
    register_eval(subparsers)
    register_image_tower(subparsers)
    register_average(subparsers)


def register_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train SOLE (synthetic scenes or processed ScanNet)",
        description="Train SOLE; resumes from <output-dir>/last.pt when it exists.",
    )
    _add_common(p)
    p.add_argument("--output-dir", help="checkpoints, metrics.jsonl and curves.png go here")
    p.add_argument("--model-size", choices=("paper", "tiny"))
    p.add_argument("--clip-model", help="open_clip architecture (ViT-L-14, or sole-tiny)")
    p.add_argument(
        "--clip-pretrained",
        help="open_clip tag or weights file; 'none' = random, saved with the run",
    )
    p.add_argument("--backbone-checkpoint", help="Mask3D/SOLE backbone weights")
    p.add_argument("--init-checkpoint", help="start from these SOLE weights")
    p.add_argument(
        "--train-backbone",
        action="store_true",
        help="train the backbone even with pretrained weights (default: frozen only when "
        "--backbone-checkpoint or --init-checkpoint is given)",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="scenes per step per process")
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--max-steps", type=int, help="stop after this many steps")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on the GPU")
    p.add_argument("--no-resume", action="store_true", help="start over even if last.pt exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_flags(p)
    p.set_defaults(handler=_run_train)


def register_eval(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="ScanNet-style AP of a trained checkpoint",
        description="Evaluate a checkpoint on its run's evaluation scenes (or the data given).",
    )
    p.add_argument("checkpoint", help="a checkpoint written by 'sole-ros train'")
    _add_common(p)
    p.add_argument("--output-dir", help="ap_table.txt, ap_per_class.csv, ap.json, ap_per_class.png")
    p.add_argument("--max-scenes", type=int)
    p.add_argument("--top-k", type=int, help="instances kept per scene (default: the model's)")
    p.add_argument(
        "--min-region-size", type=int, help="points; default 100 (ScanNet), 30 (synthetic)"
    )
    p.add_argument(
        "--views",
        type=int,
        default=1,
        metavar="N",
        help="test-time augmentation: merge the answers of N turned, scaled views (node parameter "
        "model.test_time_views; default: %(default)s, SOLE's single pass)",
    )
    p.add_argument(
        "--scene-scale",
        type=float,
        default=1.0,
        metavar="S",
        help="scale the scenes by S before the model (model.scene_scale; default: %(default)s)",
    )
    p.add_argument(
        "--view-scale-jitter",
        type=float,
        default=0.1,
        metavar="J",
        help="the extra views' scales vary by up to J (model.view_scale_jitter; default: %(default)s)",
    )
    p.add_argument(
        "--queries",
        type=int,
        default=0,
        metavar="Q",
        help="query seeds per pass (model.num_queries; default: 0, the count trained with)",
    )
    p.add_argument(
        "--matching",
        choices=("scannet", "exclusive"),
        default="scannet",
        help="how AP consumes a prediction above the threshold on several instances (only AP25 "
        "can differ): scannet, as the benchmark's evaluation script and published numbers, or "
        "exclusive, each prediction counted once (default: %(default)s)",
    )
    p.add_argument(
        "--no-point-features",
        dest="point_features",
        action="store_false",
        help="synthetic scenes without their stand-in point CLIP features, as a node without a 2D "
        "CLIP sees its map",
    )
    _add_data_flags(p)
    p.set_defaults(handler=_run_eval)


def _set_dotted(values: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = values
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train_config_from_args(args, base: dict | None = None):
    """A TrainConfig from --config, then the flags, then --set."""
    from sole_ros.training.config import TrainConfig

    values: dict = dict(base or {})
    if args.config:
        try:
            with open(args.config) as f:
                values = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise CliError(f"cannot read --config {args.config}: {err}") from None
    for flag, dotted in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            _set_dotted(values, dotted, value)
    if getattr(args, "clip_pretrained", None) is not None:
        values["clip_pretrained"] = (
            None if args.clip_pretrained.lower() == "none" else args.clip_pretrained
        )
    if getattr(args, "train_backbone", False):
        values["freeze_backbone"] = False
    if getattr(args, "no_amp", False):
        values["mixed_precision"] = False
    if getattr(args, "no_resume", False):
        values["resume"] = False
    if getattr(args, "no_progress", False):
        values["progress"] = False
    for item in args.set:
        if "=" not in item:
            raise CliError(f"--set needs NAME=VALUE, got {item!r}")
        name, text = item.split("=", 1)
        _set_dotted(values, name.strip(), _parse_value(text))
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise CliError(str(err)) from None


def _run_train(args) -> int:
    from sole_ros.training.trainer import train

    config = train_config_from_args(args)
    try:
        summary = train(config)
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from None
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _run_eval(args) -> int:
    from sole_ros.evaluation import format_table
    from sole_ros.training.checkpointing import load_checkpoint
    from sole_ros.training.evaluate import evaluate_checkpoint

    try:
        stored = (
            load_checkpoint(args.checkpoint).get("hyper_parameters", {}).get("train_config", {})
        )
    except (FileNotFoundError, RuntimeError) as err:
        raise CliError(str(err)) from None
    config = train_config_from_args(args, base=stored)
    try:
        result = evaluate_checkpoint(
            args.checkpoint,
            config,
            output_dir=args.output_dir,
            device=args.device or "auto",
            max_scenes=args.max_scenes,
            top_k=args.top_k,
            min_region_size=args.min_region_size,
            views=args.views,
            scene_scale=args.scene_scale,
            view_scale_jitter=args.view_scale_jitter,
            point_features=args.point_features,
            num_queries=args.queries,
            matching=args.matching,
        )
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from None
    print(format_table(result))
    return 0


# --- train-image-tower ----------------------------------------------------------------------------

IMAGE_TOWER_DESCRIPTION = (
    "A run trained with a random CLIP (`--clip-pretrained none`, like the demo weights) carries that CLIP's "
    "weights; its text tower defines the text space, its image tower is noise, so the node fuses no image "
    "features with it. This trains the image tower on rendered synthetic frames so its dense per-pixel features "
    "land on the text embeddings of the classes they show (sole_ros/training/image_tower.py), and writes the "
    "checkpoint with it; the node then fuses image features into the map, as SOLE fuses OpenSeg's. The SOLE "
    "network and the text tower are not changed."
)

TINY_DENSE = (
    "sole-tiny-dense"  # sole_ros.clip.TINY_DENSE_MODEL_NAME (not imported: keeps --help light)
)


def register_image_tower(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-image-tower",
        help="train a random small CLIP's image tower on synthetic frames",
        description=IMAGE_TOWER_DESCRIPTION,
    )
    parser.add_argument(
        "checkpoint", help="a checkpoint of `sole-ros train` (or its export) with a random CLIP"
    )
    parser.add_argument(
        "--output", required=True, help="where to write the checkpoint with the trained tower"
    )
    defaults = _tower_defaults()
    parser.add_argument(
        "--scenes", type=int, default=defaults.scenes, help="training scenes (default: %(default)s)"
    )
    parser.add_argument(
        "--frames-per-scene",
        type=int,
        default=defaults.frames_per_scene,
        help="rendered frames per scene (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=int, default=defaults.epochs, help="(default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)"
    )
    parser.add_argument("--lr", type=float, default=defaults.lr, help="(default: %(default)s)")
    parser.add_argument(
        "--channel-shuffle",
        type=float,
        default=defaults.channel_shuffle,
        help="share of frames with their RGB channels permuted (default: %(default)s)",
    )
    parser.add_argument(
        "--grey",
        type=float,
        default=defaults.grey,
        help="share of frames turned grey (default: %(default)s)",
    )
    parser.add_argument(
        "--region-weight",
        type=float,
        default=defaults.region_weight,
        help="weight of the loss on each class region's mean feature in a frame, as the map "
        "pools an object's voxels; 0: the per-pixel loss only (default: %(default)s)",
    )
    parser.add_argument(
        "--short-side",
        type=int,
        default=defaults.short_side,
        help="network input short side in pixels; the node uses the same (default: %(default)s)",
    )
    parser.add_argument(
        "--clip-model",
        default=TINY_DENSE,
        help="the CLIP architecture to write: the checkpoint's own (its image tower trained "
        "further) or one with the same text tower, whose image tower starts from random "
        "weights (default: %(default)s)",
    )
    parser.add_argument(
        "--object-sizes",
        choices=("compact", "household"),
        help="the scenes' object size ranges (default: those the checkpoint's run trained on)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="(default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    parser.set_defaults(handler=_run_image_tower)


def _tower_defaults():
    from sole_ros.training.image_tower import ImageTowerConfig

    return ImageTowerConfig()


def _run_image_tower(args) -> int:
    from sole_ros.device import resolve_device
    from sole_ros.model.checkpoint import read_checkpoint
    from sole_ros.training.image_tower import (
        attach_image_tower,
        clip_with_text_tower_of,
        train_image_tower,
        vocabulary_embeddings,
    )

    for name in ("scenes", "frames_per_scene", "epochs", "batch_size", "short_side"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("channel_shuffle", "grey"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise CliError(f"--{name.replace('_', '-')} must be between 0 and 1")
    if args.region_weight < 0:
        raise CliError("--region-weight must not be negative")
    if args.scenes * args.frames_per_scene < args.batch_size:
        raise CliError("fewer frames than one batch: raise --scenes or --frames-per-scene")
    try:
        data = read_checkpoint(args.checkpoint)
    except (OSError, ValueError, RuntimeError) as error:
        raise CliError(f"cannot read {args.checkpoint}: {error}") from None
    hp = data.get("hyper_parameters") if isinstance(data, dict) else None
    if "clip_state_dict" not in data or not isinstance(hp, dict) or "clip" not in hp:
        raise CliError(
            f"{args.checkpoint} carries no CLIP weights: only runs trained with a random CLIP "
            "(--clip-pretrained none) have an image tower to train; a pretrained CLIP's is used as is"
        )
    device = resolve_device(args.device)
    try:
        clip = clip_with_text_tower_of(data, args.clip_model, device, args.seed)
    except ValueError as error:
        raise CliError(str(error)) from None
    embeddings = vocabulary_embeddings(clip)
    run_data = (hp.get("train_config") or {}).get("data") or {}
    object_sizes = args.object_sizes or run_data.get("synthetic_object_sizes", "compact")
    config = dataclasses.replace(
        _tower_defaults(),
        scenes=args.scenes,
        frames_per_scene=args.frames_per_scene,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        short_side=args.short_side,
        channel_shuffle=args.channel_shuffle,
        grey=args.grey,
        region_weight=args.region_weight,
        object_sizes=object_sizes,
        seed=args.seed,
    )
    try:
        figures = train_image_tower(clip, embeddings, config)
    except ValueError as error:
        raise CliError(str(error)) from None
    path = attach_image_tower(data, clip, config, figures, args.output)
    print(f"wrote {path}")
    return 0


# --- average-weights ------------------------------------------------------------------------------

AVERAGE_DESCRIPTION = (
    "The first file gives everything but the network's tensors (settings, post-processing, the CLIP and its "
    "image tower); each floating-point tensor becomes (1 - w) * first + w * second. Meant for a network and a "
    "continuation of its training (sole_ros/training/weight_average.py); the demo weights are made this way "
    "(scripts/train_demo_weights.sh)."
)


def register_average(subparsers) -> None:
    parser = subparsers.add_parser(
        "average-weights",
        help="average the networks of two checkpoints of one architecture",
        description=AVERAGE_DESCRIPTION,
    )
    parser.add_argument(
        "first", help="checkpoint whose settings, CLIP and counters the result keeps"
    )
    parser.add_argument("second", help="checkpoint of the same network (e.g. trained further)")
    parser.add_argument(
        "--weight",
        type=float,
        default=0.5,
        help="share of the second network, in [0, 1] (default: %(default)s)",
    )
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")
    parser.set_defaults(handler=_run_average)


def _run_average(args) -> int:
    from sole_ros.model.checkpoint import CheckpointError
    from sole_ros.training.weight_average import average_checkpoints

    try:
        path = average_checkpoints(args.first, args.second, args.output, args.weight)
    except (ValueError, FileNotFoundError, CheckpointError) as error:
        raise CliError(str(error)) from None
    print(f"wrote {path}: {1 - args.weight:g} x {args.first} + {args.weight:g} x {args.second}")
    return 0
