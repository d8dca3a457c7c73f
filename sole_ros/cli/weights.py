"""`sole-ros weights`: fetch and check the real weights, and say how to configure them.

Downloads the published SOLE checkpoint (Hugging Face dataset onandon/SOLE) and OpenAI's CLIP
ViT-L-14 weights (open_clip's copy on the Hugging Face hub) into one folder, checks them (the
checkpoint is opened with the safe loader and must fit the network key by key; CLIP must load),
prints their sha256 and the node parameters / command-line flags that use them. Files already in
the folder are checked, not fetched again, so copying the folder from a machine with internet and
running this command offline is the way to set up a machine without it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from sole_ros.cli.errors import CliError

SOLE_REPO = "onandon/SOLE"  # a dataset repository (see the SOLE README, "Weights")
SOLE_CHECKPOINTS = {
    "scannet200": "SOLE trained on ScanNet200 (200 classes; the most general vocabulary)",
    "scannet": "SOLE trained on ScanNet (20 classes)",
    "replica": "SOLE for Replica",
}
CLIP_REPO = "timm/vit_large_patch14_clip_224.openai"  # open_clip's hub copy of OpenAI's ViT-L-14
CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # preferred first
# OpenAI's weights were trained with QuickGELU. open_clip applies it for the tag 'openai', but a
# weights *file* gets the architecture's default GELU unless the -quickgelu variant is named.
CLIP_MODEL_FOR_FILE = "ViT-L-14-quickgelu"


def default_dest() -> Path:
    return Path(
        os.environ.get("SOLE_ROS_WEIGHTS") or Path.home() / ".cache" / "sole_ros" / "weights"
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="download and check the published SOLE checkpoint and CLIP weights",
        description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else None,
    )
    parser.add_argument(
        "--dest",
        metavar="DIR",
        default=None,
        help=f"folder for the files (default: $SOLE_ROS_WEIGHTS or {default_dest()})",
    )
    parser.add_argument(
        "--dataset",
        choices=sorted(SOLE_CHECKPOINTS),
        default="scannet200",
        help="which published SOLE checkpoint: the data it was trained on (default: %(default)s)",
    )
    parser.add_argument("--skip-clip", action="store_true", help="only the SOLE checkpoint")
    parser.add_argument(
        "--clip-model",
        default=CLIP_MODEL_FOR_FILE,
        metavar="NAME",
        help="open_clip architecture the CLIP file is checked against (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait when checking for internet (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


@dataclass
class Files:
    checkpoint: Path
    clip_dir: Path

    def clip_file(self) -> Path | None:
        return next((self.clip_dir / n for n in CLIP_FILES if (self.clip_dir / n).is_file()), None)


def hub_reachable(timeout: float) -> tuple[bool, str]:
    """Whether the Hugging Face hub (or the HTTPS proxy) answers a TCP connection; why not if not."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False, "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if "://" in (proxy or "") else f"http://{proxy}") if proxy else endpoint
    host = target.hostname or "huggingface.co"
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as error:
        return False, f"cannot reach {host}:{port} ({error.strerror or error})"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _say(text: str = "") -> None:
    print(text, flush=True)


def _download(files: Files, args) -> None:
    """Fetch what is missing; CliError with the reason when the hub refuses."""
    from huggingface_hub import hf_hub_download

    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "60")
    if not files.checkpoint.is_file():
        _say(
            f"downloading {SOLE_REPO}/{files.checkpoint.name} ({SOLE_CHECKPOINTS[args.dataset]}) ..."
        )
        try:
            hf_hub_download(
                repo_id=SOLE_REPO,
                repo_type="dataset",
                filename=files.checkpoint.name,
                local_dir=str(files.checkpoint.parent),
            )
        except Exception as error:  # noqa: BLE001 - the hub client raises many kinds
            raise CliError(
                f"download of {files.checkpoint.name} failed: {_first_line(error)}"
            ) from None
    if not args.skip_clip and files.clip_file() is None:
        _say(f"downloading CLIP ViT-L-14 (OpenAI) from {CLIP_REPO} ...")
        last = None
        for name in CLIP_FILES:
            try:
                hf_hub_download(repo_id=CLIP_REPO, filename=name, local_dir=str(files.clip_dir))
                break
            except Exception as error:  # noqa: BLE001
                last = error
        else:
            raise CliError(f"download of the CLIP weights failed: {_first_line(last)}")


