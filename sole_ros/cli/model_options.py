"""The command-line options `segment` and `bag` share (model, query, scene), and loading the model.

The options are made from the node's parameter table (sole_ros/settings_table.py): every model.* and
query.* parameter (scene.* for `bag`) is an option of the same name without its group
(model.test_time_views -> --test-time-views), with the same default, range and choices, and the
values become PipelineSettings through the node's own PipelineSettings.from_parameters. A command
line that works here works as a node configuration too.
"""

from __future__ import annotations

import argparse

from sole_ros.cli.errors import CliError, log, one_line

# Node parameters that are no option of `segment` / `bag`: the ones only a running node has
# (fixed_frame, autostart, inputs.*, pose.*, segmentation.*, output.*: their groups are never
# offered) and these, which concern the node's query service rather than the answer.
LEFT_OUT = {
    "query.default_max_results": "the command's answer count is its own --top-k",
    "query.decoded_crops": "a bound on the node's query time over a map of many crops; the default is used",
    "query.max_staleness": "the command segments everything it read before it answers",
    "scene.directory": "the folder of the node's scene services; the command saves nothing",
}
# Flags that are not the parameter's name without its group: older spellings kept working, and
# query.top_k, whose name the command's own answer count (--top-k) already has.
FLAGS = {
    "model.allow_random_weights": ("--allow-random-weights", "--random-weights"),
    "query.top_k": ("--candidates",),
}
METAVARS = {
    "model.checkpoint": "CKPT",
    "model.clip_model": "NAME",
    "model.clip_pretrained": "TAG_OR_FILE",
    "model.prompt": "TEMPLATE",
    "query.contrast_phrases": "'A, B, ...'",
    "device": "DEVICE",
}


def flags_of(p) -> tuple[str, ...]:
    """--test-time-views for model.test_time_views: the name without its group, '_' -> '-'."""
    return FLAGS.get(p.name, ("--" + p.name.split(".", 1)[-1].replace("_", "-"),))


def command_parameters(groups: tuple[str, ...]) -> list:
    """The table's parameters of ``groups`` (e.g. model, query), less LEFT_OUT; ``device``, which
    has no group, goes with model."""
    from sole_ros.settings_table import PARAMETERS

    def offered(p):
        group = p.group or ("model" if p.name == "device" else "")
        return group in groups and p.name not in LEFT_OUT

    return [p for p in PARAMETERS if offered(p)]


def _help(p) -> str:
    text = p.description
    if p.has_range:
        text += f" Range {p.range_text()}."
    shown = str(p.default).lower() if isinstance(p.default, bool) else repr(p.default)
    text += f" (default: {shown}; node parameter {p.name})"
    return text.replace("%", "%%")  # argparse %-formats help texts


def add_table_arguments(group, groups: tuple[str, ...]) -> None:
    """An option per parameter of ``groups`` (see command_parameters): the table's default and
    choices, its description as help; ranges are checked by settings_from_args."""
    for p in command_parameters(groups):
        if isinstance(p.default, bool):
            action = group.add_argument(
                *flags_of(p), dest=p.name, default=p.default, action=argparse.BooleanOptionalAction
            )
            action.help = _help(p)  # set afterwards: some Pythons append their own "(default: ...)"
            continue
        metavar = (
            None
            if p.choices
            else METAVARS.get(p.name, {int: "N", float: "X", str: "TEXT"}[type(p.default)])
        )
        group.add_argument(
            *flags_of(p),
            dest=p.name,
            type=type(p.default),
            default=p.default,
            choices=p.choices or None,
            metavar=metavar,
            help=_help(p),
        )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "model",
        "which SOLE weights and CLIP to use, and how they run: the node's parameters device and "
        "model.*, same names (--test-time-views is model.test_time_views); `sole-ros weights` "
        "fetches weights",
    )
    add_table_arguments(group, ("model",))
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random weights, so runs repeat (default: %(default)s)",
    )


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--query",
        "-q",
        nargs="+",
        required=True,
        metavar="TEXT",
        help="one or more phrases; each is its own class (e.g. --query mug 'red box')",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=20,
        metavar="N",
        help="print at most N instances, best first (default: %(default)s); the node's query.top_k, "
        "the candidates ranked before that, is --candidates",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.0,
        metavar="S",
        help="drop instances scoring below S, 0..1 (default: %(default)s)",
    )
    parser.add_argument(
        "--out-dir",
        default=".",
        metavar="DIR",
        help="where the coloured PLY and the PNG go (default: the current directory)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the table"
    )
    group = parser.add_argument_group(
        "query",
        "how queries are answered: the node's parameters query.*, same "
        "names (--contrast-phrases is query.contrast_phrases)",
    )
    add_table_arguments(group, ("query",))


