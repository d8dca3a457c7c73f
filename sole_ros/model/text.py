"""CLIP text embeddings of phrases (SOLE's prompt: "a {} in a scene."), cached per phrase."""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

from sole_ros.clip import ClipSpec, load_clip
from sole_ros.device import resolve_device

DEFAULT_PROMPT = "a {} in a scene."


class TextEncoder:
    """Encodes phrases with CLIP's text tower; each phrase is encoded once and kept.

    ``encode(phrases)`` returns [P, D] float32 L2-normalised embeddings on ``self.device`` in the
    order given. The prompt template wraps each phrase (use "{}" to pass phrases unchanged).
    """

    def __init__(self, spec: ClipSpec | None = None, device="auto", prompt: str = DEFAULT_PROMPT,
                 loaded=None):
        if "{}" not in prompt:
            raise ValueError(f"prompt must contain '{{}}' where the phrase goes, got {prompt!r}")
        self.device = resolve_device(device)
        self.clip = loaded if loaded is not None else load_clip(spec or ClipSpec(), self.device)
        self.prompt = prompt
        self._cache: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.clip.embed_dim

    @staticmethod
    def _clean(phrase) -> str:
        if not isinstance(phrase, str) or not phrase.strip():
            raise ValueError(f"a phrase must be a non-empty string, got {phrase!r}")
        return " ".join(phrase.split())

    @torch.no_grad()
    def encode(self, phrases: list[str]) -> torch.Tensor:
        if isinstance(phrases, str):
            phrases = [phrases]
        phrases = [self._clean(p) for p in phrases]
        if not phrases:
            raise ValueError("no phrases to encode")
        with self._lock:
            todo = list(dict.fromkeys(p for p in phrases if p not in self._cache))
            if todo:
                tokens = self.clip.tokenizer([self.prompt.format(p) for p in todo]).to(self.clip.device)
                embeds = F.normalize(self.clip.model.encode_text(tokens).float(), dim=-1)
                for phrase, e in zip(todo, embeds):
                    self._cache[phrase] = e.to(self.device)
            return torch.stack([self._cache[p] for p in phrases])

    def cached_phrases(self) -> list[str]:
        return list(self._cache)
