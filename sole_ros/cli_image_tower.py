"""`sole-ros train-image-tower`: teach a checkpoint's randomly initialised small CLIP to see.

A run trained with a random CLIP (`--clip-pretrained none`, like the demo weights) carries that
CLIP's weights; its text tower defines the text space, its image tower is noise, so the node fuses
no image features with it. This trains the image tower on rendered synthetic frames so its dense
per-pixel features land on the text embeddings of the classes they show (sole_ros/training/
image_tower.py), and writes the checkpoint with it; the node then fuses image features into the
map, as SOLE fuses OpenSeg's. The SOLE network and the text tower are not changed.
"""
from __future__ import annotations

import dataclasses

from sole_ros.cli import CliError

TINY_DENSE = "sole-tiny-dense"  # sole_ros.clip.TINY_DENSE_MODEL_NAME (not imported: keeps --help light)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-image-tower", help="train a random small CLIP's image tower on synthetic frames",
        description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else None)
    parser.add_argument("checkpoint", help="a checkpoint of `sole-ros train` (or its export) with a random CLIP")
    parser.add_argument("--output", required=True, help="where to write the checkpoint with the trained tower")
    defaults = _defaults()
    parser.add_argument("--scenes", type=int, default=defaults.scenes, help="training scenes (default: %(default)s)")
    parser.add_argument("--frames-per-scene", type=int, default=defaults.frames_per_scene,
                        help="rendered frames per scene (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="(default: %(default)s)")
    parser.add_argument("--channel-shuffle", type=float, default=defaults.channel_shuffle,
                        help="share of frames with their RGB channels permuted (default: %(default)s)")
    parser.add_argument("--grey", type=float, default=defaults.grey,
                        help="share of frames turned grey (default: %(default)s)")
    parser.add_argument("--region-weight", type=float, default=defaults.region_weight,
                        help="weight of the loss on each class region's mean feature in a frame, as the map "
                             "pools an object's voxels; 0: the per-pixel loss only (default: %(default)s)")
    parser.add_argument("--short-side", type=int, default=defaults.short_side,
                        help="network input short side in pixels; the node uses the same (default: %(default)s)")
    parser.add_argument("--clip-model", default=TINY_DENSE,
                        help="the CLIP architecture to write: the checkpoint's own (its image tower trained "
                             "further) or one with the same text tower, whose image tower starts from random "
                             "weights (default: %(default)s)")
    parser.add_argument("--object-sizes", choices=("compact", "household"),
                        help="the scenes' object size ranges (default: those the checkpoint's run trained on)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="(default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    parser.set_defaults(handler=run)


def _defaults():
    from sole_ros.training.image_tower import ImageTowerConfig

    return ImageTowerConfig()


def run(args) -> int:
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
        raise CliError(f"{args.checkpoint} carries no CLIP weights: only runs trained with a random CLIP "
                       "(--clip-pretrained none) have an image tower to train; a pretrained CLIP's is used as is")
    device = resolve_device(args.device)
    try:
        clip = clip_with_text_tower_of(data, args.clip_model, device, args.seed)
    except ValueError as error:
        raise CliError(str(error)) from None
    embeddings = vocabulary_embeddings(clip)
    run_data = (hp.get("train_config") or {}).get("data") or {}
    object_sizes = args.object_sizes or run_data.get("synthetic_object_sizes", "compact")
    config = dataclasses.replace(_defaults(), scenes=args.scenes, frames_per_scene=args.frames_per_scene,
                                 epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 short_side=args.short_side, channel_shuffle=args.channel_shuffle,
                                 grey=args.grey, region_weight=args.region_weight, object_sizes=object_sizes,
                                 seed=args.seed)
    try:
        figures = train_image_tower(clip, embeddings, config)
    except ValueError as error:
        raise CliError(str(error)) from None
    path = attach_image_tower(data, clip, config, figures, args.output)
    print(f"wrote {path}")
    return 0
