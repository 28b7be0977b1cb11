"""Terminal output for the CLI: progress bars on stderr, result tables, one-line errors."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragkit.lexical.analysis import Analyzer
    from ragkit.documents import SearchResult

SNIPPET_CHARS = 240
TITLE_CHARS = 60


def shorten(text: str, limit: int) -> str:
    """Collapse whitespace and cut at a word boundary with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _rate_column() -> Any:  # noqa: ANN401
    """Items a second (documents, passages or vectors, with every worker of a cluster counted)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:  # noqa: ANN401
            return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")

    return Rate()


class RichProgress:
    """A rich progress bar on stderr that implements :class:`ragkit.progress.Progress`."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def start(self, stage: str, total: int | None = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

        self.finish()
        columns = [SpinnerColumn(), TextColumn("{task.description:<10}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn(), _rate_column(), TimeRemainingColumn()]
        columns.append(TextColumn("{task.fields[detail]}", style="progress.data.speed"))
        self._progress = Progress(*columns, console=stderr_console(), transient=False)
        self._progress.start()
        self._task = self._progress.add_task(stage, total=total, detail="")

    def detail(self, text: str) -> None:
        """A line of counts beside the bar (a streamed build's documents, passages and vectors a second)."""
        if self._progress is not None:
            self._progress.update(self._task, detail=text)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def finish(self) -> None:
        if self._progress is not None:
            task = self._progress.tasks[0]
            if task.total is None:
                self._progress.update(self._task, total=1, completed=1)
            self._progress.stop()
            self._progress = None


def print_error(message: str) -> None:
    sys.stderr.write(f"ragkit: error: {message}\n")


def highlight(text: str, query: str, analyzer: Analyzer | None) -> Any:
    """A rich Text with the words that match a query term (after stemming) in bold."""
    import re

    from rich.text import Text

    out = Text(text)
    if analyzer is None:
        return out
    wanted = set(analyzer.terms(query))
    for m in re.finditer(r"\w+", text):
        if wanted.intersection(analyzer.terms(m.group())):
            out.stylize("bold yellow", m.start(), m.end())
    return out


def print_results(query: str, results: list[SearchResult], analyzer: Analyzer | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not results:
        console.print(f"No passages for: {query}")
        return
    table = Table(title=f"{query}", title_justify="left", show_lines=True, expand=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("title", ratio=2)
    table.add_column("date", no_wrap=True)
    table.add_column("passage", ratio=5)
    for r in results:
        title = shorten(r.title or r.doc_id, TITLE_CHARS)
        if r.duplicates:
            title += f" (+{len(r.duplicates)} reprint{'s' if len(r.duplicates) > 1 else ''})"
        table.add_row(str(r.rank), f"{r.score:.3f}", title, r.date or "", highlight(shorten(r.text, SNIPPET_CHARS), query, analyzer))
    console.print(table)


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return (lines[0] if lines else "unknown error")[:2000]


def one_line(exc: BaseException) -> str:
    """One line for an exception that is not a RagkitError."""
    import errno
    import re
    import sqlite3

    damaged = "the index may be damaged: `ragkit info --verify` checks it"
    if isinstance(exc, sqlite3.DatabaseError):
        return f"SQLite: {first_line(str(exc))} ({damaged})"
    if isinstance(exc, MemoryError):
        return "out of memory (a damaged index file or an input too large for this machine)"
    if isinstance(exc, RecursionError):
        return "input nested too deeply"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return f"no space left on device{f' writing {exc.filename}' if exc.filename else ''}"
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or first_line(str(exc))}{where}"
    text = first_line(str(exc))
    if isinstance(exc, RuntimeError) and text.startswith("Error in "):  # FAISS: "Error in <signature> at f.cpp:N: why"
        match = re.search(r"\.(?:cpp|h):\d+: (.*)", text)
        return f"FAISS: {(match.group(1) if match else text)[:300]} ({damaged})"
    return f"internal error: {type(exc).__name__}: {text[:300]} (please report it; RAGKIT_DEBUG=1 shows the traceback)"

