"""Metadata filters: document date range, source glob and metadata fields, applied before ranking."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragkit.errors import InvalidArgumentError

__all__ = ["MAX_FIELD_VALUE", "Filters", "field_values", "parse_where"]

MAX_FIELD_VALUE = 1000
"""Longer metadata values are kept with the document but cannot be filtered on."""

WhereValue = str | int | float | bool


@dataclass(frozen=True)
class Filters:
    """Keep passages of documents dated within [since, until] (ISO dates, inclusive) whose
    source path matches ``source`` (a glob; without a leading ``/`` it may match any tail of
    the path, so ``news/*.txt`` and ``*.jsonl`` work) and whose metadata matches ``where``.

    ``where`` maps a metadata field to a value or a list of values: a document passes when,
    for every field, its value (or one of its list's values) equals one of them, exactly, as
    text (``5`` matches ``"5"``, ``True`` matches ``"true"``). A field no document has matches
    nothing.
    """

    since: str | None = None
    until: str | None = None
    source: str | None = None
    where: Mapping[str, WhereValue | Sequence[WhereValue]] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                try:
                    _dt.date.fromisoformat(value)
                except ValueError:
                    raise InvalidArgumentError(f"{name} must be a date YYYY-MM-DD, got {value!r}", param=name) from None
        if self.since and self.until and self.since > self.until:
            raise InvalidArgumentError(f"since {self.since} is after until {self.until}", param="since")
        if self.source is not None and not self.source.strip():
            raise InvalidArgumentError("source must not be empty", param="source")
        object.__setattr__(self, "where", _normalised_where(self.where))

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.since, self.until, self.source)) or bool(self.where)

    def sql(self) -> tuple[str, list[str]]:
        """A WHERE clause over the ``documents`` table ``d`` and its parameters."""
        clauses, params = [], []
        if self.since is not None:
            clauses.append("d.date >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("d.date <= ?")
            params.append(self.until)
        if self.source is not None:
            clause, source_params = self.source_sql()
            clauses.append(clause)
            params.extend(source_params)
        for key, values in (self.where or {}).items():
            marks = ",".join("?" * len(values))
            clauses.append(f"d.id IN (SELECT doc FROM fields WHERE key = ? AND value IN ({marks}))")
            params.extend((key, *values))
        return " AND ".join(clauses) or "1", params

    def source_sql(self) -> tuple[str, list[str]]:
        """The source part of :meth:`sql` alone (``1`` without a source filter)."""
        if self.source is None:
            return "1", []
        if self.source.startswith("/"):
            return "d.source GLOB ?", [self.source]
        return "(d.source GLOB ? OR d.source GLOB ?)", [self.source, "*/" + self.source]


def _normalised_where(where: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    if where is None:
        return {}
    if not isinstance(where, Mapping):
        raise InvalidArgumentError(f"where must be a mapping of field to value(s), got {type(where).__name__}")
    out: dict[str, tuple[str, ...]] = {}
    for key, value in where.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidArgumentError(f"where needs a field name, got {key!r}", param="where")
        values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        texts = [_as_text(v) for v in values]
        if not texts or any(t is None for t in texts):
            raise InvalidArgumentError(f"where {key}: values must be strings, numbers or booleans, got {value!r}", param="where")
        out[key] = tuple(dict.fromkeys(t for t in texts if t is not None))
    return out


def _as_text(value: Any) -> str | None:
    """A metadata value as the text it is indexed and compared as; None for other types."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return None


def field_values(metadata: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The (field, value) pairs of a document's metadata that can be filtered on.

    Scalars give one pair, lists one pair per scalar element; values longer than
    :data:`MAX_FIELD_VALUE` characters are left out.
    """
    for key, value in metadata.items():
        for item in value if isinstance(value, list) else (value,):
            text = _as_text(item)
            if text is not None and len(text) <= MAX_FIELD_VALUE:
                yield key, text


def parse_where(items: Iterable[str]) -> dict[str, list[str]]:
    """``["author=Иванов", "site=ng.ru", "site=rbc.ru"]`` -> ``{"author": ["Иванов"], "site": [...]}``.

    The text before the first ``=`` is the field; repeated fields are alternatives.
    """
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgumentError(f"--where must be FIELD=VALUE, got {item!r}")
        out.setdefault(key, []).append(value)
    return out
