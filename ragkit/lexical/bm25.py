"""BM25 over analysed passages: bm25s's scoring, ragkit's analysis, a folder of JSON and NPY files.

As in bm25s, the BM25 weight of every (document, term) pair is precomputed into a sparse CSC
matrix; a query's score vector is the sum of its terms' columns. The weights are computed here
in numpy, with bm25s's formulas and float precision (the tests check they are bit-identical),
from a matrix of term counts with the same layout that is stored too: an update
(:meth:`LexicalIndex.updated`) takes the counts of unchanged rows over, analyses only new
text, and recomputes idf, average length and weights for the whole matrix in a few vectorised
steps. ragkit never uses bm25s's tokenizer.

Files written by :meth:`LexicalIndex.save` (all readable with ``allow_pickle=False``):

- ``bm25.json``: format, format version, BM25 parameters, analyzer config, counts, byte sizes
- ``bm25_vocab.json``: the terms, a JSON list; a term's position is its column
- ``bm25_ids.npy`` (int64): the external id of each row
- ``bm25_data.npy`` (float32), ``bm25_indices.npy`` (int32), ``bm25_indptr.npy`` (int64): the
  CSC matrix of weights (rows are documents, columns terms)
- ``bm25_tf.npy`` (int32): the term count of each entry of that matrix (same indices and
  indptr). Format version 1 lacked it: such a folder is searched as before, and an update
  re-analyses its text once.

Each file is written beside and renamed into place, the manifest ``bm25.json`` last; a load
checks format version, analyzer, file sizes, dtypes and shapes, so a damaged or half-written
folder raises :class:`~ragkit.errors.IndexFormatError` rather than returning garbage.

Why this module is long: building, merging block counts (:class:`TermCounts`), updating,
searching and the file format share the CSC layout and its checks; split apart, each part
would reach into the others' arrays.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.format.pinning import PinnedFolder, as_folder
from ragkit.lexical.analysis import ANALYZER_NAME, ANALYZER_VERSIONS, Analyzer
from ragkit.errors import EmptyCorpusError, IndexFormatError, InvalidArgumentError

__all__ = ["LexicalIndex", "TermCounts", "count_terms"]

FORMAT = "ragkit-bm25"
FORMAT_VERSION = 2
READS = (1, 2)  # version 1: no term counts
METHODS = ("lucene", "robertson", "atire")
MANIFEST = "bm25.json"
DEFAULT_K1 = 1.5  # bm25s's default; chosen by benchmarks/selection.py over 1.2 (lexical stage)
VOCAB = "bm25_vocab.json"
# array name -> (file name, dtype)
ARRAYS = {
    "ids": ("bm25_ids.npy", np.dtype(np.int64)),
    "data": ("bm25_data.npy", np.dtype(np.float32)),
    "indices": ("bm25_indices.npy", np.dtype(np.int32)),
    "indptr": ("bm25_indptr.npy", np.dtype(np.int64)),
    "tf": ("bm25_tf.npy", np.dtype(np.int32)),
}
_OPTIONAL = {"tf"}  # absent from format version 1

_EMPTY_IDS = np.zeros(0, dtype=np.int64)
_ANALYSE_BLOCK = 2048  # texts analysed at once when building (see _counted_blocks)
_ENTRY_BLOCK = 1 << 20  # matrix entries weighted at once (see _matrix)
_SORT_OR_SCAN = 16  # postings x this above the rows: mark and scan them instead of sorting
_EMPTY_SCORES = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class TermCounts:
    """The term counts of a run of rows, analysed apart (a worker's block) and merged later.

    ``terms``: the distinct terms in order of first appearance; ``cols`` index them. Entries
    (``cols``, ``rows``, ``tf``) are sorted by (column, row); rows count from 0 within the run.
    Merged in row order (:meth:`LexicalIndex.from_counts`), blocks give the vocabulary order,
    and so the index, of one build over all rows.
    """

    terms: list[str]
    cols: np.ndarray
    rows: np.ndarray
    tf: np.ndarray
    n_rows: int


def count_terms(analyzer: Analyzer, texts: Sequence[str]) -> TermCounts:
    """The term counts of ``texts`` (rows 0..n-1), as :meth:`LexicalIndex.build` counts them
    (columns and rows as int32: a block's vocabulary and rows are far below 2**31)."""
    vocab: dict[str, int] = {}
    cols, rows, tf = _count_rows(analyzer.terms_batch(texts), vocab, first_row=0)
    return TermCounts(list(vocab), cols.astype(np.int32), rows.astype(np.int32), tf, len(texts))


def _merged(parts: Sequence[TermCounts], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(column, row, count) of ``parts`` one after the other, columns from ``vocab`` (grown), unsorted."""
    cols, rows, tf = [], [], []
    offset = 0
    for part in parts:
        local = np.fromiter((vocab.setdefault(t, len(vocab)) for t in part.terms), dtype=np.int64, count=len(part.terms))
        cols.append(local[np.asarray(part.cols, dtype=np.int64)])
        rows.append(np.asarray(part.rows, dtype=np.int64) + offset)
        tf.append(np.asarray(part.tf, dtype=np.int32))
        offset += part.n_rows
    empty = [np.zeros(0, dtype=np.int64)]
    return (np.concatenate(cols or empty), np.concatenate(rows or empty),
            np.concatenate(tf or [np.zeros(0, dtype=np.int32)]))


class LexicalIndex:
    """A BM25 index of passages keyed by int64 external ids. Build it or load it; then search."""

    def __init__(
        self, params: dict[str, Any], matrix: dict[str, np.ndarray], vocab: dict[str, int], ids: np.ndarray,
        analyzer: Analyzer,
    ) -> None:
        """Use :meth:`build`, :meth:`updated` or :meth:`load`.

        ``params`` holds k1, b and method; ``matrix`` the CSC arrays ``data``, ``indices``,
        ``indptr`` of BM25 weights (rows: documents, columns: terms) and ``tf``, the term counts
        of the same entries (None for an index of format version 1). Searching needs only numpy.
        """
        self._params = params
        self._matrix = {key: matrix[key] for key in ("data", "indices", "indptr")}
        self._tf: np.ndarray | None = matrix.get("tf")
        self._vocab = vocab
        self._ids = ids
        self.analyzer = analyzer
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # (sorted ids, their rows)

    # ----------------------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        texts: Sequence[str],
        analyzer: Analyzer | None = None,
        k1: float = DEFAULT_K1,
        b: float = 0.75,
        method: str = "lucene",
    ) -> LexicalIndex:
        """Index ``texts[i]`` under the unique id ``ids[i]``.

        ``method`` picks bm25s's BM25 variant: ``lucene`` (default), ``robertson`` or ``atire``.
        """
        ids_arr = _check_ids(ids, len(texts))
        if method not in METHODS:
            raise InvalidArgumentError(f"unknown BM25 method {method!r}; choose one of {', '.join(METHODS)}")
        if not (k1 >= 0 and 0 <= b <= 1):
            raise InvalidArgumentError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        analyzer = analyzer if analyzer is not None else Analyzer()
        return cls.from_counts(ids_arr, _counted_blocks(analyzer, texts), analyzer, k1, b, method)

    @classmethod
    def from_counts(
        cls, ids: np.ndarray, parts: Sequence[TermCounts], analyzer: Analyzer | None = None,
        k1: float = DEFAULT_K1, b: float = 0.75, method: str = "lucene",
    ) -> LexicalIndex:
        """The index :meth:`build` gives for the texts whose counts ``parts`` hold, in order."""
        ids_arr = _check_ids(ids, sum(p.n_rows for p in parts))
        if method not in METHODS:
            raise InvalidArgumentError(f"unknown BM25 method {method!r}; choose one of {', '.join(METHODS)}")
        vocab: dict[str, int] = {}
        params = {"k1": float(k1), "b": float(b), "method": method}
        matrix = _placed(params, parts, vocab, len(ids_arr))
        return cls(params, matrix, vocab, ids_arr, analyzer if analyzer is not None else Analyzer())

    @property
    def has_counts(self) -> bool:
        """Whether the term counts are at hand, so :meth:`updated` need not re-analyse old rows."""
        return self._tf is not None

    def updated(self, ids: np.ndarray, reuse: np.ndarray, texts: Sequence[str] | None = None,
                counts: Sequence[TermCounts] | None = None) -> LexicalIndex:
        """A new index with the same analyzer and parameters; this one is left unchanged.

        Row ``i`` of the new index gets the external id ``ids[i]``; where ``reuse[i] >= 0`` it
        takes over the term counts of this index's row with external id ``reuse[i]`` (its text
        is not analysed again), elsewhere it indexes the next text of ``texts``. Rows of this
        index that no ``reuse`` entry names are dropped. Scores equal those of :meth:`build` on
        the same texts in the same order (only the order of the vocabulary may differ). The new
        texts may come as their term counts instead (``counts``, analysed elsewhere, in order).
        """
        if self._tf is None:
            raise InvalidArgumentError("this lexical index has no term counts (format version 1): rebuild it")
        reuse = np.asarray(reuse, dtype=np.int64).reshape(-1)
        ids_arr = _check_ids(ids, len(reuse))
        fresh = np.flatnonzero(reuse < 0)
        if counts is None:
            counts = _counted_blocks(self.analyzer, texts or ())
        n_new = sum(p.n_rows for p in counts)
        if fresh.size != n_new:
            raise InvalidArgumentError(f"{fresh.size} new rows for {n_new} texts")
        reused = np.flatnonzero(reuse >= 0)
        if np.unique(reuse[reused]).size != reused.size:
            raise InvalidArgumentError("an old row can be reused only once")
        # Old entries of reused rows, moved to their new rows.
        new_row_of = np.full(len(self), -1, dtype=np.int64)
        new_row_of[self.rows_of(reuse[reused])] = reused
        indices, indptr = self._matrix["indices"], self._matrix["indptr"]
        old_cols = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
        moved = new_row_of[indices]
        keep = moved >= 0
        # New rows, analysed; new terms extend the vocabulary.
        vocab = dict(self._vocab)
        add_cols, add_rows, add_tf = _merged(counts, vocab)
        cols = np.concatenate([old_cols[keep], add_cols])
        rows = np.concatenate([moved[keep], fresh[add_rows]])
        tf = np.concatenate([np.asarray(self._tf)[keep], add_tf])
        # Terms no row uses any more leave the vocabulary, as a fresh build would never have them.
        used = np.bincount(cols, minlength=len(vocab)) > 0
        if not used.all():
            new_col = np.cumsum(used) - 1
            cols = new_col[cols]
            terms_in_order = sorted(vocab, key=vocab.__getitem__)
            vocab = {t: int(new_col[i]) for i, t in enumerate(terms_in_order) if used[i]}
        matrix = _matrix(self._params, *_by_column(cols, rows, tf), len(ids_arr), len(vocab))
        return LexicalIndex(dict(self._params), matrix, vocab, ids_arr, self.analyzer)

    def reweighted(self, k1: float | None = None, b: float | None = None, method: str | None = None) -> LexicalIndex:
        """The same index with other BM25 parameters, from the stored term counts (no analysis)."""
        if self._tf is None:
            raise InvalidArgumentError("this lexical index has no term counts (format version 1): rebuild it")
        params = {"k1": float(self._params["k1"] if k1 is None else k1), "b": float(self._params["b"] if b is None else b),
                  "method": self._params["method"] if method is None else method}
        if params["method"] not in METHODS or not (params["k1"] >= 0 and 0 <= params["b"] <= 1):
            raise InvalidArgumentError(f"invalid BM25 parameters {params}")
        indptr = self._matrix["indptr"]
        cols = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
        rows = np.asarray(self._matrix["indices"], dtype=np.int64)
        matrix = _matrix(params, cols, rows, np.asarray(self._tf), len(self), len(self._vocab))
        return LexicalIndex(params, matrix, dict(self._vocab), self._ids, self.analyzer)

    # ------------------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    @property
    def ids(self) -> np.ndarray:
        """The external ids, in row order."""
        return self._ids

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best ids and their scores, best first; only documents with a score above 0.

        ``allowed`` restricts the ranking to these ids (unknown ids are ignored) before the top
        ``k`` are taken. Ties are broken by row order (the order of ``build``).
        """
        _check_k(k)
        return self._rank(self._term_ids(self.analyzer.terms(query)), k, allowed)

    def search_many(self, queries: Sequence[str], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`search` for each query (analysed as one batch)."""
        _check_k(k)
        return [self._rank(self._term_ids(terms), k, None) for terms in self.analyzer.terms_batch(queries)]

    def scores(self, query: str, ids: np.ndarray) -> np.ndarray:
        """BM25 scores (float32) of ``query`` for the given ids, 0 where no term matches.

        Every id must be in the index (InvalidArgumentError otherwise).
        """
        rows, found = self._rows(np.asarray(ids))
        if not found.all():
            missing = np.asarray(ids).reshape(-1)[~found]
            raise InvalidArgumentError(f"{missing.size} id(s) not in the lexical index, e.g. {int(missing[0])}")
        return self._score_vector(self._term_ids(self.analyzer.terms(query)))[rows]

    def config(self) -> dict[str, Any]:
        """BM25 parameters, analyzer config and counts, as stored in ``bm25.json``."""
        return {
            "k1": float(self._params["k1"]),
            "b": float(self._params["b"]),
            "method": str(self._params["method"]),
            "analyzer": self.analyzer.config(),
            "n_docs": len(self),
            "n_terms": len(self._vocab),
            "n_postings": int(self._matrix["data"].shape[0]),
        }

    def score_all(self, query: str) -> np.ndarray:
        """BM25 scores of every row for ``query`` (aligned with :attr:`ids`)."""
        return self._score_vector(self._term_ids(self.analyzer.terms(query)))

    def score_matches(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows): :meth:`score_all`'s vector and the rows holding a term of ``query``, ascending.

        Every other row scores 0. Finding the rows costs the query terms' postings (a sort of
        their rows), not a scan of the index.
        """
        term_ids = self._term_ids(self.analyzer.terms(query))
        return self._score_vector(term_ids), self._posting_rows(term_ids)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows of external ``ids``; an unknown id is an InvalidArgumentError."""
        rows, found = self._rows(np.asarray(ids))
        if not bool(np.all(found)):
            raise InvalidArgumentError("unknown ids in lexical index lookup")
        return rows

    def _term_ids(self, terms: list[str]) -> np.ndarray:
        # Each distinct query term counts once (measured: same or better nDCG than counting repeats).
        vocab = self._vocab
        return np.array(sorted({vocab[t] for t in terms if t in vocab}), dtype=np.int32)

    def _score_vector(self, term_ids: np.ndarray) -> np.ndarray:
        if term_ids.size == 0:
            return np.zeros(len(self), dtype=np.float32)
        data, indices, indptr = self._matrix["data"], self._matrix["indices"], self._matrix["indptr"]
        scores = np.zeros(len(self), dtype=np.float32)
        for term in term_ids:
            lo, hi = int(indptr[term]), int(indptr[term + 1])
            scores[indices[lo:hi]] += data[lo:hi]  # rows within one column are distinct
        return scores

    def _posting_rows(self, term_ids: np.ndarray) -> np.ndarray:
        indices, indptr = self._matrix["indices"], self._matrix["indptr"]
        runs = [indices[int(indptr[t]):int(indptr[t + 1])] for t in term_ids.tolist()]
        if len(runs) == 1:  # rows within one column are ascending and distinct
            return runs[0].astype(np.int64)
        if sum(r.size for r in runs) * _SORT_OR_SCAN > len(self):
            # many postings (common words): marking them and reading the marks back costs one
            # pass over the rows, less than a sort (1M rows, 300k postings: 1.3 against 8.6 ms)
            marked = np.zeros(len(self), dtype=bool)
            for run in runs:
                marked[run] = True
            return np.flatnonzero(marked)
        return distinct_sorted(np.concatenate(runs or [np.zeros(0, dtype=np.int32)])).astype(np.int64)

    def _rank(self, term_ids: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if term_ids.size == 0 or k == 0:
            return _EMPTY_IDS, _EMPTY_SCORES
        scores = self._score_vector(term_ids)
        if allowed is None:
            rows = np.flatnonzero(scores > 0)
        else:
            rows, found = self._rows(np.asarray(allowed))
            rows = np.unique(rows[found])
            rows = rows[scores[rows] > 0]
        values = scores[rows]
        if rows.size > k:
            kth = np.partition(values, rows.size - k)[rows.size - k]
            keep = values >= kth  # ties at the cut stay; the sort below settles them by row
            rows, values = rows[keep], values[keep]
        order = np.lexsort((rows, -values))[:k]
        rows, values = rows[order], values[order]
        return np.asarray(self._ids[rows], dtype=np.int64), values.astype(np.float32, copy=False)

    def _rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``ids`` and a mask of which ids are in the index (rows of others are 0)."""
        ids = ids.reshape(-1)
        if ids.size and ids.dtype.kind not in "iu":
            raise InvalidArgumentError("ids must be integers")
        if self._lookup is None:
            order = np.argsort(self._ids, kind="stable")
            self._lookup = (np.asarray(self._ids[order]), order)
        sorted_ids, order = self._lookup
        pos = np.searchsorted(sorted_ids, ids.astype(np.int64, copy=False))
        pos = np.minimum(pos, len(sorted_ids) - 1)
        found = sorted_ids[pos] == ids
        return np.where(found, order[pos], 0), found

    # -------------------------------------------------------------------------- persistence

    def save(self, folder: str | Path) -> list[Path]:
        """Write the index into ``folder`` (created if needed); return the paths written."""
        from ragkit.format.manifest import fsync_dir, write_atomic

        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        arrays = {"ids": self._ids, **self._matrix, "tf": self._tf}
        terms = sorted(self._vocab, key=self._vocab.__getitem__)
        written: list[Path] = []
        sizes: dict[str, int] = {}
        vocab_bytes = json.dumps(terms, ensure_ascii=False).encode("utf-8")
        write_atomic(root / VOCAB, vocab_bytes)
        written.append(root / VOCAB)
        sizes[VOCAB] = len(vocab_bytes)
        for name, (file_name, dtype) in ARRAYS.items():
            path = root / file_name
            if arrays[name] is None:  # an index loaded from format version 1: no counts to save
                raise InvalidArgumentError("this lexical index has no term counts (format version 1): rebuild it")
            _save_npy(path, np.ascontiguousarray(arrays[name], dtype=dtype))
            written.append(path)
            sizes[file_name] = path.stat().st_size
        fsync_dir(root)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **self.config(), "files": sizes}
        text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
        write_atomic(root / MANIFEST, text.encode("utf-8"))
        written.append(root / MANIFEST)
        return written

    @classmethod
    def load(cls, folder: str | Path | PinnedFolder, mmap: bool = False) -> LexicalIndex:
        """Open an index written by :meth:`save`; ``mmap`` maps the arrays instead of reading them."""
        root = as_folder(folder)
        manifest = _read_manifest(root)
        sizes = manifest["files"]
        wanted = {name: spec for name, spec in ARRAYS.items()
                  if not (name in _OPTIONAL and manifest["format_version"] == 1)}
        for file_name in [VOCAB, *(f for f, _ in wanted.values())]:
            path = root / file_name
            if not path.is_file():
                raise IndexFormatError(f"lexical index {root} is incomplete: {file_name} is missing")
            if path.stat().st_size != sizes.get(file_name):
                raise IndexFormatError(
                    f"lexical index file {path} is damaged: {path.stat().st_size} bytes, "
                    f"expected {sizes.get(file_name)}"
                )
        arrays = {name: _load_npy(root / file_name, dtype, mmap) for name, (file_name, dtype) in wanted.items()}
        try:
            terms = json.loads((root / VOCAB).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexFormatError(f"lexical index file {root / VOCAB} is damaged: {exc}") from exc
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise IndexFormatError(f"lexical index file {root / VOCAB} is not a list of terms")
        vocab = {term: i for i, term in enumerate(terms)}
        _check_shapes(root, manifest, arrays, len(terms), len(vocab))

        analyzer_cfg = manifest["analyzer"]
        params = {key: manifest[key] for key in ("k1", "b", "method")}
        matrix = {key: arrays.get(key) for key in ("data", "indices", "indptr", "tf")}
        analyzer = Analyzer(stem=bool(analyzer_cfg["stem"]), stopwords=bool(analyzer_cfg["stopwords"]),
                            stopword_list=analyzer_cfg.get("stopword_list"),
                            russian=str(analyzer_cfg.get("russian", "snowball")))
        return cls(params, matrix, vocab, arrays["ids"], analyzer)


def _check_ids(ids: np.ndarray, n_texts: int) -> np.ndarray:
    ids_arr = np.asarray(ids)
    if ids_arr.ndim != 1 or not (ids_arr.dtype.kind in "iu" or ids_arr.size == 0):
        raise InvalidArgumentError("ids must be a one-dimensional array of integers")
    if len(ids_arr) != n_texts:
        raise InvalidArgumentError(f"{len(ids_arr)} ids for {n_texts} texts")
    if n_texts == 0:
        raise EmptyCorpusError("nothing to index: no texts given to the lexical index")
    ids_arr = ids_arr.astype(np.int64)
    if np.unique(ids_arr).size != ids_arr.size:
        raise InvalidArgumentError("ids of the lexical index must be unique")
    return ids_arr


def _count_rows(
    doc_terms: Sequence[Sequence[str]], vocab: dict[str, int], first_row: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(column, row, count) of every distinct term of every document, sorted by (column, row).

    Terms get columns from ``vocab``, which grows with unseen terms (in order of appearance);
    rows are numbered from ``first_row``.
    """
    flat_terms = list(chain.from_iterable(doc_terms))
    for term in dict.fromkeys(flat_terms):  # distinct terms in order of appearance
        vocab.setdefault(term, len(vocab))
    flat = np.fromiter(map(vocab.__getitem__, flat_terms), dtype=np.int64, count=len(flat_terms))
    lengths = np.fromiter((len(terms) for terms in doc_terms), dtype=np.int64, count=len(doc_terms))
    rows = np.repeat(np.arange(first_row, first_row + len(doc_terms), dtype=np.int64), lengths)
    keys, counts = np.unique((flat << 32) | rows, return_counts=True)
    return keys >> 32, keys & 0xFFFFFFFF, counts.astype(np.int32)


def _counted_blocks(analyzer: Analyzer, texts: Sequence[str]) -> list[TermCounts]:
    """The term counts of ``texts``, ``_ANALYSE_BLOCK`` at a time: the token lists of a whole
    corpus are never held at once (at 36k news passages they took about 400 MB). Merged in
    order (:func:`_merged`), they give the vocabulary and entries of one pass over all."""
    return [count_terms(analyzer, texts[lo:lo + _ANALYSE_BLOCK]) for lo in range(0, len(texts), _ANALYSE_BLOCK)]


def _by_column(cols: np.ndarray, rows: np.ndarray, tf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries sorted by (column, row), as :func:`_matrix` takes them."""
    order = np.argsort((cols << 32) | rows, kind="stable")
    return cols[order], rows[order], tf[order]


def _matrix(
    params: dict[str, Any], cols: np.ndarray, rows: np.ndarray, tf: np.ndarray, n_docs: int, n_terms: int
) -> dict[str, np.ndarray]:
    """The CSC arrays of BM25 weights and counts from entries sorted by (column, row).

    Computed as bm25s does it, in the same precision: idf per term in float64 then float32,
    the term-frequency component in float64, their product stored as float32.
    """
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=n_terms), out=indptr[1:])
    indices = rows.astype(np.int32)
    lengths = np.bincount(rows, weights=tf, minlength=n_docs).astype(np.int64)
    avgdl = lengths.mean()
    idf = _idf(np.diff(indptr), n_docs, params["method"])
    data = np.empty(len(cols), dtype=np.float32)
    for lo in range(0, len(cols), _ENTRY_BLOCK):  # element-wise, a block at a time: few temporaries
        part = slice(lo, lo + _ENTRY_BLOCK)
        data[part] = _weights(params, tf[part], lengths[rows[part]], idf[cols[part]], avgdl)
    return {"data": data, "indices": indices, "indptr": indptr, "tf": tf.astype(np.int32)}


def _placed(params: dict[str, Any], parts: Sequence[TermCounts], vocab: dict[str, int],
            n_docs: int) -> dict[str, np.ndarray]:
    """:func:`_matrix` of ``parts`` one after the other (columns from ``vocab``, grown), each
    entry written straight to its place: no concatenated or sorted copy of all entries.

    A first pass gives each part's columns, the document frequencies and the row lengths; the
    second writes each part's entries at their column's cursor. Parts come in row order and
    each part's entries are sorted by (column, row), so every column's rows come out ascending:
    the arrays of one sort of all entries, in 12 bytes an entry plus one part's temporaries
    (sorting took about 60 bytes an entry more).
    """
    columns, runs = [], []  # per part: the global column of each of its terms, its entries per term
    lengths = np.zeros(n_docs, dtype=np.int64)
    offset = 0
    for part in parts:
        local_cols = np.asarray(part.cols, dtype=np.int64)
        rows = np.asarray(part.rows, dtype=np.int64)
        if local_cols.size and np.any(np.diff((local_cols << 32) | rows) <= 0):
            raise InvalidArgumentError("term counts must be sorted by (column, row), each pair once")
        columns.append(np.fromiter((vocab.setdefault(t, len(vocab)) for t in part.terms), dtype=np.int64,
                                   count=len(part.terms)))
        runs.append(np.bincount(local_cols, minlength=len(part.terms)))
        lengths[offset:offset + part.n_rows] = np.bincount(rows, weights=part.tf, minlength=part.n_rows)
        offset += part.n_rows
    df = np.zeros(len(vocab), dtype=np.int64)
    for cols, run in zip(columns, runs):
        df[cols] += run  # a part's terms are distinct
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    n_entries = int(indptr[-1])
    data = np.empty(n_entries, dtype=np.float32)
    indices = np.empty(n_entries, dtype=np.int32)
    tf = np.empty(n_entries, dtype=np.int32)
    avgdl = lengths.mean()
    idf = _idf(df, n_docs, params["method"])
    cursor = indptr[:-1].copy()
    offset = 0
    for part, cols, run in zip(parts, columns, runs):
        local_cols = np.asarray(part.cols, dtype=np.int64)
        # entry j of a term's run goes to the term's cursor + (j - the run's start in the part)
        dest = (cursor[cols] - (np.cumsum(run) - run))[local_cols] + np.arange(local_cols.size)
        rows = np.asarray(part.rows, dtype=np.int64) + offset
        indices[dest] = rows
        tf[dest] = part.tf
        data[dest] = _weights(params, np.asarray(part.tf), lengths[rows], idf[cols[local_cols]], avgdl)
        cursor[cols] += run
        offset += part.n_rows
    return {"data": data, "indices": indices, "indptr": indptr, "tf": tf}


def _weights(params: dict[str, Any], tf: np.ndarray, lengths: np.ndarray, idf: np.ndarray,
             avgdl: float) -> np.ndarray:
    """BM25 weights (float32) of entries with counts ``tf`` in rows of ``lengths`` for terms of ``idf``."""
    k1, b, method = float(params["k1"]), float(params["b"]), params["method"]
    tf32 = tf.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # no entries at all: avgdl is 0
        norm = (1 - b) + b * lengths / avgdl
        if method == "atire":
            tfc = (tf32 * (k1 + 1)) / (tf32 + k1 * norm)
        else:  # lucene and robertson
            tfc = tf32 / (k1 * norm + tf32)
    return (idf * tfc).astype(np.float32)


def _idf(df: np.ndarray, n_docs: int, method: str) -> np.ndarray:
    """float32 idf of each document frequency, with bm25s's formulas (math.log, per distinct df)."""
    values, inverse = np.unique(df, return_inverse=True)
    out = np.zeros(values.shape[0], dtype=np.float32)
    for i, d in enumerate(values.tolist()):
        if d == 0:
            continue
        if method == "lucene":
            out[i] = math.log(1 + (n_docs - d + 0.5) / (d + 0.5))
        elif method == "robertson":
            out[i] = math.log(max(1.0, (n_docs - d + 0.5) / (d + 0.5)))
        else:  # atire
            out[i] = math.log(n_docs / d)
    return out[inverse.reshape(-1)]


def distinct_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending: np.unique, but a sort and a comparison (np.unique was 40x slower on 60k rows)."""
    values = np.sort(values)
    keep = np.ones(values.size, dtype=bool)
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidArgumentError(f"k must be a non-negative integer, got {k!r}")


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _load_npy(path: Path, dtype: np.dtype, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError, EOFError) as exc:
        raise IndexFormatError(f"lexical index file {path} is damaged: {exc}") from exc
    if array.dtype != dtype or array.ndim != 1:
        found = f"{array.dtype}{list(array.shape)}"
        raise IndexFormatError(f"lexical index file {path} holds {found}, expected a 1-D {dtype} array")
    return array


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise IndexFormatError(f"no lexical index in {root}: {MANIFEST} is missing")
    from ragkit.format.manifest import read_versioned_json

    manifest = read_versioned_json(path, FORMAT, READS, "ragkit BM25 manifest")
    analyzer = manifest.get("analyzer")
    if not isinstance(analyzer, dict) or analyzer.get("name") != ANALYZER_NAME or analyzer.get("version") not in ANALYZER_VERSIONS:
        found = f"{analyzer.get('name')} v{analyzer.get('version')}" if isinstance(analyzer, dict) else "none"
        raise IndexFormatError(
            f"lexical index {root} was analysed with {found}; this ragkit reads "
            f"{ANALYZER_NAME} v{'/v'.join(map(str, ANALYZER_VERSIONS))}: rebuild the index"
        )
    if analyzer.get("russian", "snowball") not in ("snowball", "pymorphy3"):
        raise IndexFormatError(f"lexical index {root} names an unknown Russian analysis {analyzer.get('russian')!r}: rebuild it")
    checks = {
        "k1": (int, float),
        "b": (int, float),
        "method": str,
        "n_docs": int,
        "n_terms": int,
        "n_postings": int,
        "files": dict,
    }
    for key, kind in checks.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise IndexFormatError(f"{path} lacks a valid {key!r}")
    if manifest["method"] not in METHODS:
        raise IndexFormatError(f"{path} names an unknown BM25 method {manifest['method']!r}")
    if not isinstance(analyzer.get("stem"), bool) or not isinstance(analyzer.get("stopwords"), bool):
        raise IndexFormatError(f"{path} has an incomplete analyzer config")
    return manifest


def _check_shapes(
    root: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray], n_terms: int, n_distinct: int
) -> None:
    n_docs, n_postings = manifest["n_docs"], manifest["n_postings"]
    indptr = arrays["indptr"]
    problems = []
    if n_terms != manifest["n_terms"] or n_distinct != n_terms:
        problems.append(f"vocabulary has {n_terms} terms ({n_distinct} distinct), expected {manifest['n_terms']}")
    if arrays["ids"].shape[0] != n_docs:
        problems.append(f"{arrays['ids'].shape[0]} ids for {n_docs} documents")
    if any(arrays[key].shape[0] != n_postings for key in ("data", "indices", "tf") if key in arrays):
        problems.append("data/indices/tf lengths differ from the posting count")
    if indptr.shape[0] != n_terms + 1 or int(indptr[0]) != 0 or int(indptr[-1]) != n_postings:
        problems.append("indptr does not match the vocabulary and posting count")
    elif indptr.size > 1 and bool(np.any(indptr[1:] < indptr[:-1])):
        problems.append("indptr is not ascending")
    indices = arrays["indices"]
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n_docs):
        problems.append(f"posting rows outside 0..{n_docs - 1}")
    # ids are any int64 (found by binary search, never used as array sizes); an index's own
    # ids are checked against the store by Index.verify.
    if problems:
        raise IndexFormatError(f"lexical index {root} is inconsistent: {'; '.join(problems)}")
