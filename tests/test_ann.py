"""Index types against exact search: recall, tuning to a target, filters, persistence (seeded data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ragkit import Document, Index, build_index
from ragkit.build.options import BuildOptions
from ragkit.cli.app import app
from ragkit.errors import InvalidArgumentError
from ragkit.vectors.ann import (
    INDEX_TYPES,
    factory_for,
    nlist_for,
    recall_at,
    training_sample,
    tune,
)
from ragkit.vectors.exact import exact_search, l2_normalize, top_k
from ragkit.vectors.faiss_index import VectorIndex

D = 64
TYPES = [t for t in INDEX_TYPES if t != "auto"]
TARGET = 0.9  # 8-bit codes of these 64-dimensional test vectors top out near 0.94


def clustered(n: int, seed: int, clusters: int = 40, spread: float = 0.35) -> np.ndarray:
    """Seeded unit vectors around fixed random centres: structured like text embeddings, unlike
    pure noise. Different seeds draw different points around the same centres."""
    centres = np.random.default_rng(0).standard_normal((clusters, D)).astype(np.float32)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, clusters, n)
    return l2_normalize(centres[rows] + spread * rng.standard_normal((n, D)).astype(np.float32))


@pytest.fixture(scope="module")
def data():
    x = clustered(6000, seed=1)
    ids = np.arange(6000, dtype=np.int64) * 7 + 3  # ids are not row numbers
    queries = clustered(300, seed=2)  # held out: not in the collection
    _, truth_rows = exact_search(x, queries, 10)
    return x, ids, queries, ids[truth_rows]


@pytest.fixture(scope="module")
def built(data):
    x, ids, _, _ = data
    out = {}
    for kind in TYPES:
        factory = factory_for(kind, len(x), D)
        index = VectorIndex.create(D, factory)
        index.train(training_sample(x, factory))
        index.add(ids, x)
        tuning = tune(index, x, ids, TARGET, queries=300)
        index.params = tuning.params
        out[kind] = (index, tuning)
    return out


def reference_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return np.lexsort((np.arange(len(scores)), -scores))[:k]


@pytest.mark.parametrize("n,k", [(1, 1), (7, 10), (5000, 10), (100_000, 10), (100_000, 257)])
def test_top_k_matches_a_full_sort(n, k):
    rng = np.random.default_rng(n + k)
    scores = rng.standard_normal(n).astype(np.float32)
    scores[::97] = scores[0]  # ties
    assert np.array_equal(top_k(scores, k), reference_top_k(scores, k))


def test_exact_search_matches_brute_force_in_batches_that_do_not_divide(data):
    x, _, queries, _ = data
    for batch in (1, 3, 19, 20, 57):
        q = queries[:batch]
        scores, rows = exact_search(x, q, 10)
        expected = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
        assert (rows == expected).mean() > 0.99  # float ties may swap
        assert np.allclose(scores, np.take_along_axis(q @ x.T, rows, axis=1), atol=1e-5)


def test_exact_search_with_fewer_vectors_than_k():
    x = clustered(3, seed=3)
    scores, rows = exact_search(x, x[:1], 10)
    assert sorted(rows[0, :3].tolist()) == [0, 1, 2] and (rows[0, 3:] == -1).all()


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_reaches_its_recall_on_held_out_queries(built, data, kind):
    _, _, queries, truth = data
    index, tuning = built[kind]
    _, found = index.search(queries, 10)
    recall = recall_at(found, truth, 10)
    assert tuning.reached, tuning
    assert tuning.recall >= TARGET
    assert recall >= TARGET - 0.03, (kind, recall, tuning)
    assert abs(tuning.held_out - tuning.recall) <= 0.03


def test_tuning_on_query_vectors_holds_for_other_queries(data):
    x, ids, queries, truth = data
    index = VectorIndex.create(D, "HNSW16")
    index.add(ids, x)
    tuning = tune(index, x, ids, TARGET, query_vectors=clustered(400, seed=5))
    assert tuning.query_kind == "snippets" and tuning.queries == 200 and tuning.reached
    _, found = index.search(queries, 10, params=tuning.params)
    assert recall_at(found, truth, 10) >= TARGET - 0.03


def test_tuning_picks_cheaper_parameters_for_a_lower_target(data):
    x, ids, _, _ = data
    index = VectorIndex.create(D, "IVF64,Flat")
    index.add(ids, x)
    low, high = tune(index, x, ids, 0.80, queries=200), tune(index, x, ids, 0.99, queries=200)
    assert low.params["nprobe"] < high.params["nprobe"]
    assert low.reached and high.reached and low.recall >= 0.80 and high.recall >= 0.99


def test_an_unreachable_target_is_reported_not_hidden(data):
    x, ids, _, _ = data
    index = VectorIndex.create(D, "IVF64,PQ8x4fs")  # 4-bit codes of 8 dimensions each: coarse
    index.train(x)
    index.add(ids, x)
    tuning = tune(index, x, ids, 1.0, queries=100)
    assert not tuning.reached and tuning.recall < 1.0


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("share", [0.005, 0.6])
def test_filters_return_only_allowed_ids_with_every_type(built, data, kind, share):
    x, ids, queries, _ = data
    index, _ = built[kind]
    rng = np.random.default_rng(4)
    allowed = np.sort(rng.choice(ids, int(len(ids) * share), replace=False))
    _, found = index.search(queries[:20], 10, allowed=allowed)
    assert np.isin(found, allowed).all()  # and no -1: enough allowed vectors exist
    rows = np.searchsorted(ids, allowed)
    _, true_rows = exact_search(x[rows], queries[:20], 10)
    assert recall_at(found, allowed[true_rows], 10) >= 0.85


@pytest.mark.parametrize("kind", TYPES)
def test_saved_index_keeps_ids_and_reconstructs(built, tmp_path, kind):
    index, _ = built[kind]
    path = tmp_path / "v.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, index.factory, D, params=index.params)
    assert np.array_equal(np.sort(loaded.ids()), np.sort(index.ids()))
    probe = index.ids()[:5]
    assert np.allclose(loaded.reconstruct(probe), index.reconstruct(probe), atol=1e-6)
    q = index.reconstruct(probe[:2])
    assert np.array_equal(loaded.search(q, 5)[1], index.search(q, 5)[1])


def test_auto_picks_by_size_and_memory():
    assert factory_for("auto", 50_000, 384) == "Flat"
    assert factory_for("auto", 1_000_000, 384, budget=8 * 10**9) == "IVF2048,SQ8"
    assert factory_for("auto", 50_000, 384, budget=3 * 10**7) == "IVF512,SQ8"  # raw vectors do not fit
    assert "PQ" in factory_for("auto", 10_000_000, 384, budget=10**9)  # not even 8-bit codes fit
    assert factory_for("auto", 10_000_000, 384, budget=20 * 10**9).startswith("IVF8192_HNSW32")
    assert factory_for("IVF16,Flat", 1000, 384) == "IVF16,Flat"  # factory strings pass through
    assert nlist_for(1_000_000) == 2048 and nlist_for(100) == 2


def test_build_index_tunes_records_and_searches_with_the_tuned_parameters(tmp_path, fake_embedder):
    """Deterministic fake embedder: pure logic of the manifest round trip."""
    docs = [Document(f"d{i}", f"Document {i} talks about subject{i % 17} and item{i}.") for i in range(300)]
    root = tmp_path / "idx"
    build_index(docs, root, embedder=fake_embedder, options=BuildOptions(index_type="hnsw", recall=0.9))
    manifest = json.loads((root / "manifest.json").read_text())
    v = manifest["vectors"]
    assert v["index_type"] == "hnsw" and v["factory"] == "HNSW32"
    assert set(v["search"]) == {"efSearch"} and v["tuning"]["target"] == 0.9 and v["tuning"]["reached"]
    assert v["tuning"]["query_kind"] == "snippets"  # passage snippets embedded as queries
    with Index.open(root, embedder=fake_embedder) as idx:
        assert idx.vectors.params == v["search"]
        hits = idx.search("subject3 item3", k=5, mode="dense", per_doc=None)
        assert len(hits) == 5
        idx.verify()
    # same settings: nothing to do; another recall target: rebuilt
    assert build_index(docs, root, embedder=fake_embedder, options=BuildOptions(index_type="hnsw", recall=0.9)).embedded == 0


def test_bad_index_type_and_recall_are_clear_errors(tmp_path, fake_embedder):
    docs = [Document("a", "alpha text")]
    with pytest.raises(InvalidArgumentError, match="recall"):
        BuildOptions(recall=1.5)
    with pytest.raises(InvalidArgumentError, match="factory"):
        build_index(docs, tmp_path / "x", embedder=fake_embedder, options=BuildOptions(index_type="HNSWnope"))
    result = CliRunner().invoke(app, ["index", str(tmp_path), "--index", str(tmp_path / "y"), "--recall", "0"])
    assert result.exit_code == 1 and "recall" in result.output and "Traceback" not in result.output


def test_cli_index_type_and_info_show_the_measured_recall(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"{i}.txt").write_text(f"Article {i}\n\nThe city opened park number {i} near river {i % 5}.", encoding="utf-8")
    runner = CliRunner()
    index = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(corpus), "--index", str(index), "--index-type", "ivf-sq8", "--quiet"])
    assert r.exit_code == 0, r.output
    info = runner.invoke(app, ["info", "--index", str(index)])
    assert "--index-type ivf-sq8" in info.output and "recall@10" in info.output and "held-out" in info.output
    assert "% of the build" in info.output and "tuning " in info.output
    data = json.loads(runner.invoke(app, ["info", "--index", str(index), "--json"]).output)
    tuning = data["vectors"]["tuning"]
    assert tuning["held_out_recall@10"] >= 0.9
    assert 0 <= tuning["tuning_seconds"] <= tuning["vector_seconds"] <= tuning["build_seconds"]
    assert tuning["share"] == pytest.approx(tuning["tuning_seconds"] / tuning["build_seconds"], abs=1e-3)
    r = runner.invoke(app, ["search", "park near river", "--index", str(index), "--mode", "dense", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["results"]
