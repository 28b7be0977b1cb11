"""An index opened for search: manifest + FAISS vectors + SQLite passages (+ the query embedder).

Why this module is long: :class:`Index` is one object users hold (open with its checks and
pinned files, the lazily loaded parts, verify, the search pipeline); its pure ranking helpers
already live in :mod:`ragkit.search.ranking`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.documents import SearchResult
from ragkit.encoders.embedder import Embedder
from ragkit.encoders.registry import same_model
from ragkit.errors import IndexFormatError, InvalidArgumentError, ModelMismatchError, RagkitError
from ragkit.format.checksums import check
from ragkit.ingest.dedup import DuplicateGroups, read_groups
from ragkit.search.rerank import DEFAULT_DEPTH, Reranker, get_reranker
from ragkit.format.manifest import read_manifest
from ragkit.format.pinning import PinnedFiles
from ragkit.lexical.analysis import detect_language
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.search.fusion import Fused, FusionConfig, fuse
from ragkit.search.routes import DenseSide, language_sides, query_embedder, side_fault
from ragkit.search.lexical_topk import DocumentPassages, MatchedScores, ScanScores, mixed_scores
from ragkit.store.filters import Filters
from ragkit.search.ranking import (
    cap_per_doc,
    check_k,
    check_query,
    collapse_groups,
    empty,
    from_dense,
    mix_lexical,
    reranked,
    top_two,
)
from ragkit.store.sqlite import Store
from ragkit.vectors.faiss_index import VectorIndex

MODES = ("hybrid", "lexical", "dense")
DEFAULT_PER_DOC = 3


_BESIDE: tuple[int, Any] | None = None  # (pid, its thread pool)


def _beside() -> Any:  # noqa: ANN401 (a concurrent.futures.ThreadPoolExecutor, imported when first needed)
    """The process's one worker thread for the dense search of hybrid queries (a forked child makes its own)."""
    global _BESIDE
    if _BESIDE is None or _BESIDE[0] != os.getpid():
        from concurrent.futures import ThreadPoolExecutor

        _BESIDE = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="ragkit-dense"))
    return _BESIDE[1]


