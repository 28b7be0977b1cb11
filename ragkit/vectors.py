"""Dense vectors: L2 normalisation (cosine is defined here, once) and the FAISS index wrapper.

Every vector ragkit stores or searches is L2-normalised, so inner product == cosine similarity.
Index types come from FAISS factory strings (``"Flat"``, ``"HNSW32"``, ``"IVF1024,PQ32"``...);
ids are ragkit passage ids kept by an ``IDMap2`` wrapper, so removal can come later.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import IndexFormatError, InvalidArgumentError

if TYPE_CHECKING:
    import faiss

# At d = 384 faiss 1.15 only switches to BLAS above ~334 queries per call with its default
# threshold (128000 / d ... measured 4-5x slower batch-100 exact search); 20 keeps small
# batches on the direct path and real batches on BLAS.
_BLAS_THRESHOLD = 20


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Return float32 row vectors scaled to unit length (zero rows stay zero)."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def _faiss():  # noqa: ANN202 - the module itself
    import faiss

    faiss.cvar.distance_compute_blas_threshold = _BLAS_THRESHOLD
    return faiss


class VectorIndex:
    """A FAISS index of unit vectors searched by inner product, keyed by int64 passage ids."""

    def __init__(self, index: faiss.Index, factory: str) -> None:
        self._index = index
        self.factory = factory

    @classmethod
    def create(cls, dimension: int, factory: str = "Flat") -> VectorIndex:
        faiss = _faiss()
        spec = factory if factory.upper().startswith("IDMAP") else f"IDMap2,{factory}"
        try:
            index = faiss.index_factory(int(dimension), spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise InvalidArgumentError(f"invalid FAISS factory string {factory!r}") from exc
        return cls(index, factory)

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dimension:
            raise InvalidArgumentError(f"expected vectors of dimension {self.dimension}, got {x.shape}")
        if not self._index.is_trained:
            self._index.train(x)
        self._index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each of shape (n_queries, k); missing hits have id -1.

        ``allowed`` restricts the search to these ids inside FAISS (a filter applied before
        ranking, so ``k`` hits come back whenever ``k`` allowed vectors exist).
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        k = max(1, min(int(k), len(self))) if len(self) else 1
        if allowed is None:
            return self._index.search(q, k)
        faiss = _faiss()
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        return self._index.search(q, k, params=faiss.SearchParameters(sel=selector))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids (exact for Flat, approximate for quantised types)."""
        return self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def save(self, path: str | Path) -> None:
        faiss = _faiss()
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str | Path, factory: str, dimension: int) -> VectorIndex:
        faiss = _faiss()
        p = Path(path)
        if not p.is_file() or p.stat().st_size < 16:
            raise IndexFormatError(f"vector file {p} is missing or truncated")
        try:
            index = faiss.read_index(str(p))
        except RuntimeError as exc:
            raise IndexFormatError(f"cannot read vector file {p}: {str(exc).splitlines()[0]}") from exc
        if int(index.d) != int(dimension):
            raise IndexFormatError(f"vector file {p} has dimension {index.d}, manifest says {dimension}")
        return cls(index, factory)
