"""Targets of SOLE's three multimodal associations, one row per ground-truth instance.

* MVA (mask-visual): the mean of the voxel CLIP features inside the instance's mask, over the
  voxels some view saw; as in the reference it is not re-normalised.
* MCA (mask-caption): the CLIP text embedding of a caption of the object. Captions come, in order
  of preference, from the released target rows, the sample's own captions, or a pluggable
  ``Captioner`` (any callable (sample, instance id) -> caption); ``ClassNameCaptioner`` is the
  fallback that only knows the class ("a chair in a scene.").
* MEA (mask-entity): the noun phrases of the caption (given, or extracted by
  ``noun_phrases``), each encoded with CLIP's text encoder, combined by attention with the mask's
  visual feature as the query: guide = sum_k softmax_k(100 <mva, e_k>) e_k, L2-normalised. Without
  visual features the phrases are averaged. The reference's code for this is not public; this is
  the paper's description made concrete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from sole_ros.datasets.scene_sample import SceneSample
from sole_ros.training.noun_phrases import noun_phrases

Captioner = Callable[[SceneSample, int], str]
PhraseEncoder = Callable[[list[str]], torch.Tensor]  # phrases -> [P, D] L2-normalised


class ClassNameCaptioner:
    """Caption = SOLE's prompt around the instance's class name; the weakest pluggable captioner."""

    def __init__(self, template: str = "a {} in a scene."):
        self.template = template

    def __call__(self, sample: SceneSample, instance_id: int) -> str:
        label = int(sample.semantic[np.argmax(sample.instance == instance_id)])
        return self.template.format(sample.class_names.get(label, "object"))


@dataclass
class AssociationTargets:
    mva: torch.Tensor  # [K, D]
    mca: torch.Tensor  # [K, D]
    mea: torch.Tensor  # [K, D]
    captions: list[str]

    has_visual: bool = True  # False when the scene has no point CLIP features: MVA is then dropped

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The targets the losses use: MVA only when there were visual features to average."""
        out = {"mca": self.mca, "mea": self.mea}
        return {"mva": self.mva, **out} if self.has_visual else out


def visual_targets(voxel_clip: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """[K, D] mean of the seen voxels' CLIP features per mask ([K, V] bool); zeros if none seen."""
    seen = (voxel_clip.abs().sum(dim=1) > 0).float()  # [V]
    weights = masks.float() * seen[None, :]
    counts = weights.sum(dim=1, keepdim=True)
    return (weights @ voxel_clip) / counts.clamp(min=1.0)


def entity_guides(
    phrases_per_instance: list[list[str]],
    mva: torch.Tensor,
    encode: PhraseEncoder,
    temperature: float = 100.0,
) -> torch.Tensor:
    rows = []
    for k, phrases in enumerate(phrases_per_instance):
        entities = encode(phrases).to(mva)  # [P, D]
        if mva[k].abs().sum() > 0:
            weights = torch.softmax(temperature * entities @ mva[k], dim=0)
        else:
            weights = torch.full((len(phrases),), 1.0 / len(phrases), device=mva.device)
        rows.append(F.normalize(weights @ entities, dim=0))
    return torch.stack(rows) if rows else mva.new_zeros((0, mva.shape[1]))


def build_targets(
    sample: SceneSample,
    instance_ids: np.ndarray,
    voxel_clip: torch.Tensor,
    masks: torch.Tensor,
    encode: PhraseEncoder,
    captioner: Captioner | None = None,
    encode_phrases: PhraseEncoder | None = None,
) -> AssociationTargets:
    """All three targets for the instances ``instance_ids`` (rows of ``masks`` [K, V]). Without
    point CLIP features (all-zero ``voxel_clip``) MVA is left out of the losses. ``encode`` writes
    the captions, ``encode_phrases`` (default: ``encode``) the entity phrases."""
    mva = visual_targets(voxel_clip, masks)
    captioner = captioner or ClassNameCaptioner()
    all_ids = list(sample.instance_ids)
    captions = []
    for instance_id in instance_ids:
        caption = sample.captions.get(int(instance_id))
        captions.append(caption if caption else captioner(sample, int(instance_id)))
    rows = [all_ids.index(i) for i in instance_ids]  # released files are in the sample's order
    if sample.mca_targets is not None:
        mca = torch.as_tensor(sample.mca_targets[rows], dtype=torch.float32, device=mva.device)
    else:
        mca = encode(captions).to(mva) if captions else mva.new_zeros((0, mva.shape[1]))
    if sample.mea_targets is not None:
        mea = torch.as_tensor(sample.mea_targets[rows], dtype=torch.float32, device=mva.device)
    else:
        phrases = []
        for instance_id, caption in zip(instance_ids, captions):
            given = sample.entity_phrases.get(int(instance_id))
            found = list(given) if given else noun_phrases(caption)
            phrases.append(found or [caption])
        mea = entity_guides(phrases, mva, encode_phrases or encode)
    has_visual = bool(voxel_clip.abs().sum() > 0)
    return AssociationTargets(mva=mva, mca=mca, mea=mea, captions=captions, has_visual=has_visual)
