"""A build as a stream: the corpus in units, the driver holding one unit at a time.

The corpus is cut into units (:mod:`ragkit.build.units`: a few files, or a line range of one
big JSONL file; or a run of the Document objects given). The executor runs each unit where it
runs (:func:`ragkit.build.batches.run_unit`: read, cut into passages, count BM25 terms, hash for
reprints, embed what the cache lacks) and hands the results back in corpus order. The driver
(:class:`_Sink`) writes each result as it comes and lets it go: the documents and passage
rows into the new store, the term counts into on-disk runs (:class:`ragkit.lexical.spill.SpilledCounts`),
the vectors into a scratch file and the embedding cache. What it keeps grows by a few numbers
a passage or document: a passage's document row (4 bytes) and BM25 length (8), a document's
passage count (4), reprint keys (17 x 8 bytes) and language; and the BM25 vocabulary.

Once every unit is in, the BM25 folders are written from the runs a range of terms at a time,
the reprint groups from the keys (their texts read back from the store only for the pairs to
confirm), and the vector index from the scratch file, mapped (:func:`ragkit.build.stages.write_vectors`;
its tuning reads its snippets from the store). The FAISS index itself is in memory while it is
built, as it is while it is searched; choose ``ivf-sq8`` or PQ codes where float32 vectors do not fit.

Passage ids are positions in corpus order and every merge is in unit order, so the index is the
one a single pass over the corpus gives, whatever the units and wherever they ran.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.build import batches, stages
from ragkit.build.batches import UnitResult, UnitWork
from ragkit.build.generation import Written, commit_generation, names_of
from ragkit.build.options import BuildOptions, BuildResult
from ragkit.build.units import Piece, load_piece, plan_units
from ragkit.documents import Document
from ragkit.encoders.cache import CACHE_NAME, EmbeddingCache
from ragkit.errors import EmptyCorpusError, InvalidArgumentError, ModelMismatchError
from ragkit.format.layout import next_generation
from ragkit.ingest.loaders import LoadReport, MergedStream, planned_files
from ragkit.ingest.report import display_path
from ragkit.lexical.spill import SpilledCounts
from ragkit.progress import Progress
from ragkit.store.sqlite import Store

_RUN_ENTRIES = 1 << 22  # BM25 entries held before a run goes to disk (12 bytes each)
_BLOCK_ENTRIES = 1 << 20  # and written at once per range of terms (~30 bytes each while written)
_SAMPLE = 500  # documents read to choose the default model


@dataclass
class Corpus:
    """What a build reads: its units in order, the report of what loading saw, the paths as the
    manifest records them, and whether the units are Document objects rather than file pieces."""

    units: list[list[Piece]] | list[list[Document]]
    report: LoadReport = field(default_factory=LoadReport)
    paths: list[str] = field(default_factory=list)
    documents: bool = False


def plan(sources: Sequence[str | os.PathLike[str]] | Sequence[Document], sizes: dict[str, int]) -> Corpus:
    """The units of ``sources`` (paths, or Document objects), cut by an executor's ``sizes``:
    ``plan_units``' ``largest``, ``parts``, ``files`` and ``smallest`` for files, ``documents``
    for Document objects (a unit holds at most that many)."""
    items = list(sources)
    if items and all(isinstance(x, Document) for x in items):
        seen: set[str] = set()
        for d in items:
            if d.id in seen:
                raise InvalidArgumentError(f"duplicate document id {d.id!r}")
            seen.add(d.id)
        step = max(1, int(sizes.get("documents", 1024)))
        report = LoadReport()
        report.documents = len(items)
        return Corpus([items[lo:lo + step] for lo in range(0, len(items), step)], report,  # type: ignore[misc]
                      documents=True)
    if any(isinstance(x, Document) for x in items):
        raise InvalidArgumentError("give either paths or Document objects, not both")
    paths = [str(Path(p).resolve()) for p in items]  # type: ignore[arg-type]
    report = LoadReport()
    planned = planned_files(paths, report)
    units = plan_units(planned, sizes["largest"], files=sizes["files"], smallest=sizes["smallest"],
                       parts=sizes["parts"])
    return Corpus(units, report, [display_path(p) for p in paths])


def sample(corpus: Corpus, n: int = _SAMPLE) -> list[Document]:
    """About ``n`` documents spread over the corpus (read here), to choose its default model by."""
    if corpus.documents:
        docs = [d for unit in corpus.units for d in unit]  # type: ignore[misc]
        return docs[:: max(1, len(docs) // n)]
    pieces = [p for unit in corpus.units for p in unit]  # type: ignore[misc]
    picked: list[Document] = []
    order = np.unique(np.linspace(0, len(pieces) - 1, num=min(len(pieces), 16)).astype(int)) if pieces else []
    for i in order:
        picked.extend(doc for _, doc in load_piece(pieces[int(i)]).documents)  # type: ignore[arg-type]
        if len(picked) >= n:
            break
    return picked[:: max(1, len(picked) // n)]


def write(root: Path, corpus: Corpus, embedder: Any, options: BuildOptions, progress: Progress,  # noqa: ANN401
          executor: Any, sources: dict[str, Any]) -> BuildResult:  # noqa: ANN401
    """Build ``corpus`` into the next generation of ``root`` and commit it (the caller holds the lock)."""
    started = time.perf_counter()
    generation = next_generation(root)
    names = names_of(generation)
    scratch = root / f".stream-{generation:06d}.tmp-{os.getpid()}"
    scratch.mkdir()
    try:
        sink = _Sink(root, names, embedder, options, progress, corpus, scratch)
        try:
            progress.start("Reading and embedding", len(corpus.units))
            executor.stream(corpus.units, embedder, sink.work, lambda seq, result: sink.take(corpus.units[seq], result))
            progress.finish()
            written = sink.finish(generation, executor, started)
        finally:
            sink.close()
        commit_generation(root, generation, names, embedder, options, written, sources)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress.finish()
    return BuildResult(root, sink.documents, sink.passages, embedded=sink.embedded)


class _Sink:
    """The driver's side of a streamed build: takes each unit's result in order and writes it."""

    def __init__(self, root: Path, names: dict[str, str], embedder: Any, options: BuildOptions,  # noqa: ANN401
                 progress: Progress, corpus: Corpus, scratch: Path) -> None:
        self.root, self.names, self.embedder, self.options, self.progress = root, names, embedder, options, progress
        self.corpus = corpus
        self.dimension = int(embedder.dimension)
        self.store = Store.create(root / names["store"])
        self.cache = EmbeddingCache(root / CACHE_NAME, embedder.name, self.dimension, embedder.passage_prompt,
                                    stages.passage_cache_tag(embedder))
        self.passage_counts = SpilledCounts(scratch, run_entries=_RUN_ENTRIES)
        self.document_counts = SpilledCounts(scratch, run_entries=_RUN_ENTRIES)
        self.vectors_path = scratch / "vectors.f32"
        self._vectors = open(self.vectors_path, "wb")  # noqa: SIM115 - closed in finish/close
        self.merge = MergedStream(corpus.report) if not corpus.documents else None
        self.doc_of: list[np.ndarray] = []  # each unit's passages' document rows
        self.per_document: list[np.ndarray] = []  # each unit's passages per document
        self.keys: list[np.ndarray] = []  # each unit's reprint keys
        self.languages: list[str] = []
        self.settings: dict[str, Any] | None = None
        self.documents = self.passages = self.embedded = 0
        self._t0 = time.perf_counter()
        self._detail: Callable[[str], None] | None = getattr(progress, "detail", None)
        held = self.cache.held()  # what the embedding cache holds, for the workers (None: nothing)
        self.work = UnitWork(options, held if len(held.heads) else None, languages=options.language_vectors)

    # -- each unit ---------------------------------------------------------------------------------
    def take(self, unit: list[Piece] | list[Document], result: UnitResult) -> None:
        docs, result = self._accepted(unit, result)
        part = result.part
        counts = np.fromiter((len(s) for s in part.spans), dtype=np.int64, count=len(part.spans))
        n = int(counts.sum())
        doc_rows = np.asarray(self.store.add_documents(docs, part.prefixed), dtype=np.int64)
        ids = range(self.passages, self.passages + n)
        self.store.insert_passages((pid, row, s, e) for pid, (row, (s, e)) in
                                   zip(ids, ((r, span) for r, spans in zip(doc_rows.tolist(), part.spans)
                                             for span in spans)))
        self.doc_of.append(np.repeat(doc_rows, counts).astype(np.int32))
        self.per_document.append(counts.astype(np.int32))
        self.passage_counts.add(part.passages)
        self.document_counts.add(part.documents)
        self._vectors.write(self._unit_vectors(docs, result).tobytes())
        self.keys.append(result.keys)
        self.languages.extend(result.languages)
        if self.settings is None and n:
            self.settings = part.settings
        self.documents += len(docs)
        self.passages += n
        self.progress.advance()
        if self._detail is not None:
            seconds = max(1e-9, time.perf_counter() - self._t0)
            self._detail(f"{self.documents:,} documents ({self.documents / seconds:,.0f}/s), {self.passages:,} passages "
                         f"({self.passages / seconds:,.0f}/s), {self.embedded:,} embedded ({self.embedded / seconds:,.0f}/s)")

    def _accepted(self, unit: list[Piece] | list[Document], result: UnitResult) -> tuple[list[Document], UnitResult]:
        """The unit's documents that pass the duplicate-id pass, and its result narrowed to them.

        A piece the worker's machine did not see is read here, and the unit's work redone here.
        """
        if self.merge is None:  # Document objects: checked for duplicate ids when planned
            return list(unit), result  # type: ignore[arg-type]
        loads = result.loads
        if any(load is None for load in loads):
            loads = [load if load is not None else load_piece(piece) for piece, load in zip(unit, loads)]  # type: ignore[arg-type]
            docs_all = [doc for load in loads for _, doc in load.documents]  # type: ignore[union-attr]
            result = UnitResult(loads, *batches.unit_work(docs_all, self.embedder, self.work))
        docs_all, kept = [], set()
        for piece, load in zip(unit, loads):
            docs_all.extend(doc for _, doc in load.documents)  # type: ignore[union-attr]
            kept.update(map(id, self.merge.take(piece.skips_before, load)))  # type: ignore[union-attr,arg-type]
        keep = [id(d) in kept for d in docs_all]
        if all(keep):
            return docs_all, result
        return [d for d, k in zip(docs_all, keep) if k], batches.narrowed(result, docs_all, keep)

    def _unit_vectors(self, docs: list[Document], result: UnitResult) -> np.ndarray:
        """The unit's passage vectors: the workers', and the cache's for the rest (the cache gets
        the new ones). A passage the workers took for cached but the cache lacks is embedded here."""
        texts = stages.passage_texts(docs, result.part.spans, result.part.prefixed)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        if result.vectors.shape[1:] != (self.dimension,):
            raise ModelMismatchError.dimensions(self.embedder.name, result.vectors.shape[-1], self.root, self.dimension)
        vectors[result.embedded] = result.vectors
        fresh = np.zeros(len(texts), dtype=bool)
        fresh[result.embedded] = True
        keys = self.cache.keys(texts)
        lacking = self.cache.fill(keys, np.flatnonzero(~fresh).tolist(), vectors)
        if lacking:
            vectors[lacking] = self.embedder.embed_passages([texts[i] for i in lacking])
            fresh[lacking] = True
        new = np.flatnonzero(fresh)
        if new.size:
            self.cache.put([keys[i] for i in new], vectors[new])
        self.embedded += int(new.size)
        return vectors

    # -- once every unit is in --------------------------------------------------------------------
    def finish(self, generation: int, executor: Any, started: float) -> Written:  # noqa: ANN401
        """Write the store's last parts, BM25, the reprint groups and the vector indexes."""
        if self.merge is not None:
            self.merge.finish()
        if not self.documents:
            report = self.corpus.report
            detail = f" ({report.summary(reasons=3)})" if report.files or report.skipped else ""
            raise EmptyCorpusError(f"nothing to index: no readable document with text{detail}")
        self._vectors.close()
        self.progress.start("Writing", None)
        self.store.put_document_rows(np.concatenate(self.doc_of))
        self.doc_of = []
        duplicates = self._duplicates(generation)
        self.store.commit()
        self.store.close()
        ids = np.arange(self.passages, dtype=np.int64)
        reader = Store.open(self.root / self.names["store"])
        try:
            texts = StoredTexts(reader, self.passages)
            with ThreadPoolExecutor(1, thread_name_prefix="ragkit-bm25") as beside:  # BM25 beside the vectors
                lexical = beside.submit(self._lexical)
                vectors = np.memmap(self.vectors_path, dtype=np.float32, mode="r", shape=(self.passages, self.dimension))
                entry = stages.vector_entry(self.root / self.names["vectors"], ids, vectors, None, 0, self.options,
                                            self.progress, texts, self.embedder, executor.write_vectors, started)
                second: tuple[list[dict[str, Any]], list[str]] = ([], [])
                if self.options.language_vectors:
                    from ragkit.build import languages

                    entries, files, _ = languages.write(
                        self.root, generation, self.languages, np.concatenate(self.per_document), texts, ids,
                        self.embedder.name, self.options, self.progress,
                        lambda batch, model, advance: executor.embed_passages(batch, model, advance),
                        executor.write_vectors)
                    second = (entries, files)
                config = lexical.result()
        finally:
            reader.close()
        counts = {"documents": self.documents, "passages": self.passages, "passage_ids": self.passages}
        return Written(self.settings or {}, entry, config, counts, duplicates, *second)

    def _lexical(self) -> dict[str, Any]:
        """Both BM25 folders, written from the spilled counts; the passage index's config."""
        config = self.passage_counts.write(self.root / self.names["lexical"], np.arange(self.passages, dtype=np.int64),
                                           block_entries=_BLOCK_ENTRIES)
        self.document_counts.write(self.root / self.names["doclexical"],
                                   np.arange(1, self.documents + 1, dtype=np.int64), block_entries=_BLOCK_ENTRIES)
        return config

    def _duplicates(self, generation: int) -> dict[str, Any]:
        from ragkit.ingest.dedup import write_for_keys

        self.names["duplicates"] = f"duplicates-{generation:06d}.json"
        store = self.store

        def member(i: int) -> tuple[int, str, str]:
            doc = store.documents_at([i + 1])[0]
            return i + 1, doc.id, doc.source

        keys = np.concatenate(self.keys)
        self.keys = []
        return write_for_keys(self.root / self.names["duplicates"], keys, _Bodies(store, self.documents), member, store)

    def close(self) -> None:
        self._vectors.close()
        self.cache.close()
        self.passage_counts.close()
        self.document_counts.close()
        try:
            self.store.close()
        except Exception:  # noqa: BLE001 - closed already
            pass


class StoredTexts(Sequence[str]):
    """The texts a build embedded for passages 0..n-1, read from its store when asked (``take``
    reads many in one go), so the vector stage never holds the corpus's text."""

    def __init__(self, store: Store, n: int) -> None:
        self._store, self._n = store, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # noqa: ANN001, ANN204 - an index or a slice, as a Sequence takes
        if isinstance(i, slice):
            return self.take(range(*i.indices(self._n)))
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._store.embedded_texts([i % self._n])[0]

    def take(self, rows: Iterable[int]) -> list[str]:
        return self._store.embedded_texts([int(r) for r in rows])


class _Bodies(Sequence[str]):
    """What reprint detection reads of documents 0..n-1 (store rows 1..n), when it asks."""

    def __init__(self, store: Store, n: int) -> None:
        self._store, self._n = store, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # noqa: ANN001, ANN204
        from ragkit.ingest.dedup import body

        if isinstance(i, slice):
            return [body(d) for d in self._store.documents_at([r + 1 for r in range(*i.indices(self._n))])]
        return body(self._store.documents_at([int(i) + 1])[0])
