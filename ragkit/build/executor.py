"""Where the heavy build stages run: in this process (:class:`LocalExecutor`) or elsewhere.

A build (:func:`ragkit.build.pipeline.build_index`) asks its executor to read the files, cut
passages, embed the passages the cache lacks, count BM25 terms and build the vector index. The local executor is
the in-process path, the stage functions of :mod:`ragkit.build.stages` called over whole
lists. Another executor (:class:`ragkit.build.ray_executor.RayExecutor`) runs the batch
functions of :mod:`ragkit.build.batches` on workers and merges their partial results into the
same index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragkit.build import stages
from ragkit.build.options import BuildOptions
from ragkit.build.reuse import Kept
from ragkit.documents import Document
from ragkit.encoders.embedder import Embedder
from ragkit.ingest.report import LoadReport
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.progress import Progress

Chunked = tuple[list[list[tuple[int, int]]], list[str], list[bool], dict[str, Any]]


class Executor(Protocol):
    """The stages a build hands over; every method returns what the local stage returns."""

    name: str

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
