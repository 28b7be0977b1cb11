"""The lexical stage of a query at the cost of its postings, not of the collection.

:meth:`ragkit.search.index.Index._lexical_vector` (the exhaustive reference) mixes every
passage row's BM25 with its document's and ranks them all. :func:`mixed_scores` keeps the
query's two BM25 vectors (``score_all``'s scatter of the postings) and the rows with a posting
(a sort of the postings), and computes a row's mixed score only when asked, by the same
expressions (:func:`ragkit.search.ranking.mix_scores`) with the same two maxima, so each score
is the same float as in the exhaustive vector. :meth:`MatchedScores.top` scores the passages of
the best documents first; their n-th best score bounds what the others must reach, and the
documents (passages) whose highest possible score is below it are never scored. The top passages,
their order, scores and ties (:func:`ragkit.search.ranking.best`) are those of the exhaustive
path; tests/test_lexical_topk.py checks it, benchmarks/lexical_bench.py measures it. The
document -> passages map (:class:`DocumentPassages`) is built once per index.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ragkit.lexical.bm25 import LexicalIndex, distinct_sorted
from ragkit.search.ranking import best, mix_scores, passage_share, top, top_two

__all__ = ["DocumentPassages", "MatchedScores", "ScanScores", "mixed_scores"]


class DocumentPassages:
    """The passage rows of each document row (CSR), from ``doc_rows``, the document row of each passage row."""

    def __init__(self, doc_rows: np.ndarray, n_docs: int) -> None:
        doc_rows = np.asarray(doc_rows, dtype=np.int64)
        self.doc_rows = doc_rows
        self.rows = np.argsort(doc_rows, kind="stable")  # grouped by document, ascending within one
        self.indptr = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(np.bincount(doc_rows, minlength=n_docs), out=self.indptr[1:])

    def of(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(passage rows of ``docs``, one document after the other; how many each document has)."""
        starts = self.indptr[docs]
        counts = self.indptr[docs + 1] - starts
        # position of each member: its document's start + its rank within the document
        first = np.cumsum(counts) - counts
        positions = np.repeat(starts - first, counts) + np.arange(int(counts.sum()), dtype=np.int64)
        return self.rows[positions], counts


class MatchedScores:
    """Lexical scores of one query, computed only for the rows asked (:meth:`at`) or needed (:meth:`top`).

    Holds the query's BM25 over passages and documents (``score_all``'s vectors, the rows
    with a posting) and the two maxima the mix divides by, so a row's score is the same float
    as in the exhaustive vector, whichever other rows are computed.
    """

    #: documents whose passages :meth:`top` scores first, to learn a bound (more for large n)
    first_batch = 64

    def __init__(self, passage: np.ndarray, p_rows: np.ndarray, by_doc: np.ndarray, docs: np.ndarray,
                 doc_passages: DocumentPassages, doc_weight: float) -> None:
        self._passage, self._p_rows, self._by_doc, self._docs = passage, p_rows, by_doc, docs
        self._map, self._weight = doc_passages, doc_weight
        # the maxima mix_lexical takes over every row (the others score 0); documents without passages do not count
        self._p_top = float(passage[p_rows].max(initial=0.0))
        indptr = doc_passages.indptr
        self._d_top = float(by_doc[docs[indptr[docs + 1] > indptr[docs]]].max(initial=0.0))

    @cached_property
    def leads(self) -> tuple[float, float]:
        """The BM25 scores of the two best documents (what adaptive fusion reads), as top_two over every document."""
        matched = self._by_doc[self._docs].astype(np.float64)
        return top_two(np.concatenate([matched, np.zeros(min(2, self._by_doc.size - self._docs.size))]))

    def at(self, rows: np.ndarray) -> np.ndarray:
        """The scores (float64) of any passage ``rows``: 0 for the rows the query does not match."""
        rows = np.asarray(rows, dtype=np.int64)
        own = self._passage[rows].astype(np.float64)
        if self._weight <= 0.0:
            return own
        document = self._by_doc[self._map.doc_rows[rows]].astype(np.float64)
        return mix_scores(own, document, self._p_top, self._d_top, self._weight)

    def matched_rows(self) -> np.ndarray:
        """Every row that can score above 0, ascending: with a posting, or of a document with one."""
        if self._weight <= 0.0 or self._d_top <= 0.0:
            return self._p_rows
        return distinct_sorted(np.concatenate([self._p_rows, self._map.of(self._docs)[0]]))

    def top(self, ids: np.ndarray, n: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """As :func:`ragkit.search.ranking.top` over every row; ``allowed_rows`` ascending or None."""
        rows = self._candidates(n, allowed_rows)
        if allowed_rows is not None:
            rows = rows[_member(rows, allowed_rows)]
        return best(ids, rows, self.at(rows), n)

    def _candidates(self, n: int, allowed_rows: np.ndarray | None) -> np.ndarray:
        """Rows that hold the ``n`` best: every matched row but those that score below a bound.

        The passages of the best-scored documents give the bound: the n-th best of their scores,
        a lower bound of the n-th best overall. A passage scores at most ``share + weight *
        d / d_top`` (its own BM25 is at most the best one), ``share`` for one of a document
        without a match; documents (and such passages) below the bound are left out. Ties at
        the n-th best are all kept, so :func:`best` settles them as over every row.
        """
        weight, docs = self._weight, self._docs
        if n <= 0 or weight <= 0.0 or self._d_top <= 0.0:
            return self._p_rows
        d = self._by_doc[docs].astype(np.float64)
        batch = max(n, self.first_batch)
        while batch < docs.size:
            rows = self._map.of(docs[np.argpartition(-d, batch - 1)[:batch]])[0]
            if allowed_rows is not None:
                rows = rows[_member(rows, allowed_rows)]
            values = self.at(rows)
            values = values[values > 0]
            if values.size >= n:
                bound = np.partition(values, values.size - n)[values.size - n] * (1.0 - 1e-9)  # below rounding
                break
            batch *= 8
        else:
            return self.matched_rows()
        share = passage_share(weight) if self._p_top > 0 else 0.0
        rows = self._map.of(docs[share + weight * d / self._d_top >= bound])[0]
        if share >= bound:
            rows = np.concatenate([rows, self._p_rows])
        return distinct_sorted(rows)


@dataclass(frozen=True)
class ScanScores:
    """The exhaustive reference: a score for every passage row, with the :class:`MatchedScores` methods."""

    vector: np.ndarray
    leads: tuple[float, float]

    def top(self, ids: np.ndarray, n: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return top(ids, self.vector, n, allowed_rows)

    def at(self, rows: np.ndarray) -> np.ndarray:
        return self.vector[rows]


def mixed_scores(query: str, passages: LexicalIndex, documents: LexicalIndex, doc_passages: DocumentPassages,
                 doc_weight: float) -> MatchedScores:
    """Each passage's BM25 mixed with its document's (share ``doc_weight``), as
    :func:`ragkit.search.ranking.mix_lexical` mixes them over every row, for the rows asked."""
    passage, p_rows = passages.score_matches(query)
    by_doc, docs = documents.score_matches(query)
    return MatchedScores(passage, p_rows, by_doc, docs, doc_passages, doc_weight)


def _member(rows: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Which of ``rows`` are in the ascending ``allowed``."""
    if allowed.size == 0:
        return np.zeros(rows.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(allowed, rows), allowed.size - 1)
    return allowed[pos] == rows
