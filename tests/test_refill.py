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


def _recall_against_exact(index: Index) -> float:
    """recall@10 of the index's own search against exact search over its live vectors."""
    rng = np.random.default_rng(11)
    queries = index.embed_queries([" ".join(rng.choice(WORDS, 6)) for _ in range(60)])
    ids = np.sort(index.vectors.ids())
    ids = ids[ids >= 0]
    exact = index.vectors.reconstruct(ids)
    found = index.vectors.search(queries, 10)[1]
    truth = ids[np.argsort(-(exact @ queries.T), axis=0)[:10].T]
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


def _no_tombstone_ranked(index: Index, widest: dict) -> None:
    """Asked for every stored vector, the search ranks each live one once and no tombstone."""
    q = index.embed_queries(["метро и трамвай"])
    scores, ids = index.vectors.search(q, len(index.vectors), params=widest)
    live = index.vectors.live
    assert sorted(ids[0][:live]) == sorted(set(ids[0][:live])) and (ids[0][:live] >= 0).all()
    assert (ids[0][live:] == -1).all()


def _passages_by_text(index: Index) -> dict[str, int]:
    return {p.text: p.id for p in index.store.iter_passages()}


def test_a_small_update_keeps_the_trained_index_and_its_vectors_in_place(ivf, tmp_path):
    import shutil

    root = tmp_path / "index"
    shutil.copytree(ivf, root)
    before = _manifest(root)["vectors"]
    assert before["retrain"] == {"passages": 1200, "changed": 0, "share": RETRAIN_SHARE, "refilled": False}
    with Index.open(root) as index:
        centroids = _centroids(index)
        ids_before = _passages_by_text(index)
        vector_of = {text: index.vectors.reconstruct(np.array([pid]))[0] for text, pid in ids_before.items()}
    update_index(root, add=_docs(10, start=5000, seed=1), remove=["d1", "d2", "d3"])
    after = _manifest(root)["vectors"]
    assert after["retrain"]["refilled"] is True
    assert after["retrain"]["passages"] == 1200 and after["retrain"]["changed"] == 13
    assert after["tuning"] == before["tuning"] and after["search"] == before["search"]
    assert after["tombstones"] == 3
    with Index.open(root) as index:
        assert np.array_equal(_centroids(index), centroids), "the quantiser was retrained"
        assert (len(index.vectors), index.vectors.live, index.vectors.tombstones) == (1210, 1207, 3)
        assert index.verify()["vectors"] == 1207
        # every kept passage keeps its id and the very vector (codes) it had: nothing was re-encoded
        ids_after = _passages_by_text(index)
        kept = [text for text in ids_after if text in ids_before]
        assert len(kept) == 1197 and all(ids_after[t] == ids_before[t] for t in kept)
        for text in kept[:200]:
            assert np.array_equal(index.vectors.reconstruct(np.array([ids_after[text]]))[0], vector_of[text])
        assert _recall_against_exact(index) >= 0.9
        new = index.search(" ".join(_docs(1, start=5000, seed=1)[0].text.split()[:12]), k=5, mode="dense")
        assert any(r.doc_id.startswith("d5") for r in new)
        assert not any(r.doc_id in {"d1", "d2", "d3"} for r in index.search("метро", k=50, mode="dense"))
        _no_tombstone_ranked(index, {"nprobe": index.vectors.nlist})
    out = subprocess.run([RAGKIT, "info", "--index", str(root)], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "trained and tuned at 1,200 passages, 13 changed since" in out.stdout, out.stdout
    assert "3 removed passages' vectors skipped until then" in out.stdout, out.stdout
    update_index(root, remove=["d4"])  # tombstones add up across updates
    assert _manifest(root)["vectors"]["tombstones"] == 4
    with Index.open(root) as index:
        assert index.verify()["vectors"] == 1206


def test_changes_past_the_share_retrain(ivf, tmp_path):
    import shutil

    root = tmp_path / "index"
    shutil.copytree(ivf, root)
    update_index(root, add=_docs(60, start=6000, seed=2))  # 60 of 1200: under the share
    assert _manifest(root)["vectors"]["retrain"]["changed"] == 60
    update_index(root, add=_docs(70, start=7000, seed=3))  # 130 in all: past 10 % of 1200
    retrain = _manifest(root)["vectors"]["retrain"]
    assert retrain == {"passages": 1330, "changed": 0, "share": RETRAIN_SHARE, "refilled": False}


def test_hnsw_grows_in_place_and_keeps_its_tuning(tmp_path):
    root = tmp_path / "index"
    build_index(_docs(400), root, model="navec-ru", options=BuildOptions(index_type="hnsw"))
    before = _manifest(root)["vectors"]
    update_index(root, add=_docs(5, start=9000, seed=4), remove=["d7"])
    after = _manifest(root)["vectors"]
    assert after["retrain"]["refilled"] is True and after["search"] == before["search"]
    assert after["tombstones"] == 1
    with Index.open(root) as index:
        assert (len(index.vectors), index.vectors.live) == (405, 404)
        assert index.verify()["vectors"] == 404
        updated = _recall_against_exact(index)
        assert "d7" not in {r.doc_id for r in index.search("метро", k=50, mode="dense")}
        _no_tombstone_ranked(index, {"efSearch": 1000})
    fresh = tmp_path / "fresh"  # the same passages built afresh, tuned the same way
    build_index([d for d in _docs(400) if d.id != "d7"] + _docs(5, start=9000, seed=4), fresh, model="navec-ru",
                options=BuildOptions(index_type="hnsw"))
    with Index.open(fresh) as index:
        assert updated >= _recall_against_exact(index) - 0.03 and updated >= 0.9, updated


def test_a_refine_type_is_refilled_without_tombstones(tmp_path):
    """FAISS passes no id filter through a refine stage, so such a type is refilled instead."""
    root = tmp_path / "index"
    build_index(_docs(400), root, model="navec-ru", options=BuildOptions(index_type="IVF8,SQ8,RFlat"))
    update_index(root, add=_docs(5, start=9000, seed=4), remove=["d7"])
    after = _manifest(root)["vectors"]
    assert after["retrain"]["refilled"] is True and "tombstones" not in after
    with Index.open(root) as index:
        assert len(index.vectors) == index.vectors.live == 404
        assert index.verify()["vectors"] == 404


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


def test_a_manifest_that_claims_more_tombstones_than_vectors_is_one_line(ivf, tmp_path):
    import shutil

    root = tmp_path / "index"
    shutil.copytree(ivf, root)
    manifest = _manifest(root)
    manifest["vectors"]["tombstones"] = 10**6
    (root / "manifest.json").write_text(json.dumps(manifest))
    out = subprocess.run([RAGKIT, "search", "метро", "--index", str(root), "--mode", "dense"], capture_output=True,
                         text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "manifest says 1000000 are removed" in out.stderr and "Traceback" not in out.stderr