def _expected_sha256(repo: str, filename: str, repo_type: str | None) -> str | None:
    """The hub's sha256 of a large (LFS) file, when the hub can be asked."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().get_paths_info(repo, [filename], repo_type=repo_type)
        lfs = getattr(info[0], "lfs", None) if info else None
        return getattr(lfs, "sha256", None) if lfs is not None else None
    except Exception:  # noqa: BLE001 - a missing answer only skips the comparison
        return None


def _first_line(error) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def check_checkpoint(path: Path) -> str:
    """Open with the safe loader and fit the network key by key; a one-line description."""
    from sole_ros.model.checkpoint import CheckpointError, load_sole_model

    try:
        model, report = load_sole_model(path)
    except (CheckpointError, OSError, ValueError) as error:
        raise CliError(f"{path} is not a usable SOLE checkpoint: {_first_line(error)}") from None
    c = model.config
    return (
        f"{len(report.loaded)} tensors fit the network ({len(report.ignored)} unused ignored); "
        f"{c.num_queries} queries, {c.clip_dim}-d CLIP space"
    )


def check_clip(path: Path, model_name: str) -> str:
    from sole_ros.clip import ClipSpec, ClipWeightsUnavailable, load_clip

    try:
        clip = load_clip(ClipSpec(model_name, str(path)), "cpu")
    except (ClipWeightsUnavailable, ValueError, RuntimeError, OSError) as error:
        raise CliError(
            f"{path} does not load as open_clip {model_name}: {_first_line(error)}"
        ) from None
    return f"loads as open_clip {model_name} ({clip.embed_dim}-d)"


def print_configuration(files: Files, clip_model: str, skip_clip: bool) -> None:
    clip = files.clip_file()
    clip_value = str(clip) if clip is not None else str(files.clip_dir / CLIP_FILES[0])
    _say()
    _say("node parameters (e.g. in config/sole.yaml under sole: ros__parameters:):")
    _say(f"  model.checkpoint: {files.checkpoint}")
    if not skip_clip:
        _say(f"  model.clip_model: {clip_model}")
        _say(f"  model.clip_pretrained: {clip_value}")
    clip_flags = "" if skip_clip else f" --clip-model {clip_model} --clip-pretrained {clip_value}"
    _say("command line:")
    _say(f"  sole-ros segment SCENE.ply --query mug --checkpoint {files.checkpoint}{clip_flags}")
    _say(f"  sole-ros bag BAG --query mug --checkpoint {files.checkpoint}{clip_flags}")
    _say(
        f"  ros2 run sole_ros sole_node --ros-args -p model.checkpoint:={files.checkpoint}"
        + (
            ""
            if skip_clip
            else f" -p model.clip_model:={clip_model} -p model.clip_pretrained:={clip_value}"
        )
    )


def offline_help(files: Files, reason: str, args) -> None:
    """One line saying we are offline, then how to bring the files over by hand."""
    err = sys.stderr
    print(f"sole-ros weights: offline: {reason}; nothing was downloaded.", file=err)
    print(
        "To set up this machine without internet, fetch the files where there is internet and copy them here:",
        file=err,
    )
    print(
        f"  SOLE: https://huggingface.co/datasets/{SOLE_REPO}/resolve/main/{files.checkpoint.name}",
        file=err,
    )
    print(f"        -> {files.checkpoint}", file=err)
    if not args.skip_clip:
        print(f"  CLIP: https://huggingface.co/{CLIP_REPO}/resolve/main/{CLIP_FILES[0]}", file=err)
        print(
            f"        (or {CLIP_FILES[1]}, as open_clip falls back to) -> {files.clip_dir}/",
            file=err,
        )
    print(
        f"  (or run `sole-ros weights --dest DIR` there and copy DIR to {files.checkpoint.parent})",
        file=err,
    )
    print(
        f"Then `sole-ros weights --dest {files.checkpoint.parent}` here checks them and prints the settings; "
        "or point the node at the files directly:",
        file=err,
    )
    print(f"  model.checkpoint: {files.checkpoint}", file=err)
    if not args.skip_clip:
        print(
            f"  model.clip_model: {args.clip_model}   "
            "(a weights file needs the -quickgelu name for OpenAI's weights)",
            file=err,
        )
        print(f"  model.clip_pretrained: {files.clip_dir / CLIP_FILES[0]}", file=err)


def run(args) -> int:
    dest = Path(args.dest).expanduser() if args.dest else default_dest()
    if dest.exists() and not dest.is_dir():
        raise CliError(f"--dest {dest} is a file, not a folder")
    files = Files(checkpoint=dest / f"{args.dataset}.ckpt", clip_dir=dest / "clip")
    missing = not files.checkpoint.is_file() or (not args.skip_clip and files.clip_file() is None)
    online = False
    if missing:
        online, reason = hub_reachable(args.timeout)
        if not online:
            offline_help(files, reason, args)
            return 1
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CliError(f"cannot create {dest}: {error.strerror or error}") from None
        _download(files, args)

    _say(f"SOLE checkpoint {files.checkpoint}")
    digest = sha256(files.checkpoint)
    _say(f"  sha256 {digest}")
    if online:
        expected = _expected_sha256(SOLE_REPO, files.checkpoint.name, "dataset")
        if expected and expected != digest:
            raise CliError(
                f"{files.checkpoint}: sha256 differs from the hub's {expected}: delete it and run again"
            )
    _say(f"  {check_checkpoint(files.checkpoint)}")
    if not args.skip_clip:
        clip = files.clip_file()
        _say(f"CLIP weights {clip}")
        _say(f"  sha256 {sha256(clip)}")
        _say(f"  {check_clip(clip, args.clip_model)}")
    print_configuration(files, args.clip_model, args.skip_clip)
    return 0
