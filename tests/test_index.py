"""Building, persisting and searching an index: real model and FAISS, plus a named fake for logic."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ragkit import Document, Index, build_index
from ragkit.build.options import BuildOptions
from ragkit.errors import (
    EmptyCorpusError,
    IndexFormatError,
    IndexNotFoundError,
    InvalidArgumentError,
    ModelMismatchError,
)
from ragkit.format.manifest import FORMAT_VERSION

DOCS = [
    Document("cats", "Cats are small domesticated felines. They purr and hunt mice.", title="Cats"),
    Document("rockets", "A rocket engine burns propellant to produce thrust for spaceflight.", title="Rockets",
             date="2024-05-01", url="https://example.org/r"),
    Document("bread", "Bread is baked from flour, water and yeast in a hot oven.", title="Bread"),
]


@pytest.fixture(scope="module")
def real_index(tmp_path_factory, real_embedder):
    path = tmp_path_factory.mktemp("idx")
    build_index(DOCS, path, embedder=real_embedder)
    return path


def test_real_model_ranks_the_right_document_first(real_index, real_embedder):
    with Index.open(real_index, embedder=real_embedder) as idx:
        res = idx.search("spacecraft propulsion", k=3)
        assert [r.doc_id for r in res][0] == "rockets"
        assert [r.rank for r in res] == [1, 2, 3]
        assert res[0].score >= res[1].score >= res[2].score
        assert -1.0 <= res[-1].score <= res[0].score <= 1.0
        assert res[0].date == "2024-05-01" and res[0].url == "https://example.org/r"


def test_persistence_round_trip_and_manifest(real_index, real_embedder):
    manifest = json.loads((real_index / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["model"]["dimension"] == 384
    assert manifest["model"]["normalized"] is True
    assert manifest["vectors"]["factory"] == "Flat"
    assert manifest["counts"] == {"documents": 3, "passages": 3, "passage_ids": 3}
    assert manifest["chunker"]["max_tokens"] == 254  # 256-token window minus [CLS] and [SEP]
    # a second, independent open (fresh embedder from the manifest) gives identical results
    first = Index.open(real_index, embedder=real_embedder).search("baking with yeast", k=3)
    again = Index.open(real_index).search("baking with yeast", k=3)
    assert [(r.doc_id, round(r.score, 5)) for r in first] == [(r.doc_id, round(r.score, 5)) for r in again]


def test_offsets_slice_document_text(tmp_path, fake_embedder):
    long = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(200))
    docs = [Document("long", long, title="Long"), *DOCS]
    build_index(docs, tmp_path, embedder=fake_embedder)
    with Index.open(tmp_path, embedder=fake_embedder) as idx:
        assert len(idx) > 4
        for r in idx.search("topic 3", k=len(idx)):
            doc = next(d for d in docs if d.id == r.doc_id)
            assert doc.text[r.start : r.end] == r.text


def test_model_mismatch_is_an_error(real_index, fake_embedder):
    with pytest.raises(ModelMismatchError, match="all-MiniLM-L6-v2"):
        Index.open(real_index, model="some-other/model")
    with pytest.raises(ModelMismatchError):
        Index.open(real_index, embedder=fake_embedder)
    # the same model by alias is fine
    Index.open(real_index, model="all-MiniLM-L6-v2")


def test_dimension_mismatch_at_query_time(tmp_path, fake_embedder):
    build_index(DOCS, tmp_path, embedder=fake_embedder)
    other = type(fake_embedder)(dimension=16)  # same name, different dimension: a changed model
    with pytest.raises(ModelMismatchError, match="16-dimensional"):
        Index.open(tmp_path, embedder=other).search("cats")


def test_missing_and_foreign_and_old_indexes(tmp_path, fake_embedder):
    with pytest.raises(IndexNotFoundError):
        Index.open(tmp_path / "absent")
    with pytest.raises(IndexNotFoundError):
        Index.open(tmp_path)
    (tmp_path / "manifest.json").write_text('{"hello": 1}')
    with pytest.raises(IndexFormatError, match="not a ragkit index"):
        Index.open(tmp_path)
    (tmp_path / "manifest.json").write_text("not json")
    with pytest.raises(IndexFormatError):
        Index.open(tmp_path)
    good = tmp_path / "good"
    build_index(DOCS, good, embedder=fake_embedder)
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (good / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="format version"):
        Index.open(good)


def test_damaged_files_are_clear_errors(tmp_path, fake_embedder):
    build_index(DOCS, tmp_path, embedder=fake_embedder)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    vec = tmp_path / manifest["vectors"]["file"]
    vec.write_bytes(b"garbage")
    with pytest.raises(IndexFormatError):
        Index.open(tmp_path, embedder=fake_embedder).search("cats")
    (tmp_path / manifest["store"]["file"]).unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        Index.open(tmp_path, embedder=fake_embedder)


def test_bad_arguments(tmp_path, fake_embedder):
    with pytest.raises(EmptyCorpusError):
        build_index([], tmp_path, embedder=fake_embedder)
    with pytest.raises(EmptyCorpusError):
        build_index([tmp_path / "nothing-here"], tmp_path / "i", embedder=fake_embedder)
    with pytest.raises(InvalidArgumentError, match="duplicate"):
        build_index([DOCS[0], DOCS[0]], tmp_path, embedder=fake_embedder)
    build_index(DOCS, tmp_path, embedder=fake_embedder)
    idx = Index.open(tmp_path, embedder=fake_embedder)
    with pytest.raises(InvalidArgumentError, match="empty"):
        idx.search("   ")
    with pytest.raises(InvalidArgumentError, match="k must"):
        idx.search("cats", k=0)
    with pytest.raises(InvalidArgumentError, match="factory"):
        build_index(DOCS, tmp_path / "f", embedder=fake_embedder, options=BuildOptions(index_type="NoSuchIndex"))


def test_rebuild_replaces_generation_and_failed_build_keeps_old_index(tmp_path, fake_embedder):
    build_index(DOCS, tmp_path, embedder=fake_embedder)
    build_index(DOCS, tmp_path, embedder=fake_embedder)
    build_index(DOCS[:2], tmp_path, embedder=fake_embedder)
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    # the current generation, and the previous one kept one round for readers that opened it
    assert files == ["doclexical-000002", "doclexical-000003", "duplicates-000002.json", "duplicates-000003.json",
                     "embeddings.sqlite", "lexical-000002",
                     "lexical-000003", "manifest.json", "store-000002.sqlite", "store-000003.sqlite",
                     "vectors-000002.faiss", "vectors-000003.faiss"]

    class Exploding(type(fake_embedder)):
        def embed_passages(self, passages, progress=None):
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-embedding

    fresh = [*DOCS, Document("new", "A passage the cache has never seen.")]
    with pytest.raises(KeyboardInterrupt):
        build_index(fresh, tmp_path, embedder=Exploding())
    with Index.open(tmp_path, embedder=fake_embedder) as idx:
        assert {r.doc_id for r in idx.search("cats rockets bread", k=10)} == {"cats", "rockets"}


def test_search_many_matches_single_searches(tmp_path, fake_embedder):
    build_index(DOCS, tmp_path, embedder=fake_embedder)
    idx = Index.open(tmp_path, embedder=fake_embedder)
    queries = ["cats purr", "rocket thrust", "flour oven"]
    many = idx.search_many(queries, k=2)
    for q, res in zip(queries, many):
        assert [r.doc_id for r in res] == [r.doc_id for r in idx.search(q, k=2)]
    assert idx.search("cats", k=100)[-1].rank == 3  # k larger than the index


def test_store_is_plain_sqlite_without_pickle(tmp_path, fake_embedder):
    build_index(DOCS, tmp_path, embedder=fake_embedder)
    store = next(tmp_path.glob("store-*.sqlite"))
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 3


def test_no_pickle_in_the_package():
    from pathlib import Path

    import ragkit

    pkg = Path(ragkit.__file__).parent
    bad = ("import pickle", "pickle.load", "allow_pickle=True", "cloudpickle", "joblib")
    offenders = [p.name for p in pkg.glob("*.py") if any(b in p.read_text(encoding="utf-8") for b in bad)]
    assert offenders == []
