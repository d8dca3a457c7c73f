"""Command-line options that choose the model (shared by `segment` and `bag`), and loading it.

The options map one to one onto the node's parameters (model.checkpoint, model.config, ...), so a
command line that works here works as a node configuration too.
"""
from __future__ import annotations

import argparse
import sys

from sole_ros.cli import CliError


def log(message: str) -> None:
    """Progress and warnings go to stderr, so that --json output stays one clean document."""
    print(message, file=sys.stderr, flush=True)


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return " ".join(line.strip() for line in lines) or type(error).__name__


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "model", "which SOLE weights and CLIP to use (node parameters model.*); `sole-ros weights` fetches them")
    group.add_argument("--checkpoint", default="", metavar="CKPT",
                       help="SOLE checkpoint: a published .ckpt (e.g. scannet200.ckpt) or one trained here "
                            "(default: the demo weights shipped in sole_ros/weights)")
    group.add_argument("--config", choices=("paper", "tiny"), default="paper",
                       help="architecture when no checkpoint carries one (default: %(default)s)")
    group.add_argument("--random-weights", action="store_true",
                       help="with no --checkpoint, random weights instead of the demo weights (tests only: answers are "
                            "meaningless)")
    group.add_argument("--clip-model", default="ViT-L-14", metavar="NAME",
                       help="open_clip architecture (default: %(default)s; sole-tiny: a small test model)")
    group.add_argument("--clip-pretrained", default="openai", metavar="TAG_OR_FILE",
                       help="open_clip weights tag or a local weights file; '' for random weights (default: %(default)s)")
    group.add_argument("--prompt", default="a {} in a scene.", help="text template for each phrase (default: %(default)r)")
    group.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default: %(default)s)")
    group.add_argument("--autocast", action="store_true", help="float16 autocast on the GPU")
    group.add_argument("--seed", type=int, default=0, help="seed of the random weights, so runs repeat (default: %(default)s)")


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--query", "-q", nargs="+", required=True, metavar="TEXT",
                        help="one or more phrases; each is its own class (e.g. --query mug 'red box')")
    parser.add_argument("--top-k", type=int, default=20, metavar="N", help="at most N instances (default: %(default)s)")
    parser.add_argument("--min-score", type=float, default=0.0, metavar="S",
                        help="drop instances scoring below S, 0..1 (default: %(default)s)")
    parser.add_argument("--out-dir", default=".", metavar="DIR",
                        help="where the coloured PLY and the PNG go (default: the current directory)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")


def check_queries(args) -> list[str]:
    """The phrases, checked as the node checks them (non-empty, not too many, not too long)."""
    from sole_ros.pipeline import QueryLimits, QueryRejected

    try:
        phrases = QueryLimits().check(args.query)
    except QueryRejected as error:
        raise CliError(str(error)) from None
    if args.top_k <= 0:
        raise CliError(f"--top-k must be positive, not {args.top_k}")
    if not 0.0 <= args.min_score <= 1.0:
        raise CliError(f"--min-score must be within 0..1, not {args.min_score}")
    return phrases


def settings_from_args(args, **extra):
    from sole_ros.pipeline import PipelineSettings

    return PipelineSettings(
        device=args.device, checkpoint=args.checkpoint, model_config=args.config,
        allow_random_weights=args.random_weights, clip_model=args.clip_model,
        clip_pretrained=args.clip_pretrained or None, prompt=args.prompt, autocast=args.autocast,
        top_k=args.top_k, **extra)


def model_errors():
    """The exceptions that mean "this model cannot be loaded as asked" (not a bug)."""
    from sole_ros.clip import ClipWeightsUnavailable
    from sole_ros.model.checkpoint import CheckpointError

    return (ValueError, OSError, ClipWeightsUnavailable, CheckpointError)


def describe_model(settings) -> dict:
    return {
        "checkpoint": settings.checkpoint or None,
        "config": None if settings.checkpoint else settings.model_config,
        "random_weights": not settings.checkpoint and settings.allow_random_weights,
        "clip_model": settings.clip_model,
        "clip_pretrained": settings.clip_pretrained,
    }


def _seed(seed: int) -> None:
    """Random weights (tests, demos) are drawn from torch's generator: fix it so runs repeat."""
    import torch

    torch.manual_seed(seed)


def load_segmenter(settings, seed: int = 0):
    """(segmenter, clip, device) or CliError with the reason in one line."""
    from sole_ros.device import resolve_device
    from sole_ros.pipeline import load_segmenter as load

    _seed(seed)
    try:
        device = resolve_device(settings.device)
        segmenter, clip = load(settings, device, log)
    except model_errors() as error:
        raise CliError(f"cannot load the model: {one_line(error)}") from None
    return segmenter, clip, device


def build_pipeline(settings, seed: int = 0):
    from sole_ros.pipeline import build_pipeline as build

    _seed(seed)
    try:
        return build(settings, log)
    except model_errors() as error:
        raise CliError(f"cannot load the model: {one_line(error)}") from None
