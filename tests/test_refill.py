"""Updates of approximate indexes keep the trained index while little has changed (build/refill.py).

Real navec-ru indexes (IVF-SQ8 and HNSW) built in tmp_path, updated with ragkit.update_index,
and a real ``ragkit info`` process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragkit import Document, Index, build_index, update_index
from ragkit.build.options import BuildOptions
from ragkit.build.refill import RETRAIN_SHARE

WORDS = ("метро трамвай парк школа выборы губернатор мост театр музей больница стадион библиотека дорога "
         "вокзал рынок река площадь завод улица фестиваль выставка концерт суд полиция пожар").split()
RAGKIT = str(Path(sys.executable).parent / "ragkit")


def _docs(n: int, start: int = 0, seed: int = 0) -> list[Document]:
    rng = np.random.default_rng(seed)
    return [Document(id=f"d{i}", title="", text=" ".join(rng.choice(WORDS, 40)), source=f"s{i}.txt")
            for i in range(start, start + n)]


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _centroids(index: Index) -> np.ndarray:
    from ragkit.vectors.exact import faiss_module

    faiss = faiss_module()
    inner = faiss.extract_index_ivf(index.vectors._inner)
    quantizer = faiss.downcast_index(inner.quantizer)
    return quantizer.reconstruct_n(0, quantizer.ntotal)


@pytest.fixture(scope="module")
def ivf(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("refill") / "index"
    build_index(_docs(1200), root, model="navec-ru", options=BuildOptions(index_type="ivf-sq8"))
    return root


def test_a_small_update_refills_the_trained_index(ivf, tmp_path):
    import shutil

    root = tmp_path / "index"
    shutil.copytree(ivf, root)
    before = _manifest(root)["vectors"]
    assert before["retrain"] == {"passages": 1200, "changed": 0, "share": RETRAIN_SHARE, "refilled": False}
    with Index.open(root) as index:
        centroids = _centroids(index)
    update_index(root, add=_docs(10, start=5000, seed=1), remove=["d1", "d2", "d3"])
    after = _manifest(root)["vectors"]
    assert after["retrain"]["refilled"] is True
    assert after["retrain"]["passages"] == 1200 and after["retrain"]["changed"] == 13
    assert after["tuning"] == before["tuning"] and after["search"] == before["search"]
    with Index.open(root) as index:
        assert np.array_equal(_centroids(index), centroids), "the quantiser was retrained"
        assert len(index.vectors) == 1207
        # the refilled index answers like exact search over the same vectors
        queries = index.embed_queries(["метро и трамвай на площади", "суд и полиция", "выставка в музее"])
        ids = np.sort(index.vectors.ids())
        exact = index.vectors.reconstruct(ids)
        found = index.vectors.search(queries, 10)[1]
        truth = ids[np.argsort(-(exact @ queries.T), axis=0)[:10].T]
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
        assert recall >= 0.9, recall
        new = index.search(" ".join(_docs(1, start=5000, seed=1)[0].text.split()[:12]), k=5, mode="dense")
        assert any(r.doc_id.startswith("d5") for r in new)
        assert not any(r.doc_id in {"d1", "d2", "d3"} for r in index.search("метро", k=50, mode="dense"))
    out = subprocess.run([RAGKIT, "info", "--index", str(root)], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "trained and tuned at 1,200 passages, 13 changed since" in out.stdout, out.stdout


def test_changes_past_the_share_retrain(ivf, tmp_path):
    import shutil

    root = tmp_path / "index"
    shutil.copytree(ivf, root)
    update_index(root, add=_docs(60, start=6000, seed=2))  # 60 of 1200: under the share
    assert _manifest(root)["vectors"]["retrain"]["changed"] == 60
    update_index(root, add=_docs(70, start=7000, seed=3))  # 130 in all: past 10 % of 1200
    retrain = _manifest(root)["vectors"]["retrain"]
    assert retrain == {"passages": 1330, "changed": 0, "share": RETRAIN_SHARE, "refilled": False}


def test_hnsw_keeps_its_tuning(tmp_path):
    root = tmp_path / "index"
    build_index(_docs(400), root, model="navec-ru", options=BuildOptions(index_type="hnsw"))
    before = _manifest(root)["vectors"]
    update_index(root, add=_docs(5, start=9000, seed=4))
    after = _manifest(root)["vectors"]
    assert after["retrain"]["refilled"] is True and after["search"] == before["search"]
    with Index.open(root) as index:
        assert len(index.vectors) == 405
        assert index.verify()["vectors"] == 405


def test_auto_keeps_the_current_type_within_the_share(tmp_path, monkeypatch):
    """An index at the size where auto switches type (EXACT_MAX, lowered here to 100 passages) is
    not rebuilt as IVF and tuned for a small update: it stays Flat until the share is passed."""
    import ragkit.vectors.ann as ann

    monkeypatch.setattr(ann, "EXACT_MAX", 100)
    root = tmp_path / "index"
    build_index(_docs(100), root, model="navec-ru")
    assert _manifest(root)["vectors"]["factory"] == "Flat"
    update_index(root, add=_docs(5, start=9000, seed=5))
    vectors = _manifest(root)["vectors"]
    assert vectors["factory"] == "Flat" and vectors["index_type"] == "auto"
    assert vectors["retrain"] == {"passages": 100, "changed": 5, "share": RETRAIN_SHARE, "refilled": False}
    update_index(root, add=_docs(10, start=9100, seed=6))  # 15 of 100 changed: auto decides again
    vectors = _manifest(root)["vectors"]  # (past EXACT_MAX it measures the types; exact may win at 115)
    assert vectors["retrain"] == {"passages": 115, "changed": 0, "share": RETRAIN_SHARE, "refilled": False}
    assert "selection" in vectors["tuning"], "auto did not measure the types again"
