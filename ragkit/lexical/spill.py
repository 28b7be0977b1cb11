"""BM25 term counts of a streaming build, kept on disk: the index files written in bounded memory.

:meth:`LexicalIndex.from_counts` + :meth:`~LexicalIndex.save` hold every part's counts and the
whole CSC matrix (10M news passages: 800M entries). :class:`SpilledCounts` takes the parts one at a
time in row order and writes their entries to scratch *runs* sorted by (column, row); ``write``
then writes the matrix a range of columns at a time, reading each run's slice of that range.

Memory held: 8 bytes a row (lengths; ``write`` also takes the caller's ids), about 20 bytes a term
(df, idf, indptr) plus the vocabulary dict, the buffer of up to ``run_entries`` entries (12 bytes
each, about twice that while sorted into a run) and, in ``write``, one column range of up to
``block_entries`` entries (about 30 bytes each; a column with more is a range of its own).

The files equal :meth:`LexicalIndex.save`'s byte for byte: the vocabulary grows in order of first
appearance over the parts in order, as ``bm25._placed`` grows it; row lengths, ``avgdl``, idf and
weights are computed by the same numpy calls on the same dtypes; within a column the rows come out
ascending, because runs are written in row order and their slices are merged by a stable sort on
the column; the ``.npy`` headers are numpy's own (what ``np.save`` writes for that dtype and
shape); the manifest text is built as ``save`` builds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from ragkit.errors import InvalidArgumentError
from ragkit.format.manifest import fsync_dir, write_atomic
from ragkit.lexical import bm25
from ragkit.lexical.analysis import Analyzer
from ragkit.lexical.bm25 import (
    ARRAYS, DEFAULT_K1, FORMAT, FORMAT_VERSION, MANIFEST, METHODS, VOCAB, TermCounts, _check_ids, _idf,
    _weights,
)

__all__ = ["SpilledCounts"]

_RUN_ARRAYS = ("cols", "rows", "tf")  # a run's files, each raw int32 (native byte order), no header
_RUN_DTYPE = np.dtype(np.int32)  # columns and rows fit: the index stores rows as int32 anyway
_MAX_ROWS = int(np.iinfo(np.int32).max) + 1
_WEIGH_BLOCK = 1 << 20  # entries weighted at once, as bm25._matrix does: few float64 temporaries
_MATRIX = ("data", "indices", "tf")  # the arrays written a column range at a time


class SpilledCounts:
    """Term counts of a build's rows, taken a part at a time in row order and kept on disk.

    Runs go to a private folder made inside ``folder`` (created if missing; the caller deletes
    ``folder``); :meth:`close`, or leaving a ``with`` block, removes them.
    """

    def __init__(self, folder: str | Path, run_entries: int = 1 << 24) -> None:
        if run_entries < 1:
            raise InvalidArgumentError(f"run_entries must be at least 1, got {run_entries}")
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._scratch: Path | None = Path(tempfile.mkdtemp(prefix="spill-", dir=folder))
        self._run_entries = int(run_entries)
        self._vocab: dict[str, int] = {}
        self._lengths = np.zeros(0, dtype=np.int64)  # capacity grows by doubling; rows beyond n_rows unused
        self._df = np.zeros(0, dtype=np.int64)
        self._n_rows = 0
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (global col, global row, tf), int32
        self._buffered = 0
        self._runs: list[int] = []  # entries of each run, in run (= row) order

    def __enter__(self) -> SpilledCounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the run files; the counts can no longer be added to or written."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        self._scratch, self._buffer, self._buffered, self._runs = None, [], 0, []

    @property
    def n_rows(self) -> int:
        return self._n_rows

    @property
    def n_terms(self) -> int:
        return len(self._vocab)

    def add(self, part: TermCounts) -> None:
        """Take the counts of the next ``part.n_rows`` rows (entries sorted by (column, row))."""
        self._open()
        local_cols = np.asarray(part.cols, dtype=np.int64).reshape(-1)
        rows = np.asarray(part.rows, dtype=np.int64).reshape(-1)
        tf = np.asarray(part.tf).reshape(-1)
        if not local_cols.size == rows.size == tf.size:
            raise InvalidArgumentError("term counts need as many columns, rows and counts")
        if len(set(part.terms)) != len(part.terms):
            raise InvalidArgumentError("the terms of a part must be distinct")
        if local_cols.size and (local_cols.min() < 0 or local_cols.max() >= len(part.terms)
                                or rows.min() < 0 or rows.max() >= part.n_rows):
            raise InvalidArgumentError("term counts name a column or row outside their part")
        if local_cols.size and np.any(np.diff((local_cols << 32) | rows) <= 0):
            raise InvalidArgumentError("term counts must be sorted by (column, row), each pair once")
        start, end = self._n_rows, self._n_rows + part.n_rows
        if end > _MAX_ROWS:
            raise InvalidArgumentError(f"a lexical index holds at most {_MAX_ROWS} rows (int32 indices)")
        columns = np.fromiter((self._vocab.setdefault(t, len(self._vocab)) for t in part.terms), dtype=np.int64,
                              count=len(part.terms))
        self._lengths = _grown(self._lengths, end)
        self._lengths[start:end] = np.bincount(rows, weights=part.tf, minlength=part.n_rows)
        self._df = _grown(self._df, len(self._vocab))
        self._df[columns] += np.bincount(local_cols, minlength=len(part.terms))  # a part's terms are distinct
        if local_cols.size:
            self._buffer.append((columns[local_cols].astype(_RUN_DTYPE), (rows + start).astype(_RUN_DTYPE),
                                 tf.astype(_RUN_DTYPE)))
            self._buffered += local_cols.size
        self._n_rows = end
        if self._buffered >= self._run_entries:
            self._spill()

    def write(
        self, folder: str | Path, ids: np.ndarray, analyzer: Analyzer | None = None, k1: float = DEFAULT_K1,
        b: float = 0.75, method: str = "lucene", block_entries: int = 1 << 22,
    ) -> dict[str, Any]:
        """Write the BM25 index folder that ``LexicalIndex.from_counts(ids, parts, analyzer, k1, b,
        method).save(folder)`` writes, byte for byte; return that index's ``config()``.

        Each file is written beside and renamed into place, the manifest ``bm25.json`` last.
        """
        self._open()
        ids_arr = _check_ids(ids, self._n_rows)
        if method not in METHODS:
            raise InvalidArgumentError(f"unknown BM25 method {method!r}; choose one of {', '.join(METHODS)}")
        if not (k1 >= 0 and 0 <= b <= 1):
            raise InvalidArgumentError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        if block_entries < 1:
            raise InvalidArgumentError(f"block_entries must be at least 1, got {block_entries}")
        if self._buffered:
            self._spill()
        analyzer = analyzer if analyzer is not None else Analyzer()
        params = {"k1": float(k1), "b": float(b), "method": method}
        n_docs, n_terms = self._n_rows, len(self._vocab)
        lengths, df = self._lengths[:n_docs], self._df[:n_terms]
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        idf = _idf(df, n_docs, method)

        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        vocab_bytes = json.dumps(list(self._vocab), ensure_ascii=False).encode("utf-8")  # dict order = columns
        write_atomic(root / VOCAB, vocab_bytes)
        bm25._save_npy(root / ARRAYS["ids"][0], ids_arr)  # through the module: one writer of .npy files
        bm25._save_npy(root / ARRAYS["indptr"][0], indptr)
        self._write_matrix(root, params, lengths, idf, indptr, lengths.mean(), block_entries)  # as _placed: np.float64
        fsync_dir(root)
        config = {**params, "analyzer": analyzer.config(), "n_docs": n_docs, "n_terms": n_terms,
                  "n_postings": int(indptr[-1])}
        sizes = {VOCAB: len(vocab_bytes), **{name: (root / name).stat().st_size for name, _ in ARRAYS.values()}}
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **config, "files": sizes}
        write_atomic(root / MANIFEST, (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
        return config

    # ---------------------------------------------------------------------------- internals

    def _open(self) -> Path:
        if self._scratch is None:
            raise InvalidArgumentError("these spilled term counts are closed")
        return self._scratch

    def _run_path(self, run: int, name: str) -> Path:
        return self._open() / f"run-{run:06d}.{name}"

    def _spill(self) -> None:
        """Write the buffer as one run sorted by (column, row), and drop it.

        A stable sort on the column is enough: the buffer holds parts in row order, each sorted
        by (column, row), so within a column the rows are already ascending.
        """
        arrays = [np.concatenate(chunks) for chunks in zip(*self._buffer)]
        self._buffer, self._buffered = [], 0
        order = np.argsort(arrays[0], kind="stable")
        run = len(self._runs)
        for name, array in zip(_RUN_ARRAYS, arrays):
            with open(self._run_path(run, name), "wb") as fh:
                fh.write(array[order].data)
        self._runs.append(int(order.size))

    def _write_matrix(self, root: Path, params: dict[str, Any], lengths: np.ndarray, idf: np.ndarray,
                      indptr: np.ndarray, avgdl: float, block_entries: int) -> None:
        """Write data, indices and tf: headers with the final shape, then one column range at a time."""
        paths = {name: root / ARRAYS[name][0] for name in _MATRIX}
        tmps = {name: path.with_name(f".{path.name}.tmp-{os.getpid()}") for name, path in paths.items()}
        try:
            with contextlib.ExitStack() as stack:
                files = {name: stack.enter_context(open(tmps[name], "wb")) for name in _MATRIX}
                for name, fh in files.items():
                    header = {"descr": npy_format.dtype_to_descr(ARRAYS[name][1]), "fortran_order": False,
                              "shape": (int(indptr[-1]),)}
                    npy_format.write_array_header_1_0(fh, header)  # what np.save writes for a 1-D array
                cursors, heads = [0] * len(self._runs), [0] * len(self._runs)
                for _, hi in _column_ranges(indptr, block_entries):
                    cols, rows, tf = self._range(hi, cursors, heads)
                    files["indices"].write(rows.data)
                    files["tf"].write(tf.data)
                    for at in range(0, cols.size, _WEIGH_BLOCK):
                        part = slice(at, at + _WEIGH_BLOCK)
                        weights = _weights(params, tf[part], lengths[rows[part]], idf[cols[part]], avgdl)
                        files["data"].write(weights.data)
                for fh in files.values():
                    fh.flush()
                    os.fsync(fh.fileno())
            for name in _MATRIX:
                os.replace(tmps[name], paths[name])
        except BaseException:
            for tmp in tmps.values():
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise

    def _range(self, hi: int, cursors: list[int], heads: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The entries of the columns from the runs' cursors up to ``hi`` (excluded), by (column, row).

        ``cursors[k]``: run k's next entry; ``heads[k]``: its column (a lower bound before run k is
        read), so a run with nothing below ``hi`` is not opened. A slice's end is a binary search on
        the memory-mapped columns (a few pages, the map dropped at once); the slice is read, not mapped.
        """
        pieces = []
        for run, n in enumerate(self._runs):
            start = cursors[run]
            if start >= n or heads[run] >= hi:
                continue
            mapped = np.memmap(self._run_path(run, "cols"), dtype=_RUN_DTYPE, mode="r", shape=(n,))
            stop = start + int(np.searchsorted(mapped[start:], hi, side="left"))
            heads[run] = int(mapped[stop]) if stop < n else hi
            del mapped
            if stop > start:
                pieces.append([_read(self._run_path(run, name), start, stop) for name in _RUN_ARRAYS])
            cursors[run] = stop
        if not pieces:  # columns no entry uses (a part may list a term it never counts)
            empty = np.zeros(0, dtype=_RUN_DTYPE)
            return empty, empty, empty
        cols, rows, tf = (np.concatenate(arrays) for arrays in zip(*pieces))
        if len(pieces) > 1:  # runs in row order: a stable sort on the column keeps rows ascending
            order = np.argsort(cols, kind="stable")
            cols, rows, tf = cols[order], rows[order], tf[order]
        return cols, rows, tf


def _column_ranges(indptr: np.ndarray, block_entries: int) -> list[tuple[int, int]]:
    """Consecutive column ranges [lo, hi) of at most ``block_entries`` entries (or a single column)."""
    ranges, lo, n_terms = [], 0, indptr.size - 1
    while lo < n_terms:
        hi = int(np.searchsorted(indptr, indptr[lo] + block_entries, side="right")) - 1
        hi = min(max(hi, lo + 1), n_terms)
        ranges.append((lo, hi))
        lo = hi
    return ranges


def _read(path: Path, start: int, stop: int) -> np.ndarray:
    return np.fromfile(path, dtype=_RUN_DTYPE, count=stop - start, offset=start * _RUN_DTYPE.itemsize)


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with room for ``size`` values (doubling, so appends cost amortised O(1)); new values 0."""
    if size <= array.size:
        return array
    grown = np.zeros(max(size, 2 * array.size), dtype=array.dtype)
    grown[:array.size] = array
    return grown
