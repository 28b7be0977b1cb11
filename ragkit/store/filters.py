"""Metadata filters: document date range and source glob, applied before ranking."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from ragkit.errors import InvalidArgumentError


@dataclass(frozen=True)
class Filters:
    """Keep passages of documents dated within [since, until] (ISO dates, inclusive) whose
    source path matches ``source`` (a glob; without a leading ``/`` it may match any tail of
    the path, so ``news/*.txt`` and ``*.jsonl`` work)."""

    since: str | None = None
    until: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                try:
                    _dt.date.fromisoformat(value)
                except ValueError:
                    raise InvalidArgumentError(f"--{name} must be a date YYYY-MM-DD, got {value!r}") from None
        if self.since and self.until and self.since > self.until:
            raise InvalidArgumentError(f"--since {self.since} is after --until {self.until}")
        if self.source is not None and not self.source.strip():
            raise InvalidArgumentError("--source must not be empty")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.since, self.until, self.source))

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
        return " AND ".join(clauses) or "1", params

    def source_sql(self) -> tuple[str, list[str]]:
        """The source part of :meth:`sql` alone (``1`` without a source filter)."""
        if self.source is None:
            return "1", []
        if self.source.startswith("/"):
            return "d.source GLOB ?", [self.source]
        return "(d.source GLOB ? OR d.source GLOB ?)", [self.source, "*/" + self.source]
