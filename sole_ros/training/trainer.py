"""Training SOLE: ``train(config)`` from Python, ``sole-ros train`` from the command line.

One loop for one process or many (torchrun, DDP): every process takes its share of each epoch's
shuffled scene order, prepares its scenes (augmentation, voxelisation, association targets), runs
the network and the losses inside a DDP-wrapped module, and steps AdamW under a OneCycle schedule.
Mixed precision (fp16 autocast with gradient scaling) is used on GPUs. Process 0 writes
``metrics.jsonl``, ``curves.png`` and checkpoints (``last.pt`` always, ``epoch_XXXX.pt`` per
epoch); a rerun with the same output folder resumes from ``last.pt`` where it stopped, to the batch.
"""
from __future__ import annotations

import math
import pathlib
import time

import numpy as np
import torch
from torch import nn

from sole_ros.device import autocast
from sole_ros.model.sole import SoleModel
from sole_ros.training.batching import prepare_item
from sole_ros.training.checkpointing import (
    Progress,
    load_checkpoint,
    model_state,
    parameter_digest,
    restore_rng,
    save_checkpoint,
)
from sole_ros.training.components import (
    build_dataset,
    encode_each,
    item_rng,
    load_run_clip,
    sole_config_for,
    text_encoders,
)
from sole_ros.training.config import TrainConfig
from sole_ros.training.distributed import (
    all_true,
    barrier,
    init_distributed,
    local_device,
    mean_over_processes,
    shutdown,
)
from sole_ros.training.losses import LossWeights, total_loss
from sole_ros.training.metrics_log import MetricsLog, plot_curves


