"""The value types that flow through ragkit: documents in, passages inside, results out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Document:
    """One article. ``id`` is unique within an index; ``date`` is ISO ``YYYY-MM-DD`` or None.

    ``metadata``: other fields (a JSONL record's extra fields; a page's author, site, site
    name and language), JSON values that ``Filters(where=...)`` filters on. ``pages``: for a
    paged source (PDF), the offset in ``text`` where each page starts (page 1 at 0).
    """

    id: str
    text: str
    title: str = ""
    date: str | None = None
    source: str = ""
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    pages: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Passage:
    """A span of a document: ``document.text[start:end] == text``."""

    doc_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One ranked passage. ``score`` is the ranking score (cosine similarity in dense mode).

    ``page``: the page (from 1) its first character is on, for paged sources (PDF), else None.
    ``metadata``: its document's metadata fields.
    """

    rank: int
    score: float
    doc_id: str
    title: str
    date: str | None
    source: str
    start: int
    end: int
    text: str
    url: str | None = None
    mode: str = "dense"
    scores: dict[str, float] = field(default_factory=dict)
    page: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Other documents of this one's duplicate group (reprints), each {"doc_id", "source"}.
    duplicates: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "rank": self.rank,
            "score": self.score,
            "doc_id": self.doc_id,
            "title": self.title,
            "date": self.date,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "url": self.url,
            "mode": self.mode,
            "scores": dict(self.scores),
            "page": self.page,
            "metadata": dict(self.metadata),
            "duplicates": [dict(d) for d in self.duplicates],
        }
        return out


def search_response(query: str, mode: str, results: Sequence[SearchResult]) -> dict[str, object]:
    """One query's answer as ``ragkit search --json`` prints it, and as the server and MCP return it."""
    return {"query": query, "mode": mode, "results": [r.to_dict() for r in results]}
