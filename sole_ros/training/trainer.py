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
        return total_loss(
            out, masks, targets, self.model.bg_feature, self.weights, self.model.config.logit_scale
        )


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _epoch_share(num_scenes: int, seed: int, epoch: int, rank: int, world: int) -> np.ndarray:
    """This process's scenes for the epoch: a seeded shuffle cut into equal shares (the tail that
    does not divide evenly is dropped, so every process runs the same number of steps)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_scenes)
    per_process = num_scenes // world
    return order[rank * per_process : (rank + 1) * per_process]


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
    return _TrainingRun(config, device, dist, out_dir, resume).run()


class _TrainingRun:
    """One run of the loop: the network, its optimisation, its progress and its outputs. Built in
    the order the random streams are drawn (seed, network, data, optimiser, resumed state)."""

    def __init__(
        self, config: TrainConfig, device, dist, out_dir: pathlib.Path, resume: dict | None
    ):
        self.config, self.device, self.dist, self.out_dir = config, device, dist, out_dir
        self._build_network(resume)
        self.dataset = build_dataset(config, "train", self.phrase_encoder)
        self._cache: dict = {}
        steps_per_epoch = max(
            len(_batches(np.arange(len(self.dataset) // dist.world_size), config.batch_size)), 1
        )
        self.total_steps = config.epochs * steps_per_epoch
        self._build_optimisation(resume)
        self._open_outputs()
        self.last_logs: dict = {}

    def _build_network(self, resume: dict | None) -> None:
        """The run's CLIP, text encoders and SOLE network (initial, pretrained or resumed weights)."""
        config, device = self.config, self.device
        torch.manual_seed(config.seed)  # identical initial weights in every process
        self.clip = load_run_clip(config, device, resume.get("clip_state_dict") if resume else None)
        caption_encoder, self.phrase_encoder = text_encoders(self.clip, device)
        self.encode_caption, self.encode_phrase = (
            encode_each(caption_encoder),
            encode_each(self.phrase_encoder),
        )
        self.sole_config = sole_config_for(config, self.clip.embed_dim)
        model = SoleModel(self.sole_config)
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
        if self.dist.enabled:
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.model, self.module = model, module

    def _build_optimisation(self, resume: dict | None) -> None:
        """AdamW under a OneCycle schedule, gradient scaling for mixed precision, the progress;
        all as they were when the run resumes."""
        config = self.config
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=config.lr, total_steps=self.total_steps
        )
        self.use_amp = config.mixed_precision and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.progress = Progress()
        if resume is not None:
            self.optimizer.load_state_dict(resume["optimizer"])
            self.scheduler.load_state_dict(resume["scheduler"])
            if "scaler" in resume:
                self.scaler.load_state_dict(resume["scaler"])
            self.progress = Progress(**resume["progress"])
            restore_rng(resume)

    def _open_outputs(self) -> None:
        """The metrics log (cut back to the resumed step), the run's settings and a progress bar."""
        config, dist, out_dir = self.config, self.dist, self.out_dir
        self.log = MetricsLog(out_dir / "metrics.jsonl")
        if dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "train_config.json").write_text(_json(config.to_dict()))
            self.log.truncate_after(self.progress.step)
        self.bar = None
        if dist.is_main and config.progress:
            from tqdm import tqdm

            total = (
                self.total_steps
                if config.max_steps is None
                else min(self.total_steps, config.max_steps)
            )
            self.bar = tqdm(
                total=total,
                initial=self.progress.step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
            )

    def load(self, index: int):
        if not self.config.cache_scenes:
            return self.dataset[index]
        if index not in self._cache:
            self._cache[index] = self.dataset[index]
        return self._cache[index]

    def checkpoint(self, name: str = "last.pt") -> None:
        if self.dist.is_main:
            save_checkpoint(
                self.out_dir / name,
                self.model,
                self.sole_config,
                self.config,
                self.clip,
                self.optimizer,
                self.scheduler,
                self.scaler,
                self.progress,
            )
        barrier(self.dist)

    def run(self) -> dict:
        config, progress = self.config, self.progress
        stopped = False
        while progress.epoch < config.epochs and not stopped:
            stopped = self._run_epoch()
            if not stopped:
                progress.epoch += 1
                progress.batch = 0
                self.checkpoint()
                self.checkpoint(f"epoch_{progress.epoch:04d}.pt")
                self._plot()
        if stopped:
            self.checkpoint()
        self._plot()
        if self.bar is not None:
            self.bar.close()
        digest = _check_replicas(self.model, self.dist)
        out_dir, dist = self.out_dir, self.dist
        return {
            "progress": progress.__dict__,
            "last": self.last_logs,
            "checkpoint": str(out_dir / "last.pt"),
            "metrics": str(out_dir / "metrics.jsonl"),
            "curves": str(out_dir / "curves.png"),
            "rank": dist.rank,
            "world_size": dist.world_size,
            "parameter_digest": digest,
        }

    def _run_epoch(self) -> bool:
        """This process's remaining batches of the epoch; True when max_steps stopped it early."""
        config, dist, progress = self.config, self.dist, self.progress
        share = _epoch_share(
            len(self.dataset), config.seed, progress.epoch, dist.rank, dist.world_size
        )
        batches = _batches(share, config.batch_size)
        for batch_index in range(progress.batch, len(batches)):
            if config.max_steps is not None and progress.step >= config.max_steps:
                return True
            started = time.perf_counter()
            logs = self._step(self._prepare(batches[batch_index]))
            self.scheduler.step()
            progress.step += 1
            progress.batch = batch_index + 1
            self._report(logs, started)
            if config.checkpoint_every_steps and progress.step % config.checkpoint_every_steps == 0:
                self.checkpoint()
        return False

    def _prepare(self, batch: np.ndarray) -> list:
        """The batch's scenes augmented and made into training items (scenes without any go)."""
        config, progress = self.config, self.progress
        items = []
        for index in batch:
            item = prepare_item(
                self.load(int(index)),
                self.sole_config,
                self.encode_caption,
                item_rng(config.seed, progress.epoch, int(index)),
                elastic=config.elastic_distortion,
                feature_dropout=config.feature_dropout,
                encode_phrases=self.encode_phrase,
                color_drop=config.color_drop,
                texture=config.color_texture,
                scale_range=tuple(config.scale_range),
            )
            if item is not None:
                items.append(item)
        return items

    def _step(self, items: list) -> dict:
        """One optimiser step on the items; the losses averaged over processes, or {} when some
        process has no item (the batch is then skipped everywhere)."""
        dist, device = self.dist, self.device
        if not all_true(bool(items), dist, device):
            return {}
        with autocast(device, self.use_amp):
            loss, logs = self.module(items)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if not math.isfinite(logs["loss"]):
            raise FloatingPointError(f"loss became {logs['loss']} at step {self.progress.step}")
        return mean_over_processes(logs, dist, device)

    def _report(self, logs: dict, started: float) -> None:
        """The step's numbers into the metrics log and onto the progress bar."""
        progress = self.progress
        if self.dist.is_main and logs:
            self.last_logs = {
                "kind": "train",
                "step": progress.step,
                "epoch": progress.epoch,
                "lr": self.scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - started,
                **logs,
            }
            self.log.append(self.last_logs)
        if self.bar is not None:
            self.bar.update(1)
            if logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.3f}", epoch=progress.epoch)

    def _plot(self) -> None:
        if self.dist.is_main:
            plot_curves(
                self.log.read(),
                self.out_dir / "curves.png",
                title=f"SOLE training ({self.config.data.kind})",
            )


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
