"""An index opened for search: manifest + FAISS vectors + SQLite passages (+ the query embedder)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .documents import SearchResult
from .embedding import Embedder, same_model
from .errors import IndexFormatError, InvalidArgumentError, ModelMismatchError
from .manifest import read_manifest
from .store import Store
from .vectors import VectorIndex


class Index:
    """A searchable ragkit index. Open with :meth:`open`; build with :func:`ragkit.build_index`."""

    def __init__(self, path: Path, manifest: dict[str, Any], embedder: Embedder | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self._embedder = embedder
        self._vectors: VectorIndex | None = None
        self._store: Store | None = None
        self._passage_docs: dict[int, str] | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        model: str | None = None,
        embedder: Embedder | None = None,
    ) -> Index:
        """Open the index at ``path``. ``model``/``embedder``, if given, must be the index's model."""
        root = Path(path)
        manifest = read_manifest(root)
        indexed = manifest["model"]
        name = embedder.name if embedder is not None else model
        if not same_model(indexed["name"], name):
            raise ModelMismatchError(
                f"index {root} was built with model {indexed['name']!r}, not {name!r}; "
                "search it with its own model or rebuild it"
            )
        index = cls(root, manifest, embedder)
        index._check_files()
        return index

    # -- lazily opened parts ---------------------------------------------------------------
    def _check_files(self) -> None:
        for section in ("vectors", "store"):
            name = self.manifest[section].get("file")
            if not isinstance(name, str) or "/" in name or "\\" in name:
                raise IndexFormatError(f"{self.path}/manifest.json has no valid {section}.file")
            f = self.path / name
            if not f.is_file():
                raise IndexFormatError(f"index {self.path} is damaged: {f.name} is missing")

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            m = self.manifest["model"]
            self._embedder = Embedder(m["name"], query_prompt=m.get("query_prompt"), passage_prompt=m.get("passage_prompt"))
        return self._embedder

    @property
    def vectors(self) -> VectorIndex:
        if self._vectors is None:
            v = self.manifest["vectors"]
            self._vectors = VectorIndex.load(self.path / v["file"], v["factory"], int(self.manifest["model"]["dimension"]))
        return self._vectors

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.path / self.manifest["store"]["file"])
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- facts -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.manifest["counts"]["passages"])

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), **self.manifest}

    # -- search ----------------------------------------------------------------------------
    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        vectors = self.embedder.embed_queries(list(queries))
        expected = int(self.manifest["model"]["dimension"])
        if vectors.shape[1] != expected:
            raise ModelMismatchError(
                f"model {self.embedder.name!r} now gives {vectors.shape[1]}-dimensional vectors; "
                f"index {self.path} holds {expected}-dimensional ones: rebuild it"
            )
        return vectors

    def rank_passages(self, queries: Sequence[str], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, up to ``n`` (passage ids, scores), best first."""
        queries = [_check_query(q) for q in queries]
        if not queries:
            return []
        scores, ids = self.vectors.search(self.embed_queries(queries), n)
        out = []
        for row_ids, row_scores in zip(ids, scores):
            keep = row_ids >= 0
            out.append((row_ids[keep], row_scores[keep]))
        return out

    def search(self, query: str, k: int = 10) -> list[SearchResult]:
        """The ``k`` best passages for ``query``, best first."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[SearchResult]]:
        _check_k(k)
        ranked = self.rank_passages(queries, k)
        rows = self.store.passages([int(i) for ids, _ in ranked for i in ids])
        results = []
        for ids, scores in ranked:
            hits = [(rows[int(i)], float(s)) for i, s in zip(ids, scores) if int(i) in rows]
            results.append([
                SearchResult(rank=r, score=s, doc_id=p.doc_id, title=p.title, date=p.date, source=p.source,
                             start=p.start, end=p.end, text=p.text, url=p.url)
                for r, (p, s) in enumerate(hits, start=1)
            ])
        return results

    def passage_documents(self) -> dict[int, str]:
        """Passage id -> document id for the whole index."""
        if self._passage_docs is None:
            self._passage_docs = self.store.passage_docs()
        return self._passage_docs


def _check_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgumentError("the query is empty")
    return query


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