def add_scene_arguments(parser: argparse.ArgumentParser):
    """The scene map's options (scene.*); the group, for the caller's own scene options."""
    group = parser.add_argument_group(
        "scene",
        "the scene map: the node's parameters scene.*, same names "
        "(--voxel-size is scene.voxel_size)",
    )
    add_table_arguments(group, ("scene",))
    return group


def settings_from_args(args, groups: tuple[str, ...]):
    """PipelineSettings as sole_node makes them: the table's defaults, with the values of the
    command's options of ``groups`` (as given to add_table_arguments) in their place, checked as
    the node checks them (ranges, choices), through PipelineSettings.from_parameters. The
    node-only parameters keep their defaults. A value out of range: CliError naming the option."""
    from sole_ros.pipeline import PipelineSettings
    from sole_ros.settings_table import defaults

    values = defaults()
    for p in command_parameters(groups):
        value = getattr(args, p.name)
        reason = p.problem(value)
        if reason:
            raise CliError(f"{flags_of(p)[0]} {reason}, not {value!r}")
        values[p.name] = value
    return PipelineSettings.from_parameters(values)


def check_queries(args, settings) -> list[str]:
    """The phrases, checked as the node checks them (non-empty, not too many, not too long)."""
    from sole_ros.pipeline import QueryLimits, QueryRejected

    try:
        phrases = QueryLimits(settings.max_phrases, settings.max_phrase_length).check(args.query)
    except QueryRejected as error:
        raise CliError(str(error)) from None
    if args.top_k <= 0:
        raise CliError(f"--top-k must be positive, not {args.top_k}")
    if not 0.0 <= args.min_score <= 1.0:
        raise CliError(f"--min-score must be within 0..1, not {args.min_score}")
    return phrases


NO_MEMORY = "cannot load the model: not enough memory to build it (a smaller --config, or another checkpoint)"


def model_errors():
    """The exceptions that mean "this model cannot be loaded as asked" (not a bug)."""
    from sole_ros.clip import ClipWeightsUnavailable
    from sole_ros.model.checkpoint import CheckpointError

    return (ValueError, OSError, ClipWeightsUnavailable, CheckpointError)


def describe_model(settings, candidates: int | None = None) -> dict:
    """The settings that shaped the answer (names as the node's parameters, without the group;
    candidates: the query.top_k used, which the checkpoint decides when the setting is 0)."""
    return {
        "checkpoint": settings.checkpoint or None,
        "config": None if settings.checkpoint else settings.model_config,
        "random_weights": not settings.checkpoint and settings.allow_random_weights,
        "clip_model": settings.clip_model,
        "clip_pretrained": settings.clip_pretrained,
        "prompt": settings.prompt,
        "autocast": settings.autocast,
        "test_time_views": settings.test_time_views,
        "num_queries": settings.num_queries,
        "scene_scale": settings.scene_scale,
        "view_scale_jitter": settings.view_scale_jitter,
        "candidates": candidates if candidates is not None else settings.top_k,
        "min_points": settings.min_points,
        "split_distance": settings.split_distance,  # None: the checkpoint's
        "contrast_phrases": list(settings.contrast_phrases),
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
    except MemoryError:
        raise CliError(NO_MEMORY) from None
    return segmenter, clip, device


def build_pipeline(settings, seed: int = 0):
    from sole_ros.pipeline import build_pipeline as build

    _seed(seed)
    try:
        return build(settings, log)
    except model_errors() as error:
        raise CliError(f"cannot load the model: {one_line(error)}") from None
    except MemoryError:
        raise CliError(NO_MEMORY) from None
