"""An optional re-ranking stage: a cross-encoder re-scores the best passages of a query.

Off by default. ``Index.search(..., rerank="model name or path")`` or ``ragkit search --rerank
MODEL`` loads any sentence-transformers ``CrossEncoder`` the user has (a local folder, or a name
already in the Hugging Face cache: ragkit never downloads), scores (query, passage) pairs for the
top ``rerank_depth`` passages (default 50) and orders them by that score. sentence-transformers
(and torch) are imported only when a reranker is first used, so ``import ragkit`` stays light.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from ragkit.errors import InvalidArgumentError, ModelLoadError

__all__ = ["DEFAULT_DEPTH", "Reranker", "get_reranker"]

DEFAULT_DEPTH = 50
_CACHE: dict[str, Reranker] = {}
_LOCK = threading.Lock()


class Reranker:
    """A sentence-transformers CrossEncoder behind one method, :meth:`score`; loaded on first use."""

    def __init__(self, model: str, *, batch_size: int = 32) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidArgumentError("the rerank model name is empty")
        self.name = model
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Reranker({self.name!r})"

    def _load(self):  # noqa: ANN202
        with self._lock:
            if self._model is None:
                try:
                    from sentence_transformers import CrossEncoder
                except ImportError as exc:
                    raise ModelLoadError("reranking needs sentence-transformers: pip install 'sentence-transformers>=5'") from exc
                try:
                    self._model = CrossEncoder(self.name, device="cpu")
                except (OSError, ValueError, RuntimeError) as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ModelLoadError(f"cannot load cross-encoder {self.name!r}: {first}") from exc
            return self._model

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One relevance score per text (higher is better), as float64."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        model = self._load()
        scores = model.predict([(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False,
                               convert_to_numpy=True)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim == 2:  # a model with several labels: the last one is "relevant"
            scores = scores[:, -1]
        return scores.reshape(-1)


def get_reranker(model: str | Reranker) -> Reranker:
    """A Reranker for ``model``, shared between calls (the model loads once per process)."""
    if isinstance(model, Reranker):
        return model
    with _LOCK:
        if model not in _CACHE:
            _CACHE[model] = Reranker(model)
        return _CACHE[model]


def rerank_order(reranker: Reranker, query: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``texts`` best first by the cross-encoder (ties keep the given order), scores."""
    scores = reranker.score(query, texts)
    order = np.lexsort((np.arange(len(texts)), -scores))
    return order, scores
