"""What a cold search reads: the stored passage -> document array, mapped vector and BM25 files.

Real navec-ru indexes built in tmp_path; the costs themselves are measured by
benchmarks/scale_bench.py, not here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ragkit import Document, Index, build_index
from ragkit.build.options import BuildOptions
from ragkit.errors import IndexFormatError
from ragkit.store.sqlite import Store

WORDS = ("метро трамвай парк школа выборы губернатор мост театр музей больница стадион библиотека "
         "дорога вокзал рынок").split()


def _docs(n: int) -> list[Document]:
    rng = np.random.default_rng(0)
    return [Document(id=f"d{i}", title="", text=" ".join(rng.choice(WORDS, 60)), source=f"s{i}.txt")
            for i in range(n)]


@pytest.fixture(scope="module")
def hnsw_index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cold") / "index"
    build_index(_docs(60), root, model="navec-ru", options=BuildOptions(index_type="hnsw"))
    return root


def _store(root: Path) -> Path:
    import json

    return root / json.loads((root / "manifest.json").read_text())["store"]["file"]


def test_stored_document_rows_equal_the_table_scan(hnsw_index):
    store = Store.open(_store(hnsw_index))
    try:
        stored = store._stored_document_rows()
        assert stored is not None, "the writer stored no passage -> document array"
        assert np.array_equal(stored, store._scan_document_rows())
        assert np.array_equal(store.passage_document_rows(), stored)
    finally:
        store.close()


def test_a_store_without_the_array_is_scanned(hnsw_index, tmp_path):
    copy = tmp_path / "old.sqlite"
    copy.write_bytes(_store(hnsw_index).read_bytes())
    with sqlite3.connect(copy) as db:
        db.execute("DROP TABLE arrays")
    store = Store.open(copy)
    try:
        assert store._stored_document_rows() is None
        assert store.passage_document_rows().shape[0] == store.counts()["passages"]
    finally:
        store.close()


def _last_document_huge(db: sqlite3.Connection) -> None:
    (data,) = db.execute("SELECT data FROM arrays").fetchone()
    db.execute("UPDATE arrays SET data = ?", (bytes(data[:-4]) + np.int32(2**31 - 1).tobytes(),))


@pytest.mark.parametrize("damage", [lambda db: db.execute("UPDATE arrays SET data = substr(data, 1, 8) WHERE name = 'passage_document_rows'"),
                                    _last_document_huge,
                                    lambda db: db.execute("UPDATE arrays SET dtype = '<f8' WHERE name = 'passage_document_rows'")],
                         ids=["truncated", "document out of range", "dtype"])
def test_a_damaged_array_is_an_error(hnsw_index, tmp_path, damage):
    copy = tmp_path / "bad.sqlite"
    copy.write_bytes(_store(hnsw_index).read_bytes())
    with sqlite3.connect(copy) as db:
        damage(db)
    store = Store.open(copy)
    try:
        with pytest.raises(IndexFormatError, match="passage -> document array"):
            store.passage_document_rows()
    finally:
        store.close()


def test_mapped_approximate_vectors_search_like_a_read_copy(hnsw_index):
    """HNSW files are memory-mapped (IO_FLAG_MMAP_IFC); the answers equal FAISS's plain read."""
    from ragkit.vectors.exact import faiss_module

    faiss = faiss_module()
    with Index.open(hnsw_index) as index:
        mapped = index.vectors._index
        plain = faiss.read_index(str(hnsw_index / index.manifest["vectors"]["file"]))
        queries = index.embed_queries(["метро и трамвай", "выборы губернатора", "новый театр"])
        for q in queries:
            a = mapped.search(q[None, :], 5)
            b = plain.search(q[None, :], 5)
            assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
        hits = index.search("театр музей", k=3, mode="hybrid")
        assert hits and all("театр" in h.text or "музей" in h.text for h in hits)
