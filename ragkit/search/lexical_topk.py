"""The lexical stage of a query at the cost of its postings, not of the collection.

:meth:`ragkit.search.index.Index._lexical_vector` (the exhaustive reference) mixes every
passage row's BM25 with its document's and ranks them all. :func:`mixed_scores` keeps the
query's two BM25 vectors (``score_all``'s scatter of the postings) and the rows with a posting
(a sort of the postings, or marks read back where they are many), and computes a row's mixed score only when asked, by the same
expressions (:func:`ragkit.search.ranking.mix_scores`) with the same two maxima, so each score
is the same float as in the exhaustive vector. :meth:`MatchedScores.top` scores the passages of
the best documents first; their n-th best score bounds what the others must reach, and the
documents (passages) whose highest possible score is below it are never scored; a query whose
words are in a large share of the rows scores all its matched rows in one pass instead, which
costs less than sorting the candidates of a loose bound (see :meth:`MatchedScores._candidates`). The top passages,
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
        counts = np.bincount(doc_rows, minlength=n_docs)
        np.cumsum(counts, out=self.indptr[1:])
        self.every_document_has_one = bool(counts.size == 0 or counts.min() > 0)

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

    #: documents whose passages :meth:`top` scores beside the matched ones, to learn a bound
    first_batch = 256

    def __init__(self, passage: np.ndarray, p_rows: np.ndarray, by_doc: np.ndarray, docs: np.ndarray,
                 doc_passages: DocumentPassages, doc_weight: float) -> None:
        self._passage, self._p_rows, self._by_doc, self._docs = passage, p_rows, by_doc, docs
        self._map, self._weight = doc_passages, doc_weight
        # the maxima mix_lexical takes over every row (the others score 0); documents without passages do not count
        # (a query matching many rows: one pass over the whole vector costs less than the gather)
        self._p_top = float((passage if 8 * p_rows.size > passage.size else passage[p_rows]).max(initial=0.0))
        if doc_passages.every_document_has_one and 8 * docs.size > by_doc.size:
            self._d_top = float(by_doc.max(initial=0.0))
        else:
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

        The bound is a lower bound of the n-th best score overall, the n-th best of real scores:
        first those of the passages of the best-scored documents. A passage scores at most
        ``share + weight * d / d_top`` (its own BM25 is at most the best one); where that leaves
        few documents, their passages are the candidates. Otherwise (a query whose words are
        everywhere) every row with a posting is scored, in one vectorised pass, which also
        raises the bound; a row with a posting is kept if its score reaches the bound, a row
        without one scores ``weight * d / d_top`` (its document's share alone), so only the
        passages of documents where that reaches the bound are added. Ties at the n-th best are
        all kept, so :func:`best` settles them as over every row.
        """
        weight, docs = self._weight, self._docs
        if n <= 0 or weight <= 0.0 or self._d_top <= 0.0:
            return self._p_rows
        d = self._by_doc[docs].astype(np.float64)
        bound = 0.0
        batch = max(n, self.first_batch)
        if docs.size > batch:
            rows = self._map.of(docs[np.argpartition(-d, batch - 1)[:batch]])[0]
            if allowed_rows is not None:
                rows = rows[_member(rows, allowed_rows)]
            bound = _nth_best(self.at(rows), n) * (1.0 - 1e-9)  # below rounding
        share = passage_share(weight) if self._p_top > 0 else 0.0
        if 0.0 < bound and share < bound:
            reach = docs[share + weight * d / self._d_top >= bound]
            indptr = self._map.indptr
            if 4 * int((indptr[reach + 1] - indptr[reach]).sum()) <= self._p_rows.size:  # sorting them costs less
                return distinct_sorted(self._map.of(reach)[0])
        p_rows = self._p_rows if allowed_rows is None else self._p_rows[_member(self._p_rows, allowed_rows)]
        p_values = self.at(p_rows)
        bound = max(bound, _nth_best(p_values, n) * (1.0 - 1e-9))
        if bound <= 0.0:
            return self.matched_rows()
        rows = self._map.of(docs[weight * d / self._d_top >= bound])[0]
        return distinct_sorted(np.concatenate([p_rows[p_values >= bound], rows]))


def _nth_best(values: np.ndarray, n: int) -> float:
    """The n-th largest of ``values`` (none below 0) if it is above 0, else 0.0."""
    if values.size < n:
        return 0.0
    return max(float(np.partition(values, values.size - n)[values.size - n]), 0.0)


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
