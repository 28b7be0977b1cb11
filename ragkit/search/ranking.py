"""Ranking helpers of the reader: the lexical mix, reprint collapsing, the per-document cap, checks.

Pure functions over arrays of ids and scores; :class:`ragkit.search.index.Index` calls them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ragkit.documents import SearchResult
from ragkit.errors import InvalidArgumentError
from ragkit.search.fusion import Fused
from ragkit.search.rerank import Reranker, rerank_order

_TIE_BREAK = 1e-6  # the passage share that remains at doc_weight 1: orders a document's passages

def mix_lexical(passage: np.ndarray, document: np.ndarray, doc_rows: np.ndarray, doc_weight: float) -> np.ndarray:
    """Each passage's max-normalised BM25 mixed with its document's (``doc_rows``: the document
    row of each passage row); ``doc_weight`` 0 returns the passage scores unchanged. At
    ``doc_weight`` 1 the passage's own score still orders the passages of one document."""
    if doc_weight <= 0.0:
        return passage
    document = document[doc_rows]
    return mix_scores(passage, document, passage.max(initial=0.0), document.max(initial=0.0), doc_weight)


def mix_scores(passage: np.ndarray, document: np.ndarray, p_top: float, d_top: float, doc_weight: float) -> np.ndarray:
    """:func:`mix_lexical` of aligned passage and document scores, given the best of each."""
    mixed = np.zeros_like(passage)
    if p_top > 0:
        mixed += passage_share(doc_weight) * passage / p_top
    if d_top > 0:
        mixed += doc_weight * document / d_top
    return mixed


def passage_share(doc_weight: float) -> float:
    """The share of a passage's own (max-normalised) BM25 in its mixed lexical score."""
    return max(1.0 - doc_weight, _TIE_BREAK)


def top_two(scores: np.ndarray) -> tuple[float, float]:
    """The two largest values of ``scores`` (0 where there are fewer)."""
    if scores.size == 0:
        return 0.0, 0.0
    if scores.size == 1:
        return float(scores[0]), 0.0
    part = np.partition(scores, scores.size - 2)[-2:]
    return float(part[1]), float(part[0])


def collapse_groups(ranked: Fused, doc_of: np.ndarray, group_of: dict[int, int]) -> Fused:
    """``ranked`` without the passages of a duplicate group's documents after its first one."""
    first: dict[int, int] = {}  # group -> its best-ranked document row
    keep = np.ones(len(ranked.ids), dtype=bool)
    for i, pid in enumerate(ranked.ids.tolist()):
        doc = int(doc_of[pid]) if 0 <= pid < doc_of.shape[0] else -1
        g = group_of.get(doc)
        if g is not None and first.setdefault(g, doc) != doc:
            keep[i] = False
    if keep.all():
        return ranked
    return Fused(ranked.ids[keep], ranked.scores[keep], {k: v[keep] for k, v in ranked.components.items()})


def reranked(reranker: Reranker, query: str, found: list[SearchResult], k: int) -> list[SearchResult]:
    """``found`` re-ordered by the cross-encoder, the first ``k``, ranks renumbered."""
    texts = [f"{r.title}\n{r.text}" if r.title and not r.text.startswith(r.title) else r.text for r in found]
    order, scores = rerank_order(reranker, query, texts)
    out = []
    for rank, i in enumerate(order[:k].tolist(), start=1):
        r = found[i]
        out.append(replace(r, rank=rank, score=float(scores[i]), scores={**r.scores, "rerank": float(scores[i])}))
    return out


def cap_per_doc(ranked: Fused, doc_of: np.ndarray, per_doc: int | None, k: int) -> list[int]:
    """Positions in ``ranked`` of the first ``k`` passages, at most ``per_doc`` per document.

    ``doc_of``: the document row of each passage id.
    """
    if per_doc is None:
        return list(range(min(k, len(ranked.ids))))
    counts: dict[int, int] = {}
    picked = []
    for i, pid in enumerate(ranked.ids.tolist()):
        doc = int(doc_of[pid]) if 0 <= pid < doc_of.shape[0] else -1
        if counts.get(doc, 0) < per_doc:
            counts[doc] = counts.get(doc, 0) + 1
            picked.append(i)
            if len(picked) == k:
                break
    return picked


def top(ids: np.ndarray, values: np.ndarray, n: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (ids, values) with a value above 0, best first, ties by row.

    ``values``: one per row; ``rows``: the rows allowed (ascending), None for all of them.
    """
    candidates = np.flatnonzero(values > 0) if rows is None else rows[values[rows] > 0]
    return best(ids, candidates, values[candidates], n)


def best(ids: np.ndarray, rows: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (``ids[rows]``, values) of ascending ``rows`` with a value above 0, best first.

    Equal values go by row, the lower first, also at the cut: of the rows tied with the n-th
    best value, the lowest are kept.
    """
    keep = values > 0
    rows, values = rows[keep], values[keep]
    if n <= 0:
        rows, values = rows[:0], values[:0]
    elif rows.size > n:
        kth = np.partition(values, rows.size - n)[rows.size - n]  # the n-th largest value
        above = np.flatnonzero(values > kth)
        ties = np.flatnonzero(values == kth)[: n - above.size]
        picked = np.concatenate([above, ties])
        rows, values = rows[picked], values[picked]
    order = np.lexsort((rows, -values))
    return np.asarray(ids[rows[order]], dtype=np.int64), values[order].astype(np.float32)


def from_dense(ids: np.ndarray, scores: np.ndarray) -> Fused:
    keep = ids >= 0
    return Fused(ids[keep], scores[keep], {"dense": scores[keep]})


def empty() -> Fused:
    return Fused(np.zeros(0, np.int64), np.zeros(0, np.float32), {})


def check_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgumentError("the query is empty")
    return query


def check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
