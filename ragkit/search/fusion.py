"""Fusing lexical (BM25) and dense rankings into one.

The default is a convex combination of normalised scores, not reciprocal-rank fusion: RRF gives
a weak retriever an equal vote, and measured on the shared data it lowers BM25's nDCG@10 on
Russian (see README, "Search quality"). BM25 is normalised by the best score of the query's
candidates (its scale varies with the query), cosine similarity by the candidates' min-max.
The dense weight depends on whether the embedding model reads the query's language.
Every default here was chosen by benchmarks/selection.py (leave-one-set-out over the shared
sets, worst margin over plain BM25); the adaptive weight and dense-only-re-scoring are offered
as knobs, off by default, because they did not raise the worst margin there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ragkit.encoders.registry import model_profile
from ragkit.errors import InvalidArgumentError

METHODS = ("convex", "rrf")

# Chosen by benchmarks/selection.py (leave-one-set-out over the six shared sets, worst margin).
DEFAULT_DOC_WEIGHT = 0.7  # hybrid (fusion stage)
DEFAULT_LEXICAL_DOC_WEIGHT = 0.85  # lexical mode (lexical stage)
DEFAULT_ADAPTIVE = 0.0


@dataclass(frozen=True)
class FusionConfig:
    """How hybrid mode mixes BM25 and dense scores.

    ``dense_weight`` is the dense share of a convex combination for queries in a language the
    model reads; ``foreign_dense_weight`` for queries in a language it does not.
    ``doc_weight`` is the share of a passage's lexical score that comes from the BM25 score of
    its whole document (title and text), the rest from the passage's own BM25 score.
    ``adaptive`` makes the dense weight shrink where BM25 is sure of itself: a query whose best
    document's BM25 score stands far above the runner-up's gets ``dense_weight * (s2 / s1) **
    adaptive`` (0 keeps the weight fixed). ``dense_candidates`` lets dense add passages BM25
    did not find; False restricts dense to re-scoring BM25's candidates.
    """

    method: str = "convex"
    dense_weight: float | None = None  # None: the model's measured default (ragkit.encoders.registry)
    foreign_dense_weight: float = 0.0
    rrf_k: int = 60
    candidates: int = 200
    doc_weight: float | None = None  # None: DEFAULT_DOC_WEIGHT in hybrid mode, DEFAULT_LEXICAL_DOC_WEIGHT in lexical
    adaptive: float = DEFAULT_ADAPTIVE
    dense_candidates: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgumentError(f"unknown fusion method {self.method!r} (choose from {', '.join(METHODS)})")
        for name in ("dense_weight", "foreign_dense_weight", "doc_weight"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InvalidArgumentError(f"{name.replace('_', '-')} must be between 0 and 1")
        if not 0.0 <= self.adaptive <= 16.0:
            raise InvalidArgumentError("adaptive must be between 0 and 16")
        if self.rrf_k < 1 or self.candidates < 1:
            raise InvalidArgumentError("rrf-k and candidates must be positive")

    def weight_for(self, model: str, query_language: str) -> float:
        languages, default = model_profile(model)
        reads = languages is None or query_language in languages or query_language == "und"
        if not reads:
            return self.foreign_dense_weight
        return default if self.dense_weight is None else self.dense_weight

    def doc_weight_for(self, mode: str) -> float:
        """The document share of the lexical score in ``mode`` (the protocol chose one per mode)."""
        if self.doc_weight is not None:
            return self.doc_weight
        return DEFAULT_LEXICAL_DOC_WEIGHT if mode == "lexical" else DEFAULT_DOC_WEIGHT

    def query_weight(self, base: float, top_two: tuple[float, float]) -> float:
        """``base`` (from :meth:`weight_for`) scaled by how far BM25's best document leads.

        ``top_two``: the BM25 scores of the query's two best documents (0 where absent).
        """
        s1, s2 = top_two
        if base <= 0.0 or self.adaptive == 0.0 or s1 <= 0.0:
            return base
        return base * (max(0.0, s2) / s1) ** self.adaptive


@dataclass
class Fused:
    ids: np.ndarray
    scores: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)


def fuse(ids: np.ndarray, lexical: np.ndarray, dense: np.ndarray, config: FusionConfig, dense_weight: float) -> Fused:
    """Fuse aligned component scores of candidate ``ids``; returns them best first."""
    if len(ids) == 0:
        return Fused(ids, np.zeros(0, np.float32), {"lexical": lexical, "dense": dense})
    if config.method == "rrf":
        score = _rrf(lexical, config.rrf_k) * (1.0 - dense_weight) + _rrf(dense, config.rrf_k) * dense_weight
    else:
        score = (1.0 - dense_weight) * _max_norm(lexical) + dense_weight * _minmax(dense)
    order = np.lexsort((ids, -score))
    return Fused(ids[order], score[order].astype(np.float32), {"lexical": lexical[order], "dense": dense[order]})


def _max_norm(x: np.ndarray) -> np.ndarray:
    top = float(x.max()) if len(x) else 0.0
    return x / top if top > 0 else np.zeros_like(x)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.ones_like(x)


def _rrf(x: np.ndarray, k: int) -> np.ndarray:
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[np.argsort(-x, kind="stable")] = np.arange(1, len(x) + 1)
    return 1.0 / (k + ranks)
