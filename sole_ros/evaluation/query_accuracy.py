"""Top-1 accuracy of language queries: what a robot gets when it asks for one thing and takes the
first answer.

For every class present in a scene (at least one ground-truth instance of ``min_region_size``
points), the class name is asked on its own (a binary classifier against the background, as the
ROS query service does) and only the best-scoring answer is kept. The query is a hit when that
answer's points overlap some ground-truth instance of the named class with IoU >= ``iou_threshold``
(0.5 by default: the right object, not just a patch of it). A query without an answer is a miss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sole_ros.evaluation.instance_ap import MIN_REGION_SIZE, SceneGroundTruth


@dataclass
class QueryTop1:
    """Hits and queries in total and per class name."""

    iou_threshold: float = 0.5
    per_class: dict[str, list[int]] = field(default_factory=dict)  # name -> [hits, queries]

    def add(self, name: str, hit: bool) -> None:
        counts = self.per_class.setdefault(name, [0, 0])
        counts[0] += int(hit)
        counts[1] += 1

    @property
    def hits(self) -> int:
        return sum(h for h, _ in self.per_class.values())

    @property
    def queries(self) -> int:
        return sum(n for _, n in self.per_class.values())

    @property
    def accuracy(self) -> float:
        return self.hits / self.queries if self.queries else float("nan")

    def as_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "hits": self.hits,
            "queries": self.queries,
            "iou_threshold": self.iou_threshold,
            "per_class": {
                n: {"hits": h, "queries": q} for n, (h, q) in sorted(self.per_class.items())
            },
        }


def classes_present(
    gt: SceneGroundTruth, class_ids, min_region_size: int = MIN_REGION_SIZE
) -> list[int]:
    """The class ids with at least one instance of ``min_region_size`` points in the scene."""
    present = []
    for class_id in class_ids:
        ids, sizes = np.unique(
            gt.instances[(gt.labels == class_id) & (gt.instances > 0)], return_counts=True
        )
        if (sizes >= min_region_size).any():
            present.append(int(class_id))
    return present


def top1_hit(
    gt: SceneGroundTruth, class_id: int, answer: np.ndarray | None, iou_threshold: float = 0.5
) -> bool:
    """Whether ``answer`` (a [N] bool point mask, None for no answer) is an instance of ``class_id``."""
    if answer is None or not answer.any():
        return False
    for instance_id in np.unique(gt.instances[(gt.labels == class_id) & (gt.instances > 0)]):
        target = gt.instances == instance_id
        union = np.count_nonzero(target | answer)
        if union and np.count_nonzero(target & answer) / union >= iou_threshold:
            return True
    return False
