"""What the framework retrievers share: the index they open, their search options, the
metadata of a result, and turning a framework's documents into ragkit documents.

Only the public core (``import ragkit``) is used here, never ragkit's private modules.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Union

import ragkit
from ragkit import InvalidArgumentError, RagkitError

if TYPE_CHECKING:
    from ragkit import Filters, FusionConfig, Index, SearchResult

IndexSource = Union[str, "os.PathLike[str]", "Index"]
FiltersLike = Union["Filters", Mapping[str, Any], None]
FusionLike = Union["FusionConfig", Mapping[str, Any], None]


class MissingExtraError(RagkitError, ImportError):
    """A framework adapter was imported without its framework installed."""


def missing_extra(extra: str, framework: str, exc: ImportError) -> MissingExtraError:
    return MissingExtraError(f"ragkit's {framework} retriever needs {framework}: pip install 'ragkit[{extra}]' ({exc})")


def to_filters(value: FiltersLike) -> Filters | None:
    """A :class:`ragkit.Filters` from itself, a mapping of since/until/source, or None."""
    if value is None or isinstance(value, ragkit.Filters):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"since", "until", "source"}
        if unknown:
            raise InvalidArgumentError(f"unknown filter {sorted(unknown)[0]!r} (ragkit filters: since, until, source)")
        return ragkit.Filters(**value)
    raise InvalidArgumentError(f"filters must be a ragkit.Filters or a mapping, got {type(value).__name__}")


def to_fusion(value: FusionLike) -> FusionConfig | None:
    """A :class:`ragkit.FusionConfig` from itself, a mapping of its fields, or None."""
    if value is None or isinstance(value, ragkit.FusionConfig):
        return value
    if isinstance(value, Mapping):
        try:
            return ragkit.FusionConfig(**value)
        except TypeError as exc:
            raise InvalidArgumentError(f"bad fusion options: {exc}") from None
    raise InvalidArgumentError(f"fusion must be a ragkit.FusionConfig or a mapping, got {type(value).__name__}")


_OPTION_NAMES = ("k", "mode", "filters", "per_doc", "fusion")


@dataclass(frozen=True)
class SearchOptions:
    """The options of :meth:`ragkit.Index.search` a retriever holds; a call may override them."""

    k: int = 4
    mode: str = "hybrid"
    filters: Filters | None = None
    per_doc: int | None = 3
    fusion: FusionConfig | None = None

    @classmethod
    def of(cls, *, k: int, mode: str, filters: FiltersLike, per_doc: int | None, fusion: FusionLike) -> SearchOptions:
        return cls(k=k, mode=mode, filters=to_filters(filters), per_doc=per_doc, fusion=to_fusion(fusion))

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise InvalidArgumentError(f"k must be a positive integer, got {self.k!r}")
        if self.per_doc is not None and (isinstance(self.per_doc, bool) or not isinstance(self.per_doc, int)
                                         or self.per_doc < 1):
            raise InvalidArgumentError(f"per_doc must be a positive integer or None, got {self.per_doc!r}")
        if not isinstance(self.mode, str):
            raise InvalidArgumentError(f"mode must be a string, got {self.mode!r}")

    def override(self, **changes: Any) -> SearchOptions:
        """These options with ``changes`` (any of k, mode, filters, per_doc, fusion)."""
        unknown = set(changes) - set(_OPTION_NAMES)
        if unknown:
            raise InvalidArgumentError(f"unknown search option {sorted(unknown)[0]!r} (choose from {', '.join(_OPTION_NAMES)})")
        given = dict(changes)
        if "filters" in given:
            given["filters"] = to_filters(given["filters"])
        if "fusion" in given:
            given["fusion"] = to_fusion(given["fusion"])
        return replace(self, **given) if given else self


class IndexHandle:
    """An index given as a path (opened on first use, then kept) or as an open :class:`ragkit.Index`.

    Searches hold a lock: one index is searched by one thread at a time, so the async paths,
    which search in worker threads, never race on the index's lazily loaded parts.
    """

    def __init__(self, source: IndexSource) -> None:
        if not isinstance(source, (str, os.PathLike, ragkit.Index)):
            raise InvalidArgumentError(f"index must be a path or a ragkit.Index, got {type(source).__name__}")
        self.source = source
        self._index: Index | None = source if isinstance(source, ragkit.Index) else None
        self._lock = threading.Lock()

    @property
    def index(self) -> Index:
        with self._lock:
            return self._open()

    def _open(self) -> Index:
        if self._index is None:
            self._index = ragkit.Index.open(self.source)  # type: ignore[arg-type]
        return self._index

    def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        with self._lock:
            return self._open().search(query, k=options.k, mode=options.mode, filters=options.filters,
                                       per_doc=options.per_doc, fusion=options.fusion)

    async def asearch(self, query: str, options: SearchOptions) -> list[SearchResult]:
        """:meth:`search` in a worker thread, so the event loop runs on meanwhile."""
        return await asyncio.to_thread(self.search, query, options)


def metadata(result: SearchResult) -> dict[str, Any]:
    """What a framework document carries besides its text: where it comes from and how it ranked."""
    return {
        "doc_id": result.doc_id,
        "title": result.title,
        "date": result.date,
        "source": result.source,
        "url": result.url,
        "start": result.start,
        "end": result.end,
        "rank": result.rank,
        "score": result.score,
        "scores": dict(result.scores),
        "mode": result.mode,
    }


def passage_id(result: SearchResult) -> str:
    """A stable id of a passage: its document id and character span."""
    return f"{result.doc_id}:{result.start}-{result.end}"


# -- ingesting a framework's documents ------------------------------------------------------
KEPT_METADATA = ("id", "doc_id", "title", "date", "source", "url")
"""Metadata keys ``from_documents`` maps onto a ragkit document; every other key is dropped."""


def ragkit_document(text: str, meta: Mapping[str, Any], doc_id: str | None, position: int) -> ragkit.Document:
    """A ragkit document from a framework document's text, metadata and id (if it has one)."""
    ident = doc_id or meta.get("doc_id") or meta.get("id") or f"doc-{position}"
    return ragkit.Document(id=str(ident), text=text, title=str(meta.get("title") or ""), date=_iso_date(meta.get("date")),
                           source=str(meta.get("source") or ""), url=str(meta["url"]) if meta.get("url") else None)


def _iso_date(value: Any) -> str | None:
    """``YYYY-MM-DD`` from a date, a datetime or an ISO string; None for anything else."""
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()[:10]
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            return None
    return None


def build(documents: Iterable[ragkit.Document], index_dir: str | os.PathLike[str], model: str | None) -> Index:
    """Build ``index_dir`` from ``documents`` (model None: chosen by the corpus language) and open it."""
    docs = list(documents)
    if not docs:
        raise InvalidArgumentError("from_documents needs at least one document")
    ragkit.build_index(docs, index_dir, model=model)
    return ragkit.Index.open(index_dir)
