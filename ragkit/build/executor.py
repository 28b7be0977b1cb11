"""Where the heavy build stages run: in this process (:class:`LocalExecutor`) or elsewhere.

A build (:func:`ragkit.build.pipeline.build_index`) hands its executor the corpus in units
(:meth:`Executor.stream`): each is read, cut into passages, counted for BM25, hashed for
reprints and embedded where the cache lacks it (:func:`ragkit.build.batches.run_unit`), and
the results come back in corpus order to the driver (:mod:`ragkit.build.stream`). It then asks
for the vector index (:meth:`Executor.write_vectors`). An update asks for the stages one by one
over whole lists (load, chunk, embed, lexical). The local executor runs everything in this
process; another (:class:`ragkit.build.ray_executor.RayExecutor`) runs the batch functions of
:mod:`ragkit.build.batches` on workers and merges their partial results into the same index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragkit.build import stages
from ragkit.build.batches import UnitResult, UnitWork, run_unit
from ragkit.build.options import BuildOptions
from ragkit.build.reuse import Kept
from ragkit.documents import Document
from ragkit.encoders.embedder import Embedder
from ragkit.ingest.report import LoadReport
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.progress import Progress

_LOCAL_UNIT_BYTES = 8 << 20  # of files a local unit reads (a few thousand news articles)

Chunked = tuple[list[list[tuple[int, int]]], list[str], list[bool], dict[str, Any]]


class Executor(Protocol):
    """The stages a build hands over; every method returns what the local stage returns."""

    name: str

    def unit_sizes(self) -> dict[str, int]:
        """How a build cuts its corpus into units: ``ragkit.build.units.plan_units``' ``largest``,
        ``files``, ``smallest`` and ``parts``, and ``documents`` (Document objects a unit)."""
        ...

    def stream(self, units: list[Any], embedder: Embedder, work: UnitWork,
               take: Callable[[int, UnitResult], None]) -> None:
        """Run :func:`ragkit.build.batches.run_unit` over ``units``; ``take(i, result)`` gets unit
        ``i``'s result, in unit order."""
        ...

    def load(self, paths: list[str], report: LoadReport, progress: Progress) -> list[Document]: ...

    def chunk(self, docs: list[Document], embedder: Embedder, options: BuildOptions, progress: Progress,
              kept: Kept | None) -> Chunked: ...

    def embed_passages(self, texts: Sequence[str], embedder: Embedder,
                       progress: Callable[[int], None] | None = None) -> np.ndarray: ...

    def lexical(self, docs: list[Document], texts: list[str], ids: np.ndarray, doc_rows: list[int], kept: Kept | None,
                reused: np.ndarray | None) -> tuple[LexicalIndex, LexicalIndex]: ...

    def write_vectors(self, path: Path, ids: np.ndarray, vectors: np.ndarray, options: BuildOptions,
                      progress: Progress, texts: Sequence[str], embedder: Embedder) -> dict[str, Any]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """The in-process build: each stage over the whole corpus, as ragkit always ran it."""

    name = "local"

    def unit_sizes(self) -> dict[str, int]:
        # Units here only bound what the process holds at once: large, so that each embedding
        # call sorts thousands of passages by length (less padding) and the stage overhead vanishes.
        return {"largest": _LOCAL_UNIT_BYTES, "files": 4096, "smallest": _LOCAL_UNIT_BYTES, "parts": 1,
                "documents": 4096}

    def stream(self, units: list[Any], embedder: Embedder, work: UnitWork,
               take: Callable[[int, UnitResult], None]) -> None:
        for i, unit in enumerate(units):
            take(i, run_unit(unit, embedder, work))

    def load(self, paths: list[str], report: LoadReport, progress: Progress) -> list[Document]:
        return stages.load_here(paths, report, progress)

    def chunk(self, docs: list[Document], embedder: Embedder, options: BuildOptions, progress: Progress,
              kept: Kept | None) -> Chunked:
        return stages.chunk(docs, embedder, options, progress, kept)

    def embed_passages(self, texts: Sequence[str], embedder: Embedder,
                       progress: Callable[[int], None] | None = None) -> np.ndarray:
        return embedder.embed_passages(texts, progress=progress)

    def lexical(self, docs: list[Document], texts: list[str], ids: np.ndarray, doc_rows: list[int], kept: Kept | None,
                reused: np.ndarray | None) -> tuple[LexicalIndex, LexicalIndex]:
        return stages.lexical(docs, texts, ids, doc_rows, kept, reused)

    def write_vectors(self, path: Path, ids: np.ndarray, vectors: np.ndarray, options: BuildOptions,
                      progress: Progress, texts: Sequence[str], embedder: Embedder) -> dict[str, Any]:
        return stages.write_vectors(path, ids, vectors, options, progress, texts, embedder)

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
