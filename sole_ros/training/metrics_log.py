"""The training log: one JSON object per line (metrics.jsonl), and a PNG of the curves."""

from __future__ import annotations

import json
import math
import pathlib


class MetricsLog:
    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run repeats the steps after its checkpoint)."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def plot_curves(records: list[dict], path, title: str = "training") -> None:
    """Loss terms (log scale), association accuracies and the learning rate against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind", "train") == "train"]
    if not train:
        return
    steps = [r["step"] for r in train]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key in ("loss", "mask_bce", "mask_dice", "assoc_focal", "assoc_dice"):
        values = [r.get(key, math.nan) for r in train]
        if any(v == v for v in values):
            axes[0].plot(steps, values, label=key, linewidth=1)
    axes[0].set_yscale("log")
    axes[0].set_title("loss (final output, weighted)")
    axes[0].legend(fontsize=8)
    for key in ("mva_accuracy", "mca_accuracy", "mea_accuracy"):
        values = [r.get(key, math.nan) for r in train]
        if any(v == v for v in values):
            axes[1].plot(steps, values, label=key, linewidth=1)
    evals = [r for r in records if r.get("kind") == "eval"]
    for key in ("ap", "ap50", "ap25"):
        if evals and key in evals[0]:
            axes[1].plot(
                [r["step"] for r in evals], [r[key] for r in evals], "o-", label=f"eval {key}"
            )
    axes[1].set_ylim(0, 1)
    axes[1].set_title("matched-query association accuracy / eval AP")
    axes[1].legend(fontsize=8)
    axes[2].plot(steps, [r.get("lr", math.nan) for r in train])
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
