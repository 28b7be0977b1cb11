"""Documents and passages in SQLite.

A passage row holds only its document and character offsets; its text is sliced from the
document by SQLite's ``substr`` (which counts characters, like Python's ``str``), so the
stored offsets are the single source of truth: ``document.text[start:end] == passage.text``.
Passage ids are the ids of the vectors in FAISS and of the rows of the lexical index.

A document's ``metadata`` (JSON) and page starts (``pages``, JSON) are columns of its row,
and each filterable metadata value is also a row of ``fields`` (key, value, document), a
table clustered on that order, so ``Filters(where=...)`` is an index lookup. Stores written
before these existed have neither: they read as documents without metadata or pages, and a
``where`` filter on them matches nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ragkit.documents import Document
from ragkit.errors import IndexFormatError
from ragkit.store.filters import Filters, field_values

_SCHEMA = """
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL,  -- unique: documents_doc_id (_INDEXES)
    title TEXT NOT NULL,
    date TEXT,
    source TEXT NOT NULL,
    url TEXT,
    text TEXT NOT NULL,
    title_prefix INTEGER,  -- 1: the title was prefixed to its passages when they were embedded
    metadata TEXT,  -- JSON object of the document's other fields, or NULL
    pages TEXT  -- JSON array: the offset where each page starts (paged sources), or NULL
);
CREATE TABLE fields (  -- one row per filterable metadata value (see filters.field_values)
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    doc INTEGER NOT NULL,
    PRIMARY KEY (key, value, doc)
) WITHOUT ROWID;
CREATE TABLE passages (
    id INTEGER PRIMARY KEY,
    doc INTEGER NOT NULL REFERENCES documents(id),
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL
);
CREATE TABLE arrays (  -- whole-column arrays a search needs, stored once so no search scans a table
    name TEXT PRIMARY KEY,
    dtype TEXT NOT NULL,
    data BLOB NOT NULL
);
"""
# Made once the rows are in (Store.commit): sorting a million keys into a new index took 2.4 s
# where keeping the indexes up to date row by row took 4.2 s more (1M documents).
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS documents_doc_id ON documents(doc_id);
CREATE INDEX IF NOT EXISTS passages_doc ON passages(doc);
CREATE INDEX IF NOT EXISTS documents_date ON documents(date);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
"""

_DOC_OF = "passage_document_rows"

_PASSAGE_SELECT = """
SELECT p.id, d.doc_id, d.title, d.date, d.source, d.url, p.start, p."end",
       substr(d.text, p.start + 1, p."end" - p.start), {metadata}, {pages}
FROM passages p JOIN documents d ON d.id = p.doc
"""


@dataclass(frozen=True, slots=True)
class StoredPassage:
    id: int
    doc_id: str
    title: str
    date: str | None
    source: str
    url: str | None
    start: int
    end: int
    text: str
    metadata: dict[str, Any]
    page: int | None  # the page (from 1) its first character is on; None: not a paged source


def _json(value: str | None, default: Any) -> Any:
    return default if value is None else json.loads(value)


def _stored_passage(row: tuple[Any, ...]) -> StoredPassage:
    pages = _json(row[10], None)
    page = bisect_right(pages, row[6]) if pages else None
    return StoredPassage(*row[:9], _json(row[9], {}), page)


class StoredDocument(NamedTuple):
    """What an update needs to know of a document it keeps."""

    row: int  # its row id (the id of the document-level BM25 row)
    title_prefix: bool | None  # title embedded with its passages; None: not recorded
    passages: list[tuple[int, int, int]]  # (passage id, start, end), in id order