class SoleTrainingModule(nn.Module):
    """The network and its losses in one module, so DDP sees the whole step in ``forward``."""

    def __init__(self, model: SoleModel, weights: LossWeights = LossWeights()):
        super().__init__()
        self.model = model
        self.weights = weights

    def forward(self, items):
        device = self.model.device
        out = self.model([it.scene for it in items], [it.targets.mca.to(device) for it in items])
        masks = [it.masks.to(device) for it in items]
        targets = [{k: v.to(device) for k, v in it.targets.as_dict().items()} for it in items]
        return total_loss(out, masks, targets, self.model.bg_feature, self.weights, self.model.config.logit_scale)


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _epoch_share(num_scenes: int, seed: int, epoch: int, rank: int, world: int) -> np.ndarray:
    """This process's scenes for the epoch: a seeded shuffle cut into equal shares (the tail that
    does not divide evenly is dropped, so every process runs the same number of steps)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_scenes)
    per_process = num_scenes // world
    return order[rank * per_process:(rank + 1) * per_process]


def train(config: TrainConfig) -> dict:
    """Run (or resume) training; returns a summary with the last logged numbers and file paths."""
    device = local_device(config.device)
    dist = init_distributed(device)
    out_dir = pathlib.Path(config.output_dir)
    last_path = out_dir / "last.pt"
    resume = load_checkpoint(last_path) if (config.resume and last_path.exists()) else None
    try:
        summary = _train(config, device, dist, out_dir, resume)
    except BaseException:
        shutdown(dist, finished=False)
        raise
    shutdown(dist)
    return summary


def _train(config, device, dist, out_dir, resume) -> dict:
    torch.manual_seed(config.seed)  # identical initial weights in every process
    clip = load_run_clip(config, device, resume.get("clip_state_dict") if resume else None)
    caption_encoder, phrase_encoder = text_encoders(clip, device)
    encode_caption, encode_phrase = encode_each(caption_encoder), encode_each(phrase_encoder)
    sole_config = sole_config_for(config, clip.embed_dim)
    model = SoleModel(sole_config)
    if config.backbone_checkpoint and resume is None:
        from sole_ros.model.checkpoint import load_backbone_weights

        load_backbone_weights(model, config.backbone_checkpoint, freeze=config.backbone_frozen)
    if config.init_checkpoint and resume is None:
        from sole_ros.model.checkpoint import load_sole_weights

        load_sole_weights(model, config.init_checkpoint, strict=False)
    if resume is not None:
        model.load_state_dict(model_state(resume))
    model.set_backbone_frozen(config.backbone_frozen)
    model.to(device).train()
    module = SoleTrainingModule(model, LossWeights(**config.loss_weights))
    if dist.enabled:
        module = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)

    dataset = build_dataset(config, "train", phrase_encoder)
    cache: dict = {}

    def load(index: int):
        if not config.cache_scenes:
            return dataset[index]
        if index not in cache:
            cache[index] = dataset[index]
        return cache[index]

    steps_per_epoch = max(len(_batches(np.arange(len(dataset) // dist.world_size), config.batch_size)), 1)
    total_steps = config.epochs * steps_per_epoch
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    use_amp = config.mixed_precision and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    progress = Progress()
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if "scaler" in resume:
            scaler.load_state_dict(resume["scaler"])
        progress = Progress(**resume["progress"])
        restore_rng(resume)

    log = MetricsLog(out_dir / "metrics.jsonl")
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_config.json").write_text(_json(config.to_dict()))
        log.truncate_after(progress.step)
    bar = None
    if dist.is_main and config.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps if config.max_steps is None else min(total_steps, config.max_steps),
                   initial=progress.step, desc="train", unit="step", dynamic_ncols=True)

    def checkpoint(name="last.pt"):
        if dist.is_main:
            save_checkpoint(out_dir / name, model, sole_config, config, clip, optimizer, scheduler, scaler, progress)
        barrier(dist)

    last_logs: dict = {}
    stop = False
    while progress.epoch < config.epochs and not stop:
        share = _epoch_share(len(dataset), config.seed, progress.epoch, dist.rank, dist.world_size)
        batches = _batches(share, config.batch_size)
        for batch_index in range(progress.batch, len(batches)):
            if config.max_steps is not None and progress.step >= config.max_steps:
                stop = True
                break
            started = time.perf_counter()
            items = []
            for index in batches[batch_index]:
                item = prepare_item(load(int(index)), sole_config, encode_caption,
                                    item_rng(config.seed, progress.epoch, int(index)),
                                    elastic=config.elastic_distortion, feature_dropout=config.feature_dropout,
                                    encode_phrases=encode_phrase, color_drop=config.color_drop,
                                    texture=config.color_texture, scale_range=tuple(config.scale_range))
                if item is not None:
                    items.append(item)
            if all_true(bool(items), dist, device):
                with autocast(device, use_amp):
                    loss, logs = module(items)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if not math.isfinite(logs["loss"]):
                    raise FloatingPointError(f"loss became {logs['loss']} at step {progress.step}")
                logs = mean_over_processes(logs, dist, device)
            else:
                logs = {}  # a batch without any instance in some process: skipped everywhere
            scheduler.step()
            progress.step += 1
            progress.batch = batch_index + 1
            if dist.is_main and logs:
                last_logs = {"kind": "train", "step": progress.step, "epoch": progress.epoch,
                             "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - started, **logs}
                log.append(last_logs)
            if bar is not None:
                bar.update(1)
                if logs:
                    bar.set_postfix(loss=f"{logs['loss']:.3f}", epoch=progress.epoch)
            if config.checkpoint_every_steps and progress.step % config.checkpoint_every_steps == 0:
                checkpoint()
        else:
            progress.epoch += 1
            progress.batch = 0
            checkpoint()
            checkpoint(f"epoch_{progress.epoch:04d}.pt")
            if dist.is_main:
                plot_curves(log.read(), out_dir / "curves.png", title=f"SOLE training ({config.data.kind})")
    if stop:
        checkpoint()
    if dist.is_main:
        plot_curves(log.read(), out_dir / "curves.png", title=f"SOLE training ({config.data.kind})")
    if bar is not None:
        bar.close()
    digest = _check_replicas(model, dist)
    return {"progress": progress.__dict__, "last": last_logs, "checkpoint": str(out_dir / "last.pt"),
            "metrics": str(out_dir / "metrics.jsonl"), "curves": str(out_dir / "curves.png"),
            "rank": dist.rank, "world_size": dist.world_size, "parameter_digest": digest}


def _check_replicas(model, dist) -> str:
    """Every process must end with the same weights; a divergence means a DDP bug: fail loudly.

    BatchNorm running statistics (a trained backbone) are updated by each process's own forward
    and re-broadcast from rank 0 by DDP at the next forward; after the last step rank 0's, the
    ones saved, are broadcast once more so that the replicas end identical."""
    if dist.enabled:
        import torch.distributed as tdist

        for buffer in model.buffers():
            tdist.broadcast(buffer, src=0)
    digest = parameter_digest(model)
    if dist.enabled:
        digests = [None] * dist.world_size
        tdist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise RuntimeError(f"DDP replicas diverged: parameter digests {digests}")
    return digest


def _json(values) -> str:
    import json

    return json.dumps(values, indent=2, default=str)
