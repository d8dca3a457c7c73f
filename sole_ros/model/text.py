"""CLIP text embeddings of phrases (SOLE's prompt: "a {} in a scene."), cached per phrase."""

from __future__ import annotations

import re
import threading

import torch
import torch.nn.functional as F

from sole_ros.clip import ClipSpec, load_clip
from sole_ros.device import resolve_device

DEFAULT_PROMPT = "a {} in a scene."

# What people put before the thing they ask for; the prompt template brings its own article.
_REQUEST = re.compile(
    r"^(?:(?:please|can you|could you)\s+)?(?:find|locate|show|get|fetch|bring|give|"
    r"look for|search for|where is|where's|pick up|grab)(?:\s+me)?\s+",
    re.IGNORECASE,
)
_ARTICLE = re.compile(r"^(?:a|an|the|some|my|that|this)\s+", re.IGNORECASE)


def object_phrase(phrase: str) -> str:
    """The object named by a request: "find the mug" -> "mug", "a red box" -> "red box". A phrase
    that would become empty is kept as it is."""
    core = _ARTICLE.sub("", _REQUEST.sub("", phrase.strip()))
    return core.rstrip(" ?.!") or phrase


class TextEncoder:
    """Encodes phrases with CLIP's text tower; each phrase is encoded once and kept.

    ``encode(phrases)`` returns [P, D] float32 L2-normalised embeddings on ``self.device`` in the
    order given. The prompt template wraps each phrase (use "{}" to pass phrases unchanged); a
    template brings its own article, so a request such as "find the mug" is reduced to the object
    it names first (``object_phrase``): "a mug in a scene.", as SOLE writes class names.
    """

    def __init__(
        self, spec: ClipSpec | None = None, device="auto", prompt: str = DEFAULT_PROMPT, loaded=None
    ):
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
                tokens = self.clip.tokenizer([self.prompt_for(p) for p in todo]).to(
                    self.clip.device
                )
                embeds = F.normalize(self.clip.model.encode_text(tokens).float(), dim=-1)
                for phrase, e in zip(todo, embeds):
                    self._cache[phrase] = e.to(self.device)
            return torch.stack([self._cache[p] for p in phrases])

    def prompt_for(self, phrase: str) -> str:
        """The text CLIP encodes for ``phrase``."""
        return phrase if self.prompt == "{}" else self.prompt.format(object_phrase(phrase))

    def cached_phrases(self) -> list[str]:
        return list(self._cache)
