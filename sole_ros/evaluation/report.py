"""Human-readable results: a per-class table (text or CSV), a JSON summary, and a PNG bar chart."""

from __future__ import annotations

import csv
import json
import math
import pathlib

from sole_ros.evaluation.instance_ap import InstanceAPResult


def _fmt(value: float) -> str:
    return "   -  " if math.isnan(value) else f"{100 * value:6.1f}"


def format_table(result: InstanceAPResult) -> str:
    """Per-class AP / AP50 / AP25 in percent (classes without ground truth shown as '-'), then means."""
    width = max([len(n) for n in result.class_names] + [24])
    lines = [
        f"{'class':<{width}}  {'AP':>6}  {'AP50':>6}  {'AP25':>6}  {'#GT':>5}",
        "-" * (width + 32),
    ]
    for name, row in result.per_class().items():
        lines.append(
            f"{name:<{width}}  {_fmt(row['ap'])}  {_fmt(row['ap50'])}  {_fmt(row['ap25'])}  "
            f"{row['gt_instances']:5d}"
        )
    summary = result.summary()
    lines.append("-" * (width + 32))
    lines.append(
        f"{'mean over classes':<{width}}  {_fmt(summary['ap'])}  {_fmt(summary['ap50'])}  "
        f"{_fmt(summary['ap25'])}"
    )
    lines.append(
        f"{'class-agnostic':<{width}}  {_fmt(summary['agnostic_ap'])}  {_fmt(summary['agnostic_ap50'])}  "
        f"{_fmt(summary['agnostic_ap25'])}"
    )
    for split_name, _ in result.splits:
        lines.append(
            f"{split_name:<{width}}  {_fmt(summary[split_name + '_ap'])}  "
            f"{_fmt(summary[split_name + '_ap50'])}  {_fmt(summary[split_name + '_ap25'])}"
        )
    lines.append(f"matching rule: {result.matching}")
    for top1, how in (
        (result.query_top1, "asked alone"),
        (result.query_top1_contrast, "the other class names as contrast phrases"),
    ):
        if top1 is None:
            continue
        lines.append(
            f"query top-1 accuracy, {how} (IoU >= {top1.iou_threshold:g}): "
            f"{_fmt(top1.accuracy).strip()}% ({top1.hits}/{top1.queries})"
        )
        for name, (hits, queries) in sorted(top1.per_class.items()):
            lines.append(f"  {name:<{width - 2}}  {hits:3d}/{queries:<3d}")
    return "\n".join(lines)


def write_csv(result: InstanceAPResult, path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "class_id", "ap", "ap50", "ap25", "gt_instances"])
        for (name, row), class_id in zip(result.per_class().items(), result.class_ids):
            writer.writerow(
                [name, int(class_id), row["ap"], row["ap50"], row["ap25"], row["gt_instances"]]
            )


def write_json(result: InstanceAPResult, path) -> None:
    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    payload = {
        "summary": {k: clean(v) for k, v in result.summary().items()},
        "per_class": {
            n: {k: clean(v) for k, v in r.items()} for n, r in result.per_class().items()
        },
        "matching": result.matching,
    }
    for key in ("query_top1", "query_top1_contrast"):
        if getattr(result, key) is not None:
            payload[key] = {k: clean(v) for k, v in getattr(result, key).as_dict().items()}
    pathlib.Path(path).write_text(json.dumps(payload, indent=2))


def plot_per_class(
    result: InstanceAPResult, path, title: str = "instance segmentation", only_with_gt: bool = True
) -> None:
    """Horizontal bars of AP, AP50 and AP25 per class, with the summary in the title."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [
        (n, r)
        for n, r in result.per_class().items()
        if not (only_with_gt and r["gt_instances"] == 0)
    ]
    summary = result.summary()
    height = max(3.0, 0.22 * len(rows) + 1.5)
    fig, ax = plt.subplots(figsize=(8, height))
    y = np.arange(len(rows))
    for offset, key, colour in (
        (-0.27, "ap25", "#9ecae1"),
        (0.0, "ap50", "#4292c6"),
        (0.27, "ap", "#08306b"),
    ):
        values = [0.0 if math.isnan(r[key]) else 100 * r[key] for _, r in rows]
        ax.barh(y + offset, values, height=0.27, color=colour, label=key.upper())
    ax.set_yticks(y, [n for n, _ in rows], fontsize=7 if len(rows) > 40 else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("average precision (%)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"{title}: AP {_fmt(summary['ap']).strip()} / AP50 {_fmt(summary['ap50']).strip()} / "
        f"AP25 {_fmt(summary['ap25']).strip()} (agnostic AP {_fmt(summary['agnostic_ap']).strip()})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
