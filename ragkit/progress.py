"""Progress reporting: the library reports stages and counts; front ends decide how to show them."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Stages with counts. A front end may also define ``detail(text)``: a line of figures the
    library updates beside the count (a build's documents, passages and vectors a second)."""

    def start(self, stage: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    """The library default: report nothing."""

    def start(self, stage: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass
