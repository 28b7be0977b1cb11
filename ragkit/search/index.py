"""An index opened for search: manifest + FAISS vectors + SQLite passages (+ the query embedder)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.documents import SearchResult
from ragkit.encoders.embedder import Embedder
from ragkit.encoders.registry import same_model
from ragkit.errors import IndexFormatError, InvalidArgumentError, ModelMismatchError
from ragkit.format.checksums import check
from ragkit.format.manifest import read_manifest
from ragkit.format.pinning import PinnedFiles
from ragkit.lexical.analysis import detect_language
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.search.fusion import Fused, FusionConfig, fuse
from ragkit.store.filters import Filters
from ragkit.store.sqlite import Store
from ragkit.vectors.faiss_index import VectorIndex

MODES = ("hybrid", "lexical", "dense")
DEFAULT_PER_DOC = 3
_QUERY_CACHE = 50_000


class Index:
    """A searchable ragkit index. Open with :meth:`open`; build with :func:`ragkit.build_index`."""

    def __init__(self, path: Path, manifest: dict[str, Any], embedder: Embedder | None = None,
                 pinned: PinnedFiles | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self._embedder = embedder
        self._given_embedder = embedder
        self._pinned = pinned
        # Parts are read from the pinned files of this generation (see ragkit.format.pinning).
        self._data = pinned.folder if pinned is not None else path
        self._store: Store | None = None
        self._doc_rows: np.ndarray | None = None
        self._passage_docs: dict[int, str] | None = None
        self._query_vectors: dict[str, np.ndarray] = {}

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
        files = manifest["files"]
        index._pinned = PinnedFiles(root, files)
        index._data = index._pinned.folder
        check(index._data, files)
        index._store = Store.open(index._data / manifest["store"]["file"])  # SQLite holds its file from here
        return index

    @property
    def generation(self) -> int:
        """The generation this reader answers from; it never changes for an open ``Index``."""
        return int(self.manifest.get("generation", 0))

    def reload(self) -> Index:
        """The newest generation of this index: ``self`` when it is current, else a new ``Index``.

        The old object keeps answering from its own generation until it is closed, so requests
        in flight finish where they started; a server swaps in the returned reader between
        requests and closes the old one when its last request is done.
        """
        if int(read_manifest(self.path).get("generation", 0)) == self.generation:
            return self
        return Index.open(self.path, embedder=self._given_embedder)

    # -- lazily opened parts ---------------------------------------------------------------
    def _check_files(self) -> None:
        for section, key in (("vectors", "file"), ("store", "file"), ("lexical", "dir"), ("lexical", "documents_dir")):
            name = (self.manifest.get(section) or {}).get(key)
            if not isinstance(name, str) or "/" in name or "\\" in name:
                raise IndexFormatError(f"{self.path}/manifest.json has no valid {section}.{key}")
            f = self.path / name
            if not f.exists():
                raise IndexFormatError(f"index {self.path} is damaged: {f.name} is missing")
        files = self.manifest.get("files")
        if not isinstance(files, dict) or not files:
            raise IndexFormatError(f"{self.path}/manifest.json lists no file checksums")

    def verify(self) -> dict[str, Any]:
        """Check every file's full checksum and that FAISS, SQLite and BM25 agree; raise on damage."""
        check(self._data, self.manifest["files"], full=True)
        counts = self.manifest["counts"]
        found = {
            "vectors": len(self.vectors),
            "passages": self.store.counts()["passages"],
            "lexical passages": len(self.lexical),
            "documents": self.store.counts()["documents"],
            "lexical documents": len(self.doc_lexical),
        }
        expected = {"vectors": counts["passages"], "passages": counts["passages"], "lexical passages": counts["passages"],
                    "documents": counts["documents"], "lexical documents": counts["documents"]}
        for key, value in found.items():
            if value != expected[key]:
                raise IndexFormatError(f"index {self.path} is inconsistent: {value} {key}, manifest says {expected[key]}")
        ids = np.sort(self.lexical.ids)
        if not np.array_equal(ids, np.arange(counts["passages"])):
            raise IndexFormatError(f"index {self.path} is inconsistent: lexical ids differ from passage ids")
        if not np.array_equal(np.sort(self.vectors.ids()), ids):
            raise IndexFormatError(f"index {self.path} is inconsistent: vector ids differ from passage ids")
        probe = ids[:: max(1, len(ids) // 64)]
        stored = self.store.passages(probe.tolist())
        if len(stored) != len(probe):
            raise IndexFormatError(f"index {self.path} is inconsistent: vector ids without passages")
        self.vectors.reconstruct(probe)  # raises inside FAISS for ids it does not hold
        return {"files": len(self.manifest["files"]), **found}

    @property
    def embedder(self) -> Embedder:
        """The query embedder: the index's ONNX encoder when it has one (no torch), else the model."""
        if self._embedder is None:
            from ragkit.encoders.registry import use_query_export

            m = self.manifest["model"]
            encoder = self.manifest.get("query_encoder")
            if not (encoder and use_query_export()):
                self._embedder = Embedder(m["name"], query_prompt=m.get("query_prompt"),
                                          passage_prompt=m.get("passage_prompt"))
                return self._embedder
            from ragkit.errors import OnnxEncoderError

            def load(folder: Path) -> Embedder:
                embedder = Embedder(m["name"], query_prompt=m.get("query_prompt", ""),
                                    passage_prompt=m.get("passage_prompt", ""), query_encoder=folder)
                embedder.query_encoder()
                return embedder

            try:
                self._embedder = load(self._data / encoder["dir"])
            except OnnxEncoderError:
                if self._pinned is None:
                    raise
                # A writer deleted this generation's encoder: load the pinned copy.
                self._embedder = load(self._pinned.materialize(encoder["dir"]))
        return self._embedder

    @cached_property
    def vectors(self) -> VectorIndex:
        v = self.manifest["vectors"]
        return VectorIndex.load(self._data / v["file"], v["factory"], int(self.manifest["model"]["dimension"]),
                                params=v.get("search"))

    @cached_property
    def lexical(self) -> LexicalIndex:
        return LexicalIndex.load(self._data / self.manifest["lexical"]["dir"])

    @cached_property
    def doc_lexical(self) -> LexicalIndex:
        return LexicalIndex.load(self._data / self.manifest["lexical"]["documents_dir"])

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self._data / self.manifest["store"]["file"])
        return self._store

    def close(self) -> None:
        """Close the store and release the pinned files.

        Parts already loaded stay usable; parts loaded later are read from the folder as it is
        then (a writer holding the lock uses this to load the current model after reading).
        """
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._pinned is not None:
            self._pinned.close()
            self._pinned = None
            self._data = self.path

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
        """Query vectors, cached by text (eval and repeated queries embed once)."""
        missing = [q for q in dict.fromkeys(queries) if q not in self._query_vectors]
        if missing:
            vectors = self.embedder.embed_queries(missing)
            expected = int(self.manifest["model"]["dimension"])
            if vectors.shape[1] != expected:
                raise ModelMismatchError.dimensions(self.embedder.name, vectors.shape[1], self.path, expected)
            if len(self._query_vectors) + len(missing) > _QUERY_CACHE:
                self._query_vectors.clear()
            self._query_vectors.update(zip(missing, vectors))
        return np.stack([self._query_vectors[q] for q in queries])

    def allowed(self, filters: Filters | None) -> np.ndarray | None:
        """Passage ids passing ``filters`` (None: no filter)."""
        if filters is None or not filters.active:
            return None
        return self.store.allowed_passages(filters)

    def rank_passages(
        self,
        queries: Sequence[str],
        n: int,
        *,
        mode: str = "hybrid",
        allowed: np.ndarray | None = None,
        fusion: FusionConfig | None = None,
    ) -> list[Fused]:
        """For each query, up to ``n`` passages best first, with their component scores."""
        queries = [_check_query(q) for q in queries]
        if mode not in MODES:
            raise InvalidArgumentError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
        if not queries or (allowed is not None and len(allowed) == 0):
            return [_empty() for _ in queries]
        fusion = fusion or FusionConfig()
        weights = [self._dense_weight(q, fusion) if mode == "hybrid" else 0.0 for q in queries]
        need_dense = mode == "dense" or any(w > 0 for w in weights)
        qvecs = self.embed_queries(queries) if need_dense else None
        if mode == "dense":
            scores, ids = self.vectors.search(qvecs, n, allowed)
            return [_from_dense(i, s) for i, s in zip(ids, scores)]
        out = []
        for qi, query in enumerate(queries):
            lex_vec = self._lexical_vector(query, fusion.doc_weight)
            lex_ids, lex_scores = _top(self.lexical.ids, lex_vec, max(n, fusion.candidates), self._allowed_rows(allowed))
            if mode == "lexical" or weights[qi] == 0.0:
                out.append(Fused(lex_ids[:n], lex_scores[:n], {"lexical": lex_scores[:n]}))
                continue
            _, dense_ids = self.vectors.search(qvecs[qi], max(n, fusion.candidates), allowed)
            ids = np.unique(np.concatenate([lex_ids, dense_ids[0][dense_ids[0] >= 0]]))
            lexical = lex_vec[self.lexical.rows_of(ids)]
            dense = (self.vectors.reconstruct(ids) @ qvecs[qi]).astype(np.float64)
            fused = fuse(ids, lexical, dense, fusion, weights[qi])
            out.append(Fused(fused.ids[:n], fused.scores[:n], {k: v[:n] for k, v in fused.components.items()}))
        return out

    def _lexical_vector(self, query: str, doc_weight: float) -> np.ndarray:
        """Lexical score of every passage row: its BM25 mixed with its document's BM25.

        ``doc_weight`` is the document's share; 0 gives the passage's plain BM25 score.
        """
        passage = self.lexical.score_all(query).astype(np.float64)
        if doc_weight <= 0.0:
            return passage
        document = self.doc_lexical.score_all(query).astype(np.float64)[self._passage_doc_rows()]
        p_top, d_top = passage.max(initial=0.0), document.max(initial=0.0)
        mixed = np.zeros_like(passage)
        if p_top > 0:
            mixed += (1.0 - doc_weight) * passage / p_top
        if d_top > 0:
            mixed += doc_weight * document / d_top
        return mixed

    def _passage_doc_rows(self) -> np.ndarray:
        """For each passage row of the lexical index, the row of its document in doc_lexical."""
        if self._doc_rows is None:
            doc_of = self.store.passage_document_rows()
            self._doc_rows = self.doc_lexical.rows_of(doc_of[self.lexical.ids])
        return self._doc_rows

    def _allowed_rows(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None
        rows, found = self.lexical._rows(allowed)
        return np.unique(rows[found])

    def _dense_weight(self, query: str, fusion: FusionConfig) -> float:
        return fusion.weight_for(self.manifest["model"]["name"], detect_language(query))

    def search(self, query: str, k: int = 10, **options: Any) -> list[SearchResult]:
        """The ``k`` best passages for ``query``, best first. Options as in :meth:`search_many`."""
        return self.search_many([query], k, **options)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: str = "hybrid",
        filters: Filters | None = None,
        per_doc: int | None = DEFAULT_PER_DOC,
        fusion: FusionConfig | None = None,
    ) -> list[list[SearchResult]]:
        """The ``k`` best passages for each query.

        ``mode``: ``hybrid`` (default), ``lexical`` or ``dense``. ``filters`` are applied before
        ranking. ``per_doc`` caps passages per document (None: no cap).
        """
        _check_k(k)
        if per_doc is not None and per_doc < 1:
            raise InvalidArgumentError(f"per-doc must be a positive integer, got {per_doc!r}")
        allowed = self.allowed(filters)
        results: list[list[SearchResult]] = []
        for query in queries:
            n = k if per_doc is None else k * 4
            while True:
                ranked = self.rank_passages([query], n, mode=mode, allowed=allowed, fusion=fusion)[0]
                picked = _cap_per_doc(ranked, self.store.passage_document_rows(), per_doc, k)
                exhausted = len(ranked.ids) < n or n >= len(self)
                if len(picked) >= k or exhausted:
                    break
                n *= 4
            results.append(self._results(ranked, picked, mode))
        return results

    def _results(self, ranked: Fused, picked: list[int], mode: str) -> list[SearchResult]:
        rows = self.store.passages([int(ranked.ids[i]) for i in picked])
        out = []
        for i in picked:
            p = rows.get(int(ranked.ids[i]))
            if p is None:
                continue
            components = {name: float(v[i]) for name, v in ranked.components.items()}
            out.append(SearchResult(
                rank=len(out) + 1, score=float(ranked.scores[i]), doc_id=p.doc_id, title=p.title, date=p.date,
                source=p.source, start=p.start, end=p.end, text=p.text, url=p.url, mode=mode, scores=components,
                page=p.page, metadata=p.metadata,
            ))
        return out

    def passage_documents(self) -> dict[int, str]:
        """Passage id -> document id for the whole index."""
        if self._passage_docs is None:
            self._passage_docs = self.store.passage_docs()
        return self._passage_docs


def _cap_per_doc(ranked: Fused, doc_of: np.ndarray, per_doc: int | None, k: int) -> list[int]:
    """Positions in ``ranked`` of the first ``k`` passages, at most ``per_doc`` per document.

    ``doc_of``: the document row of each passage id.
    """
    if per_doc is None:
        return list(range(min(k, len(ranked.ids))))
    counts: dict[int, int] = {}
    picked = []
    for i, pid in enumerate(ranked.ids.tolist()):
        doc = int(doc_of[pid]) if 0 <= pid < doc_of.shape[0] else -1
        if counts.get(doc, 0) < per_doc:
            counts[doc] = counts.get(doc, 0) + 1
            picked.append(i)
            if len(picked) == k:
                break
    return picked


def _top(ids: np.ndarray, values: np.ndarray, n: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (ids, values) with a value above 0, best first, ties by row."""
    candidates = np.flatnonzero(values > 0) if rows is None else rows[values[rows] > 0]
    picked = values[candidates]
    if candidates.size > n:
        keep = np.argpartition(-picked, n - 1)[:n]
        candidates, picked = candidates[keep], picked[keep]
    order = np.lexsort((candidates, -picked))
    return np.asarray(ids[candidates[order]], dtype=np.int64), picked[order].astype(np.float32)


def _from_dense(ids: np.ndarray, scores: np.ndarray) -> Fused:
    keep = ids >= 0
    return Fused(ids[keep], scores[keep], {"dense": scores[keep]})


def _empty() -> Fused:
    return Fused(np.zeros(0, np.int64), np.zeros(0, np.float32), {})


def _check_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgumentError("the query is empty")
    return query


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
