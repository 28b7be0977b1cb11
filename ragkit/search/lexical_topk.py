"""The lexical stage of a query at the cost of its postings: mixed BM25 scores of the rows it matches.

:func:`mixed_scores` gives what :meth:`ragkit.search.index.Index._lexical_vector` (the
exhaustive reference: a score for every passage row) gives, but only for the rows that can
score above 0: the passages holding a query term and the passages of the documents holding
one; every other row's score is 0 in both. Scores are the same floats, computed by the same
expressions in the same order (:meth:`LexicalIndex.score_matches` sums a row's term weights as
:meth:`LexicalIndex.score_all` does; :func:`ragkit.search.ranking.mix_scores` mixes both), so
the top passages, their order and their ties (:func:`ragkit.search.ranking.best`) are those of
the exhaustive path. The candidates are a few sorts and look-ups over the postings;
collection-sized work is only the document -> passages map, built once (:class:`DocumentPassages`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ragkit.lexical.bm25 import LexicalIndex
from ragkit.search.ranking import best, mix_scores, top, top_two

__all__ = ["DocumentPassages", "MatchedScores", "ScanScores", "mixed_scores"]


class DocumentPassages:
    """The passage rows of each document row (CSR), from the document row of each passage row."""

    def __init__(self, doc_rows: np.ndarray, n_docs: int) -> None:
        doc_rows = np.asarray(doc_rows, dtype=np.int64)
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


@dataclass(frozen=True)
class MatchedScores:
    """Lexical scores of one query: ``values`` (float64) of the ascending passage ``rows``; other rows score 0.

    ``leads``: the BM25 scores of the two best documents (what adaptive fusion reads).
    """

    rows: np.ndarray
    values: np.ndarray
    leads: tuple[float, float]

    def top(self, ids: np.ndarray, n: int, allowed_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """As :func:`ragkit.search.ranking.top` over every row; ``allowed_rows`` ascending or None."""
        rows, values = self.rows, self.values
        if allowed_rows is not None:
            keep = _member(rows, allowed_rows)
            rows, values = rows[keep], values[keep]
        return best(ids, rows, values, n)

    def at(self, rows: np.ndarray) -> np.ndarray:
        """The scores of any passage ``rows`` (0 for the rows the query does not match)."""
        pos = np.minimum(np.searchsorted(self.rows, rows), max(self.rows.size - 1, 0))
        if self.rows.size == 0:
            return np.zeros(np.shape(rows), dtype=np.float64)
        return np.where(self.rows[pos] == rows, self.values[pos], 0.0)


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
    """Each matched passage's BM25 mixed with its document's (share ``doc_weight``), as
    :func:`ragkit.search.ranking.mix_lexical` mixes them over every row."""
    p_rows, p_scores = passages.score_matches(query)
    d_rows, d_scores = documents.score_matches(query)
    by_doc = d_scores.astype(np.float64)
    # top_two over every document: the matched ones and (at most two of) the zeros of the rest
    leads = top_two(np.concatenate([by_doc, np.zeros(min(2, len(documents) - by_doc.size))]))
    passage = p_scores.astype(np.float64)
    if doc_weight <= 0.0:
        return MatchedScores(p_rows, passage, leads)
    members, counts = doc_passages.of(d_rows)
    rows = np.union1d(p_rows, members)
    own = np.zeros(rows.size, dtype=np.float64)
    own[np.searchsorted(rows, p_rows)] = passage
    document = np.zeros(rows.size, dtype=np.float64)
    document[np.searchsorted(rows, members)] = np.repeat(by_doc, counts)
    # the best document score over the documents that have passages, as mix_lexical takes it
    d_top = by_doc[counts > 0].max(initial=0.0)
    return MatchedScores(rows, mix_scores(own, document, passage.max(initial=0.0), d_top, doc_weight), leads)


def _member(rows: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Which of ``rows`` are in the ascending ``allowed``."""
    if allowed.size == 0:
        return np.zeros(rows.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(allowed, rows), allowed.size - 1)
    return allowed[pos] == rows
