"""Shared fixtures. The real packaged model is loaded once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragkit.testing import FakeHashEmbedder  # noqa: E402,F401 - tests import it from here too

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
    from ragkit.encoders.embedder import Embedder

    emb = Embedder()
    _ = emb.dimension
    return emb


@pytest.fixture
def fake_embedder():
    return FakeHashEmbedder()


@pytest.fixture(scope="session")
def news_index(tmp_path_factory):
    """A real navec-ru index of the small Russian corpus in tests/serve_corpus.py (read-only: copy it to write)."""
    from serve_corpus import build

    return build(tmp_path_factory.mktemp("news") / "index")
