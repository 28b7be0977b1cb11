"""What an update takes over from the current generation, and the model as the manifest records it.

Kept documents keep their stored passage spans (no re-chunking), their exact vectors (taken
from the current FAISS index) and their BM25 term counts; only new or changed documents are
chunked, embedded and analysed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.documents import Document
from ragkit.encoders.base import TextEmbedder
from ragkit.encoders.embedder import Embedder
from ragkit.encoders.registry import cache_tag, recorded_backend
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.store.sqlite import StoredDocument
from ragkit.vectors.faiss_index import VectorIndex
from ragkit.build.refill import Current


@dataclass
class Kept:
    """What an update takes over from the current generation for the documents it keeps."""

    documents: dict[str, StoredDocument]  # kept documents only, by id
    lexical: LexicalIndex
    doc_lexical: LexicalIndex
    chunker: dict[str, Any]  # the current chunker settings (an update keeps them)
    query_encoder: dict[str, str] | None  # the current ONNX query encoder, reused as it is
    encoder_files: dict[str, Any] = field(default_factory=dict)  # its recorded checksums
    vectors: VectorIndex | None = None  # the current exact vectors (None: take them from the cache)
    current: Current | None = None  # the current vector index and its entry (refilled while little changed)
    duplicates: tuple[np.ndarray, np.ndarray] | None = None  # kept documents' reprint keys, current pairs


class RecordedModel:
    """An index's embedder as its manifest records it, loaded only when it must work.

    An update reads name, dimension, window, prompts and the passage backend from the
    manifest, not from the environment; the model (and its tokenizer) is loaded only to chunk
    or embed new text, so removing documents loads neither. With the index's exported query
    encoder at hand, tokens are counted with its tokenizer and no torch is imported unless
    new passages need the model itself.
    """

    def __init__(self, recorded: dict[str, Any], *, given: TextEmbedder | None = None,
                 query_encoder: Path | None = None) -> None:
        self._given = given
        self._query_encoder = query_encoder
        self._embedder: TextEmbedder | None = given
        self._recorded = dict(recorded)
        self.name: str = recorded["name"]
        self.dimension = int(recorded["dimension"])
        self.max_tokens = int(recorded["max_tokens"])
        self.query_prompt: str = recorded.get("query_prompt") or ""
        self.passage_prompt: str = recorded.get("passage_prompt") or ""
        self.backend = recorded_backend(recorded)

    @property
    def passage_cache_tag(self) -> str:
        return self._given.passage_cache_tag if self._given is not None else cache_tag(self.backend)

    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = Embedder(self.name, query_prompt=self.query_prompt, passage_prompt=self.passage_prompt,
                                      backend=self.backend, query_encoder=self._query_encoder)
        return self._embedder

    def describe(self) -> dict[str, Any]:
        return dict(self._recorded)

    def token_counter(self) -> Any:  # noqa: ANN401
        return self.embedder.token_counter()

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.embedder.embed_queries(queries)

    def embed_passages(self, passages: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.embedder.embed_passages(passages, progress=progress)


def reused_passages(docs: list[Document], spans: list[list[tuple[int, int]]], kept: Kept) -> np.ndarray:
    """For each passage of the new generation, its id in the current one (-1: a new passage)."""
    out: list[int] = []
    for doc, doc_spans in zip(docs, spans):
        stored = kept.documents.get(doc.id)
        if stored is not None:
            out.extend(pid for pid, _, _ in stored.passages)
        else:
            out.extend([-1] * len(doc_spans))
    return np.asarray(out, dtype=np.int64)
