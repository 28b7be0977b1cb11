"""What an update takes over from the current generation, and the model as the manifest records it.

Kept documents keep their stored passage spans (no re-chunking), their passage ids
(:func:`passage_ids`), their exact vectors (taken from the current FAISS index) and their BM25
term counts; only new or changed documents are chunked, embedded and analysed.
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
    id_space: int = 0  # the current generation's passage ids run below this (counts.passage_ids)
    language_vectors: list[dict[str, Any]] = field(default_factory=list)  # the current second vector indexes


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


HOLES_SHARE = 0.10  # renumber every passage once removed passages' ids leave this share of the id space unused


def passage_ids(reused: np.ndarray, id_space: int) -> np.ndarray:
    """Each passage's id in the next generation: a kept passage keeps the id it has (``reused``),
    a new one takes the next id never used (from ``id_space`` up). Ids of removed passages stay
    unused; once they would pass :data:`HOLES_SHARE` of the id space, every passage is numbered
    afresh from 0 (a compaction, as a full build does), so arrays indexed by id stay small."""
    ids = np.asarray(reused, dtype=np.int64).copy()
    fresh = ids < 0
    ids[fresh] = max(int(id_space), int(ids.max(initial=-1)) + 1) + np.arange(int(fresh.sum()), dtype=np.int64)
    top = int(ids.max(initial=-1)) + 1
    if top - len(ids) > HOLES_SHARE * top:
        return np.arange(len(ids), dtype=np.int64)
    return ids
