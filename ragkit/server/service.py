"""What the HTTP API, the search page and MCP do, over one or more live indexes.

Every front end calls these methods, so a search answers the same object everywhere:
:func:`ragkit.search_response`, exactly what ``ragkit search --json`` prints. Limits on the
input are checked here once; a bad value is a :class:`ragkit.InvalidArgumentError`.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ragkit

from ragkit.server.live import SEARCH_LOCK, LiveIndex, single_threaded_blas

MAX_K = 1000
MAX_QUERY_CHARS = 1000
MAX_BATCH = 64
MAX_DOCUMENTS = 1000  # documents in one upsert
MODES = ("hybrid", "lexical", "dense")


class NotFoundError(ragkit.RagkitError):
    """No such index or document."""


@dataclass(frozen=True)
class SearchParams:
    k: int = 10
    mode: str = "hybrid"
    since: str | None = None
    until: str | None = None
    source: str | None = None
    per_doc: int = 3  # 0: no cap, as in the CLI

    def check(self) -> None:
        if not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise ragkit.InvalidArgumentError(f"k must be between 1 and {MAX_K}, got {self.k!r}")
        if self.mode not in MODES:
            raise ragkit.InvalidArgumentError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if not isinstance(self.per_doc, int) or self.per_doc < 0:
            raise ragkit.InvalidArgumentError(f"per_doc must be >= 0, got {self.per_doc!r}")
        if self.source is not None and len(self.source) > MAX_QUERY_CHARS:
            raise ragkit.InvalidArgumentError(f"source is longer than {MAX_QUERY_CHARS} characters")


def check_queries(queries: Sequence[str]) -> list[str]:
    if not queries:
        raise ragkit.InvalidArgumentError("give at least one query")
    if len(queries) > MAX_BATCH:
        raise ragkit.InvalidArgumentError(f"at most {MAX_BATCH} queries in one request, got {len(queries)}")
    for q in queries:
        if not isinstance(q, str) or not q.strip():
            raise ragkit.InvalidArgumentError("the query is empty")
        if len(q) > MAX_QUERY_CHARS:
            raise ragkit.InvalidArgumentError(f"a query is longer than {MAX_QUERY_CHARS} characters ({len(q)})")
    return list(queries)


def _blank(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


class Service:
    """Searches, documents, info and writes over the live indexes named by their folders."""

    def __init__(self, paths: Sequence[str | Path], *, poll: float = 0.25) -> None:
        if not paths:
            raise ragkit.InvalidArgumentError("give at least one index folder")
        self.indexes: dict[str, LiveIndex] = {}
        for p in paths:
            live = LiveIndex(p, poll=poll)
            name, n = live.name, 2
            while name in self.indexes:
                name, n = f"{live.name}-{n}", n + 1
            live.name = name
            self.indexes[name] = live
        self.default = next(iter(self.indexes))
        single_threaded_blas()  # after opening: FAISS brings its own OpenBLAS, loaded with the vectors
        self._write_lock = threading.Lock()

    def start(self) -> None:
        for live in self.indexes.values():
            live.start()

    def close(self) -> None:
        for live in self.indexes.values():
            live.close()

    def live(self, name: str | None = None) -> LiveIndex:
        key = name or self.default
        if key not in self.indexes:
            raise NotFoundError(f"no index named {key!r} (serving: {', '.join(self.indexes)})")
        return self.indexes[key]

    # -- reads -----------------------------------------------------------------------------
    def search(self, queries: Sequence[str], params: SearchParams, index: str | None = None) -> list[dict[str, Any]]:
        """One :func:`ragkit.search_response` object per query."""
        queries = check_queries(queries)
        params.check()
        filters = ragkit.Filters(since=_blank(params.since), until=_blank(params.until), source=_blank(params.source))
        with self.live(index).use() as idx, SEARCH_LOCK:
            results = idx.search_many(queries, params.k, mode=params.mode, filters=filters,
                                      per_doc=params.per_doc or None)
        return [ragkit.search_response(q, params.mode, res) for q, res in zip(queries, results)]

    def document(self, doc_id: str, start: int | None = None, end: int | None = None,
                 index: str | None = None) -> dict[str, Any]:
        """The whole document, and the span ``[start, end)`` of its text when given."""
        with self.live(index).use() as idx, SEARCH_LOCK:
            doc = idx.store.document(doc_id)  # an SQL lookup by id: ids never touch the filesystem
            generation = int(idx.manifest.get("generation") or 0)
        if doc is None:
            raise NotFoundError(f"no document with id {doc_id!r}")
        out: dict[str, Any] = {"id": doc.id, "title": doc.title, "date": doc.date, "source": doc.source,
                               "url": doc.url, "text": doc.text, "generation": generation, "span": None}
        if start is not None or end is not None:
            s, e = (0 if start is None else start), (len(doc.text) if end is None else end)
            if not 0 <= s <= e <= len(doc.text):
                raise ragkit.InvalidArgumentError(f"span {s}..{e} is outside the document (0..{len(doc.text)})")
            out["span"] = {"start": s, "end": e, "text": doc.text[s:e]}
        return out

    def info(self, index: str | None = None) -> dict[str, Any]:
        live = self.live(index)
        with live.use() as idx:
            data = idx.info()
        return {"name": live.name, "indexes": list(self.indexes), **data}

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "indexes": {name: {"generation": live.generation} for name, live in self.indexes.items()}}

    # -- writes ----------------------------------------------------------------------------
    def upsert(self, documents: Sequence[dict[str, Any]], index: str | None = None) -> dict[str, Any]:
        if not documents:
            raise ragkit.InvalidArgumentError("give at least one document")
        if len(documents) > MAX_DOCUMENTS:
            raise ragkit.InvalidArgumentError(f"at most {MAX_DOCUMENTS} documents in one request")
        docs = [_document(d) for d in documents]
        return self._write(index, add=docs)

    def delete(self, doc_id: str, index: str | None = None) -> dict[str, Any]:
        with self.live(index).use() as idx, SEARCH_LOCK:
            known = idx.store.document(doc_id) is not None
        if not known:
            raise NotFoundError(f"no document with id {doc_id!r}")
        return self._write(index, remove=[doc_id])

    def _write(self, index: str | None, **change: Any) -> dict[str, Any]:
        live = self.live(index)
        with self._write_lock:  # one writer per process; update_index takes the folder's lock too
            result = ragkit.update_index(live.path, **change)
            live.refresh()  # answer from the new generation at once, not at the next poll
        return {"index": live.name, "generation": live.generation, "documents": result.documents,
                "passages": result.passages, "added": result.added, "removed": result.removed}


def _document(d: dict[str, Any]) -> ragkit.Document:
    for key in ("id", "text"):
        if not isinstance(d.get(key), str) or not d[key].strip():
            raise ragkit.InvalidArgumentError(f"each document needs a non-empty string {key!r}")
    date = d.get("date")
    if date is not None:
        try:
            _dt.date.fromisoformat(date)
        except (TypeError, ValueError):
            raise ragkit.InvalidArgumentError(f"date must be YYYY-MM-DD, got {date!r}") from None
    metadata = d.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ragkit.InvalidArgumentError("metadata must be an object of field -> value")
    return ragkit.Document(id=d["id"], text=d["text"], title=d.get("title") or "", date=date,
                           source=d.get("source") or "api", url=d.get("url"), metadata=metadata)