class Store:
    """An SQLite file of documents and passages."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._columns: tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None = None
        self._doc_of: np.ndarray | None = None
        self._has = {r[1] for r in conn.execute("PRAGMA table_info(documents)")}
        self._has |= {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self._select = _PASSAGE_SELECT.format(metadata=self._column("metadata"), pages=self._column("pages"))

    def _column(self, name: str) -> str:
        """``d.NAME``, or NULL in a store written before the column existed."""
        return f"d.{name}" if name in self._has else "NULL"

    @classmethod
    def create(cls, path: str | Path) -> Store:
        """A new, empty store file. It is written without SQLite's own syncing: the builder
        fsyncs the finished file before the manifest names it, and an unnamed file is garbage."""
        p = Path(path)
        p.unlink(missing_ok=True)
        conn = sqlite3.connect(p)
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages while it is written (a fixed share of a budget)
        conn.executescript(_SCHEMA)
        return cls(conn, p)

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open read-only; a missing or foreign file is an IndexFormatError."""
        p = Path(path)
        if not p.is_file():
            raise IndexFormatError(f"passage store {p} is missing")
        try:
            # absolute, not resolved: a reader's pinned link must not be followed to the (maybe unlinked) name
            conn = sqlite3.connect(f"{Path(os.path.abspath(p)).as_uri()}?mode=ro", uri=True, check_same_thread=False)
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(f"passage store {p} is not a ragkit SQLite file: {exc}") from exc
        if not {"documents", "passages"} <= tables:
            raise IndexFormatError(f"passage store {p} lacks ragkit tables")
        return cls(conn, p)

    def close(self) -> None:
        self._conn.close()

    # -- writing -------------------------------------------------------------------------
    def add_documents(self, docs: Sequence[Document], title_prefix: Sequence[bool]) -> list[int]:
        """Insert documents in one statement; returns their row ids (1, 2, ... in order)."""
        first = int(self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM documents").fetchone()[0]) + 1
        rows = list(range(first, first + len(docs)))
        self._conn.executemany(
            "INSERT INTO documents (id, doc_id, title, date, source, url, text, title_prefix, metadata, pages) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((row, d.id, d.title, d.date, d.source, d.url, d.text, int(p),
              json.dumps(d.metadata, ensure_ascii=False) if d.metadata else None,
              json.dumps(list(d.pages)) if d.pages else None) for row, d, p in zip(rows, docs, title_prefix)),
        )
        self._conn.executemany(
            "INSERT OR IGNORE INTO fields (key, value, doc) VALUES (?, ?, ?)",
            ((key, value, row) for row, d in zip(rows, docs) for key, value in field_values(d.metadata)),
        )
        return rows

    def add_passages(self, rows: Iterable[tuple[int, int, int, int]]) -> None:
        """Insert a new store's (passage id, document row, start, end) rows and its passage -> document array."""
        rows = list(rows)
        self.insert_passages(rows)
        self.put_document_rows(_document_rows_of(self.path, [(r[0], r[1]) for r in rows]))

    def insert_passages(self, rows: Iterable[tuple[int, int, int, int]]) -> None:
        """Insert passage rows only; a writer adding them a part at a time then calls :meth:`put_document_rows`."""
        self._conn.executemany('INSERT INTO passages (id, doc, start, "end") VALUES (?, ?, ?, ?)', rows)

    def put_document_rows(self, doc_of: np.ndarray) -> None:
        """Keep the document row of each passage, indexed by passage id (-1: unused id)."""
        self.put_array(_DOC_OF, np.asarray(doc_of).astype("<i4"))

    def put_array(self, name: str, array: np.ndarray) -> None:
        """Keep a whole array (``<i4``, ``<u8``...) under ``name``: read back by :meth:`array`."""
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        self._conn.execute("INSERT OR REPLACE INTO arrays (name, dtype, data) VALUES (?, ?, ?)",
                           (name, data.dtype.str, data.tobytes()))

    def commit(self) -> None:
        """Make the indexes (once) and commit: a writer calls it when every row is in."""
        self._conn.executescript(_INDEXES)
        self._conn.commit()

    # -- reading -------------------------------------------------------------------------
    def passages(self, ids: Sequence[int]) -> dict[int, StoredPassage]:
        """The passages with these ids (missing ids are simply absent)."""
        rows = self._where_in(f"{self._select} WHERE p.id IN", [int(i) for i in ids if int(i) >= 0])
        return {row[0]: _stored_passage(row) for row in rows}

    def _where_in(self, sql: str, values: list[int]) -> Iterator[tuple[Any, ...]]:
        """The rows of ``sql`` followed by ``(?, ?, ...)`` over ``values``, 500 at a time."""
        for lo in range(0, len(values), 500):
            chunk = values[lo : lo + 500]
            yield from self._conn.execute(f"{sql} ({','.join('?' * len(chunk))})", chunk)

    def embedded_texts(self, ids: Sequence[int]) -> list[str]:
        """The text a build embedded for each passage id: its document's title and a newline
        first where the title was embedded with it (``title_prefix``), then the passage."""
        found = dict(self._where_in("SELECT p.id, CASE WHEN d.title_prefix THEN d.title || char(10) ELSE '' END "
                                    '|| substr(d.text, p.start + 1, p."end" - p.start) FROM passages p '
                                    "JOIN documents d ON d.id = p.doc WHERE p.id IN", [int(i) for i in ids]))
        return [found[int(i)] for i in ids]

    def documents_at(self, rows: Sequence[int]) -> list[Document]:
        """The documents of these row ids, in the order given."""
        select = self._document_select().replace("SELECT ", "SELECT d.id, ", 1) + " WHERE d.id IN"
        found = {int(row[0]): _document(row[1:]) for row in self._where_in(select, [int(r) for r in rows])}
        return [found[int(r)] for r in rows]

    def iter_passages(self) -> Iterator[StoredPassage]:
        for row in self._conn.execute(f"{self._select} ORDER BY p.id"):
            yield _stored_passage(row)

    def passage_docs(self) -> dict[int, str]:
        """Passage id -> document id, for every passage (used to score documents)."""
        rows = self._conn.execute("SELECT p.id, d.doc_id FROM passages p JOIN documents d ON d.id = p.doc")
        return dict(rows)

    def allowed_passages(self, filters: Filters) -> np.ndarray:
        """Ids of the passages whose documents pass ``filters`` (sorted).

        Dates are compared in NumPy over columns read once (as SQLite compares text: by code
        point, undated documents never pass); a source glob is matched by SQLite over the
        distinct sources only. A million documents filter in milliseconds, not a JOIN's seconds.
        """
        rows, dates, source_codes, sources = self._document_columns()
        keep = np.ones(rows.shape[0], dtype=bool)
        if filters.where:
            keep &= self._where_mask(rows, filters)
        if filters.since is not None:
            keep &= (dates != "") & (dates >= filters.since)
        if filters.until is not None:
            keep &= (dates != "") & (dates <= filters.until)
        if filters.source is not None:
            where, params = filters.source_sql()
            matched = {r[0] for r in self._conn.execute(f"SELECT DISTINCT d.source FROM documents d WHERE {where}", params)}
            keep &= np.isin(source_codes, [i for i, name in enumerate(sources) if name in matched])
        doc_of = self.passage_document_rows()
        _check_ids(self.path, "document", rows, 1)
        allowed_rows = np.zeros(int(rows.max(initial=0)) + 1, dtype=bool)
        allowed_rows[rows[keep]] = True
        return np.flatnonzero((doc_of >= 0) & allowed_rows[np.maximum(doc_of, 0)])

    def _where_mask(self, rows: np.ndarray, filters: Filters) -> np.ndarray:
        """Which of ``rows`` have, for every key of ``filters.where``, one of its values.

        Each key is one lookup in the clustered ``fields`` table: the cost follows the number
        of documents that match, not the size of the store.
        """
        if "fields" not in self._has:
            return np.zeros(rows.shape[0], dtype=bool)
        hit = np.ones(int(rows.max(initial=0)) + 1, dtype=bool)
        for key, values in filters.where.items():
            marks = ",".join("?" * len(values))
            found = self._conn.execute(f"SELECT doc FROM fields WHERE key = ? AND value IN ({marks})", (key, *values))
            matched = np.fromiter((r[0] for r in found), dtype=np.int64)
            mask = np.zeros_like(hit)
            mask[matched[matched < mask.shape[0]]] = True
            hit &= mask
        return hit[rows]

    def _document_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Row ids, dates ('' when undated), source codes and the distinct sources; read once."""
        if self._columns is None:
            rows, dates, sources = [], [], []
            for row, date, source in self._conn.execute("SELECT id, date, source FROM documents"):
                rows.append(row)
                dates.append(date or "")
                sources.append(source)
            names, codes = np.unique(np.asarray(sources, dtype=str), return_inverse=True) if sources else (np.zeros(0, str), np.zeros(0, np.int64))
            self._columns = (np.asarray(rows, dtype=np.int64), np.asarray(dates, dtype=str), codes, names.tolist())
        return self._columns

    def passage_document_rows(self) -> np.ndarray:
        """Document row id of each passage, indexed by passage id (-1 for unused ids); read once.

        Read from the array the writer stored (one blob: 4 MB at 1M passages, where scanning
        the passages table took 0.13 s per 100k), checked against the tables' largest ids;
        stores written before it existed are scanned.
        """
        if self._doc_of is None:
            self._doc_of = self._stored_document_rows()
            if self._doc_of is None:
                self._doc_of = self._scan_document_rows()
        return self._doc_of

    def _scan_document_rows(self) -> np.ndarray:
        return _document_rows_of(self.path, self._conn.execute("SELECT id, doc FROM passages").fetchall())

    def _stored_document_rows(self) -> np.ndarray | None:
        top_passage, top_doc = self._conn.execute(
            "SELECT (SELECT COALESCE(MAX(id), -1) FROM passages), (SELECT COALESCE(MAX(id), 0) FROM documents)").fetchone()
        stored = self.array(_DOC_OF, "<i4", 1, int(top_passage) + 1, label="passage -> document")
        if stored is None:
            return None
        out = stored.ravel()
        if out.size and (int(out.min()) < -1 or int(out.max()) > int(top_doc)):
            raise IndexFormatError(f"passage store {self.path} is damaged: its passage -> document array "
                                   f"names documents outside 1..{int(top_doc)}")
        return out.astype(np.int64)

    def array(self, name: str, dtype: str, width: int, rows: int | None = None, *, label: str | None = None
              ) -> np.ndarray | None:
        """The array kept under ``name`` as ``(n, width)`` rows of ``dtype`` (``rows``: the n it
        must have), or None when the store has none; a mismatch is an IndexFormatError that calls
        it ``label`` (default: its name)."""
        try:
            row = self._conn.execute("SELECT dtype, data FROM arrays WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError:  # no arrays table: a store written before it existed
            return None
        if row is None:
            return None
        size = np.dtype(dtype).itemsize * width
        if row[0] != dtype or not isinstance(row[1], bytes) or len(row[1]) % size or (
                rows is not None and len(row[1]) != rows * size):
            raise IndexFormatError(f"passage store {self.path} is damaged: its {label or name} array has the wrong "
                                   f"shape or type")
        return np.frombuffer(row[1], dtype=dtype).reshape(-1, width)

    def document_passages(self) -> dict[str, StoredDocument]:
        """Every document's row id, title-prefix flag and passages, by document id."""
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(documents)")}
        flag = "title_prefix" if "title_prefix" in columns else "NULL"  # stores written before the column existed
        out: dict[str, StoredDocument] = {}
        by_row: dict[int, list[tuple[int, int, int]]] = {}
        for doc_id, row, prefixed in self._conn.execute(f"SELECT doc_id, id, {flag} FROM documents"):
            passages = by_row.setdefault(int(row), [])
            out[doc_id] = StoredDocument(int(row), None if prefixed is None else bool(prefixed), passages)
        for pid, doc, start, end in self._conn.execute('SELECT id, doc, start, "end" FROM passages ORDER BY id'):
            if doc not in by_row:
                raise IndexFormatError(f"passage store {self.path} is inconsistent: passage {pid} has no document")
            by_row[doc].append((pid, start, end))
        return out

    def document_ids(self, filters: Filters) -> list[str]:
        """Ids of the documents that pass ``filters``."""
        if filters.where and "fields" not in self._has:
            return []
        where, params = filters.sql()
        return [r[0] for r in self._conn.execute(f"SELECT d.doc_id FROM documents d WHERE {where}", params)]

    def _document_select(self) -> str:
        return (f"SELECT doc_id, text, title, date, source, url, {self._column('metadata')}, {self._column('pages')} "
                "FROM documents d")

    def documents(self) -> list[Document]:
        """Every document, in insertion order."""
        rows = self._conn.execute(f"{self._document_select()} ORDER BY id")
        return [_document(row) for row in rows]

    def document(self, doc_id: str) -> Document | None:
        row = self._conn.execute(f"{self._document_select()} WHERE doc_id = ?", (doc_id,)).fetchone()
        return _document(row) if row else None

    def counts(self) -> dict[str, int]:
        docs = self._conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        passages = self._conn.execute("SELECT count(*) FROM passages").fetchone()[0]
        return {"documents": int(docs), "passages": int(passages)}