class Index:
    """A searchable ragkit index. Open with :meth:`open`; build with :func:`ragkit.build_index`."""

    #: Score every passage row for the lexical stage (the exhaustive reference) instead of only
    #: the rows the query matches; both give the same results.
    exhaustive_lexical = False

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
        self._doc_passages: DocumentPassages | None = None
        self._passage_docs: dict[int, str] | None = None
        self._duplicates: tuple[dict[int, int], DuplicateGroups] | None = None

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
        with index._reading():
            check(index._data, files)
        index._store = index._open_store()
        return index

    def _open_store(self) -> Store:
        """The store, opened by its name (SQLite resolves descriptor links, so it cannot read
        through one) and checked to be the very file pinned: SQLite holds it open from here."""
        name = self.manifest["store"]["file"]
        store = Store.open(self.path / name)
        if self._pinned is not None and not self._pinned.same_file(name, self.path / name):
            store.close()
            raise IndexFormatError(f"index {self.path} changed while it was opened: open it again")
        return store

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Errors raised while reading pinned files name the index's files, not descriptors."""
        try:
            yield
        except RagkitError as exc:
            if self._pinned is not None and exc.args and isinstance(exc.args[0], str):
                exc.args = (self._pinned.describe(exc.args[0]), *exc.args[1:])
            raise

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
        with self._reading():
            check(self._data, self.manifest["files"], full=True)
        counts = self.manifest["counts"]
        found = {
            "vectors": self.vectors.live,
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
        if not np.array_equal(ids, np.flatnonzero(self.store.passage_document_rows() >= 0)):
            raise IndexFormatError(f"index {self.path} is inconsistent: lexical ids differ from passage ids")
        stored = self.vectors.ids()
        if np.count_nonzero(stored < 0) != self.vectors.tombstones or not np.array_equal(np.sort(stored[stored >= 0]), ids):
            raise IndexFormatError(f"index {self.path} is inconsistent: vector ids differ from passage ids")
        probe = ids[:: max(1, len(ids) // 64)]
        stored = self.store.passages(probe.tolist())
        if len(stored) != len(probe):
            raise IndexFormatError(f"index {self.path} is inconsistent: vector ids without passages")
        self.vectors.reconstruct(probe)  # raises inside FAISS for ids it does not hold
        for entry, side in zip((self.manifest.get("language_vectors") or {}).get("indexes") or [],
                               self.language_sides()):
            fault = side_fault(side, ids, int(entry["passages"]))
            if fault is not None:
                raise IndexFormatError(f"index {self.path} is inconsistent: {fault}")
            found[f"{side.language} vectors"] = len(side.vectors)
        return {"files": len(self.manifest["files"]), **found}

    @property
    def embedder(self) -> Embedder:
        """The query embedder: the index's ONNX encoder when it has one (no torch), else the model."""
        if self._embedder is None:
            self._embedder = query_embedder(self.manifest["model"], self._data, self.manifest.get("query_encoder"),
                                            self._reading)
        return self._embedder

    @cached_property
    def _sides(self) -> tuple[DenseSide, dict[str, DenseSide]]:
        """The main dense side and, by language, the second ones of a mixed archive (:mod:`ragkit.search.routes`)."""
        m = self.manifest["model"]
        main = DenseSide(m["name"], int(m["dimension"]), lambda: self.vectors, lambda: self.embedder,
                         where=str(self.path))
        return main, language_sides(self.manifest, lambda: self._data, self._reading)

    def language_sides(self) -> list[DenseSide]:
        """A mixed archive's second dense sides, one per minority language (none: [])."""
        return list(self._sides[1].values())

    def dense_side(self, query: str) -> DenseSide:
        """The vectors and embedder ``query`` takes its dense side from: its language's, else the main ones."""
        main, by_language = self._sides
        return by_language.get(detect_language(query), main) if by_language else main

    @cached_property
    def vectors(self) -> VectorIndex:
        v = self.manifest["vectors"]
        with self._reading():
            return VectorIndex.load(self._data / v["file"], v["factory"], int(self.manifest["model"]["dimension"]),
                                    params=v.get("search"), tombstones=int(v.get("tombstones", 0)))

    @property
    def id_space(self) -> int:
        """Passage ids run below this: the passage count, plus removed passages' ids kept unused
        by updates so that the others stay stable (``counts.passage_ids``)."""
        counts = self.manifest["counts"]
        return int(counts.get("passage_ids", counts["passages"]))

    @cached_property
    def lexical(self) -> LexicalIndex:
        return self._load_lexical("dir", 0, self.id_space - 1)

    @cached_property
    def doc_lexical(self) -> LexicalIndex:
        return self._load_lexical("documents_dir", 1, int(self.manifest["counts"]["documents"]))

    def _load_lexical(self, key: str, low: int, high: int) -> LexicalIndex:
        """A BM25 index of this generation whose ids are passage ids (or document rows) in ``low..high``."""
        with self._reading():
            lexical = LexicalIndex.load(self._data / self.manifest["lexical"][key], mmap=True)
        ids = lexical.ids
        if ids.size and (int(ids.min()) < low or int(ids.max()) > high):
            raise IndexFormatError(f"index {self.path} is damaged: {self.manifest['lexical'][key]} has ids outside {low}..{high}")
        return lexical

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self._open_store()
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
        """Query vectors of the main model, cached by text (eval and repeated queries embed once)."""
        return self._sides[0].embed_queries(queries)

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
        queries = [check_query(q) for q in queries]
        if mode not in MODES:
            raise InvalidArgumentError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
        if not queries or (allowed is not None and len(allowed) == 0):
            return [empty() for _ in queries]
        fusion = fusion or FusionConfig()
        sides = [self.dense_side(q) for q in queries]
        weights = [self._dense_weight(q, fusion) if mode == "hybrid" else 0.0 for q in queries]
        qvecs = self._query_vectors_of(queries, sides, [mode == "dense" or w > 0 for w in weights])
        if mode == "dense":
            return self._dense_ranking(queries, sides, qvecs, n, allowed)
        out = []
        depth = max(n, fusion.candidates)
        for qi, query in enumerate(queries):
            side = sides[qi]
            # the dense candidates are searched in a thread while this one scores BM25 (FAISS
            # leaves the GIL): the dense and the lexical stage of one query overlap
            dense_job = (_beside().submit(side.vectors.search, qvecs[qi], depth, allowed)
                         if weights[qi] > 0 and fusion.dense_candidates else None)
            lex = self._lexical_scores(query, fusion.doc_weight_for(mode))
            lex_ids, lex_scores = lex.top(self.lexical.ids, depth, self._allowed_rows(allowed))
            leads = lex.leads if fusion.adaptive else (0.0, 0.0)  # what an adaptive weight reads (a pass over documents)
            weight = fusion.query_weight(weights[qi], leads) if mode == "hybrid" else 0.0
            dense_found = dense_job.result()[1][0] if dense_job is not None else None
            if mode == "lexical" or weight == 0.0 or (not fusion.dense_candidates and lex_ids.size == 0):
                out.append(Fused(lex_ids[:n], lex_scores[:n], {"lexical": lex_scores[:n]}))
                continue
            ids = lex_ids
            if fusion.dense_candidates or lex_ids.size == 0:
                if dense_found is None:
                    dense_found = side.vectors.search(qvecs[qi], depth, allowed)[1][0]
                ids = np.unique(np.concatenate([lex_ids, dense_found[dense_found >= 0]]))
            lexical = lex.at(self.lexical.rows_of(ids))
            dense = side.scores(ids, qvecs[qi])
            fused = fuse(ids, lexical, dense, fusion, weight)
            out.append(Fused(fused.ids[:n], fused.scores[:n], {k: v[:n] for k, v in fused.components.items()}))
        return out

    def _query_vectors_of(self, queries: Sequence[str], sides: list[DenseSide], needed: list[bool]) -> list[Any]:
        """Each query's vector from its dense side's embedder (None where no dense score is needed)."""
        out: list[Any] = [None] * len(queries)
        for side in {id(s): s for s, need in zip(sides, needed) if need}.values():
            at = [i for i, (s, need) in enumerate(zip(sides, needed)) if need and s is side]
            for i, vector in zip(at, side.embed_queries([queries[i] for i in at])):
                out[i] = vector
        return out

    def _dense_ranking(self, queries: Sequence[str], sides: list[DenseSide], qvecs: list[Any], n: int,
                       allowed: np.ndarray | None) -> list[Fused]:
        """Dense mode: each query's passages from its dense side, in batches of one side."""
        out: list[Fused | None] = [None] * len(queries)
        for side in {id(s): s for s in sides}.values():
            at = [i for i, s in enumerate(sides) if s is side]
            scores, ids = side.vectors.search(np.stack([qvecs[i] for i in at]), n, allowed)
            for i, found, score in zip(at, ids, scores):
                out[i] = from_dense(found, score)
        return out  # type: ignore[return-value]

    def _lexical_scores(self, query: str, doc_weight: float) -> MatchedScores | ScanScores:
        """The lexical scores of ``query``: of the rows it matches, or of every row (:attr:`exhaustive_lexical`)."""
        if self.exhaustive_lexical:
            return ScanScores(*self._lexical_vector(query, doc_weight))
        if self._doc_passages is None:
            self._doc_passages = DocumentPassages(self._passage_doc_rows(), len(self.doc_lexical))
        return mixed_scores(query, self.lexical, self.doc_lexical, self._doc_passages, doc_weight)

    def _lexical_vector(self, query: str, doc_weight: float) -> tuple[np.ndarray, tuple[float, float]]:
        """Lexical score of every passage row: its BM25 mixed with its document's BM25.

        ``doc_weight`` is the document's share; 0 gives the passage's plain BM25 score. Also
        returns the BM25 scores of the two best documents (what adaptive fusion reads).
        """
        passage = self.lexical.score_all(query).astype(np.float64)
        by_doc = self.doc_lexical.score_all(query).astype(np.float64)
        return mix_lexical(passage, by_doc, self._passage_doc_rows(), doc_weight), top_two(by_doc)

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
        return fusion.weight_for(self.dense_side(query).model, detect_language(query))

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
        collapse: bool = True,
        rerank: str | Reranker | None = None,
        rerank_depth: int = DEFAULT_DEPTH,
    ) -> list[list[SearchResult]]:
        """The ``k`` best passages for each query.

        ``mode``: ``hybrid`` (default), ``lexical`` or ``dense``. ``filters`` are applied before
        ranking. ``per_doc`` caps passages per document (None: no cap). ``collapse`` shows one
        document of each duplicate group (the best ranked; the others are listed in its
        results' ``duplicates``); False keeps every copy. ``rerank``: a CrossEncoder name or
        path (or a :class:`~ragkit.search.rerank.Reranker`) that re-orders the best
        ``rerank_depth`` passages; None (default) keeps the ranking.
        """
        check_k(k)
        if per_doc is not None and per_doc < 1:
            raise InvalidArgumentError(f"per-doc must be a positive integer, got {per_doc!r}")
        if isinstance(rerank_depth, bool) or not isinstance(rerank_depth, int) or rerank_depth < 1:
            raise InvalidArgumentError(f"rerank-depth must be a positive integer, got {rerank_depth!r}")
        reranker = get_reranker(rerank) if rerank is not None else None
        want = max(k, rerank_depth) if reranker is not None else k
        allowed = self.allowed(filters)
        doc_of = self.store.passage_document_rows()
        groups = self.duplicate_groups() if collapse else None
        results: list[list[SearchResult]] = []
        for query in queries:
            n = want if per_doc is None else want * 4
            while True:
                ranked = self.rank_passages([query], n, mode=mode, allowed=allowed, fusion=fusion)[0]
                exhausted = len(ranked.ids) < n or n >= len(self)  # before collapsing: copies are not the end
                if groups:
                    ranked = collapse_groups(ranked, doc_of, groups[0])
                picked = cap_per_doc(ranked, doc_of, per_doc, want)
                if len(picked) >= want or exhausted:
                    break
                n *= 4
            found = self._results(ranked, picked, mode, doc_of, groups)
            results.append(reranked(reranker, query, found, k) if reranker is not None else found[:k])
        return results

    def duplicate_groups(self) -> tuple[dict[int, int], DuplicateGroups] | None:
        """(document row -> group, the groups) of the index; None for an index built without them."""
        entry = self.manifest.get("duplicates")
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "/" in entry["file"]:
            return None
        if self._duplicates is None:
            with self._reading():
                groups = read_groups(self._data / entry["file"])
            self._duplicates = (groups.group_of(), groups)
        return self._duplicates

    def _results(self, ranked: Fused, picked: list[int], mode: str, doc_of: np.ndarray | None = None,
                 groups: tuple[dict[int, int], DuplicateGroups] | None = None) -> list[SearchResult]:
        rows = self.store.passages([int(ranked.ids[i]) for i in picked])
        out = []
        for i in picked:
            p = rows.get(int(ranked.ids[i]))
            if p is None:
                continue
            components = {name: float(v[i]) for name, v in ranked.components.items()}
            duplicates: list[dict[str, str]] = []
            if groups and doc_of is not None:
                g = groups[0].get(int(doc_of[int(ranked.ids[i])]))
                if g is not None:
                    duplicates = [{"doc_id": d, "source": src} for _, d, src in groups[1].groups[g] if d != p.doc_id]
            out.append(SearchResult(
                rank=len(out) + 1, score=float(ranked.scores[i]), doc_id=p.doc_id, title=p.title, date=p.date,
                source=p.source, start=p.start, end=p.end, text=p.text, url=p.url, mode=mode, scores=components,
                page=p.page, metadata=p.metadata, duplicates=duplicates,
            ))
        return out

    def passage_documents(self) -> dict[int, str]:
        """Passage id -> document id for the whole index."""
        if self._passage_docs is None:
            self._passage_docs = self.store.passage_docs()
        return self._passage_docs
