"""Where a query's dense side comes from: the index's main vectors, or its language's second ones.

A mixed archive may hold a second vector index for a minority language that the main model
does not read (:mod:`ragkit.build.languages`). A query detected to be in that language is
embedded by the second model and scored against the second index; passages outside it (the
other language's) get the lowest dense score among the candidates, which min-max
normalisation turns into 0, the same as the foreign dense weight gave every passage before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.encoders.embedder import Embedder
from ragkit.errors import ModelMismatchError
from ragkit.vectors.faiss_index import VectorIndex

_QUERY_CACHE = 50_000


def query_embedder(model: dict[str, Any], folder: Path, encoder: dict[str, Any] | None,
                   reading: Callable[[], AbstractContextManager[None]]) -> Embedder:
    """The query embedder of a recorded model: its exported ONNX encoder in ``folder`` when it
    has one (no torch), else the model itself (``RAGKIT_QUERY_ENCODER=torch``: always)."""
    from ragkit.encoders.registry import use_query_export

    if not (encoder and use_query_export()):
        return Embedder(model["name"], query_prompt=model.get("query_prompt"),
                        passage_prompt=model.get("passage_prompt"))
    with reading():  # a pinned encoder is read into memory from its descriptors
        embedder = Embedder(model["name"], query_prompt=model.get("query_prompt", ""),
                            passage_prompt=model.get("passage_prompt", ""), query_encoder=folder / encoder["dir"])
        embedder.query_encoder()
    return embedder


class DenseSide:
    """One vector index a query can take its dense scores from, and how its queries are embedded.

    ``complete``: the index holds every passage (the main one); a language's holds only its own.
    """

    def __init__(self, model: str, dimension: int, load: Callable[[], VectorIndex], embedder: Callable[[], Embedder],
                 *, language: str | None = None, complete: bool = True, where: str = "") -> None:
        self.model = model
        self.language = language
        self.complete = complete
        self._dimension = dimension
        self._load = load
        self._embedder = embedder
        self._where = where
        self._query_vectors: dict[str, np.ndarray] = {}

    @cached_property
    def vectors(self) -> VectorIndex:
        return self._load()

    @cached_property
    def embedder(self) -> Embedder:
        return self._embedder()

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Query vectors, cached by text (eval and repeated queries embed once)."""
        missing = [q for q in dict.fromkeys(queries) if q not in self._query_vectors]
        if missing:
            embedder = self.embedder
            vectors = embedder.embed_queries(missing)
            if vectors.shape[1] != self._dimension:
                raise ModelMismatchError.dimensions(embedder.name, vectors.shape[1], self._where, self._dimension)
            if len(self._query_vectors) + len(missing) > _QUERY_CACHE:
                self._query_vectors.clear()
            self._query_vectors.update(zip(missing, vectors))
        return np.stack([self._query_vectors[q] for q in queries])

    def scores(self, ids: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``query`` with each candidate; candidates this index lacks get the lowest one."""
        if self.complete:
            return (self.vectors.reconstruct(ids) @ query).astype(np.float64)
        present = self.vectors.holds(ids)
        out = np.zeros(len(ids), dtype=np.float64)
        if present.any():
            out[present] = self.vectors.reconstruct(ids[present]) @ query
            out[~present] = out[present].min()
        return out


def language_sides(manifest: dict[str, Any], folder: Callable[[], Path],
                   reading: Callable[[], AbstractContextManager[None]]) -> dict[str, DenseSide]:
    """Language -> the second dense side of an index's ``language_vectors`` (none: {})."""
    out: dict[str, DenseSide] = {}
    for entry in (manifest.get("language_vectors") or {}).get("indexes") or []:
        model = entry["model"]

        def load(entry: dict[str, Any] = entry) -> VectorIndex:
            with reading():
                return VectorIndex.load(folder() / entry["file"], entry["factory"], int(entry["model"]["dimension"]),
                                        params=entry.get("search"))

        def embedder(entry: dict[str, Any] = entry) -> Embedder:
            return query_embedder(entry["model"], folder(), entry.get("query_encoder"), reading)

        out[entry["language"]] = DenseSide(model["name"], int(model["dimension"]), load, embedder,
                                           language=entry["language"], complete=False, where=entry["file"])
    return out


def side_fault(side: DenseSide, passage_ids: np.ndarray, expected: int) -> str | None:
    """What is wrong with a language's vector index against the index's passage ids (for ``Index.verify``)."""
    stored = side.vectors.ids()
    if len(stored) != expected:
        return f"{len(stored)} {side.language} vectors, manifest says {expected}"
    if not np.isin(stored, passage_ids).all():
        return f"{side.language} vector ids without passages"
    return None