def _check_ids(path: Path, what: str, ids: np.ndarray, first: int, unused: int = 0) -> None:
    """ragkit numbers rows from ``first`` up, with at most ``unused`` ids left out: ids beyond are
    damage, and arrays indexed by id are never sized by a damaged value (an id of 10^12 is 7 TiB)."""
    if ids.size and (int(ids.min()) < first or int(ids.max()) >= ids.size + first + unused):
        raise IndexFormatError(f"passage store {path} is damaged: {what} ids run from {int(ids.min())} to "
                               f"{int(ids.max())} for {ids.size} rows")


def _document_rows_of(path: Path, id_doc: Sequence[tuple[int, int]]) -> np.ndarray:
    """The document row of each passage, indexed by passage id, from (passage id, document row) pairs."""
    pairs = np.array(id_doc, dtype=np.int64).reshape(-1, 2)
    _check_ids(path, "passage", pairs[:, 0], 0, len(pairs) + 1024)  # removed passages' ids stay unused (reuse.py)
    out = np.full(int(pairs[:, 0].max(initial=-1)) + 1, -1, dtype=np.int64)
    out[pairs[:, 0]] = pairs[:, 1]
    return out


def _document(row: tuple[Any, ...]) -> Document:
    return Document(*row[:6], metadata=_json(row[6], {}), pages=tuple(_json(row[7], ())))
