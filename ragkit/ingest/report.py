"""What a loading run saw (:class:`LoadReport`), and the reasons it gives for what it skipped.

Locations and names shown in a report, and the ids and sources taken from file names, go
through :func:`display_path`: a file name that is not valid UTF-8 (byte ``\\xff`` on Linux)
reaches Python as lone surrogates, which SQLite, JSON and a UTF-8 terminal all refuse; such
bytes are shown as U+FFFD instead.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from importlib import import_module
from types import ModuleType

logger = logging.getLogger("ragkit.ingest")

_SURROGATE = re.compile("[\ud800-\udfff]")

# The largest text file (one article), JSONL line or extracted document text read.
MAX_TEXT_BYTES = 10 * 1024 * 1024


@dataclass
class LoadReport:
    """What one loading run saw: counts, and every file or line it skipped, with the reason."""

    files: int = 0
    documents: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, reasons: int = 0) -> str:
        """One short line, e.g. ``"3 files, 41 documents, 2 skipped"``; with ``reasons``, the
        first that many skips follow as ``LOCATION: REASON``."""
        line = (
            f"{_plural(self.files, 'file')}, {_plural(self.documents, 'document')}, "
            f"{len(self.skipped)} skipped"
        )
        if reasons > 0 and self.skipped:
            shown = "; ".join(f"{loc}: {why}" for loc, why in self.skipped[:reasons])
            more = f"; and {len(self.skipped) - reasons} more" if len(self.skipped) > reasons else ""
            line += f": {shown}{more}"
        return line

    def _skip(self, location: str, reason: str) -> None:
        location = display_path(location)
        logger.debug("skipped %s: %s", location, reason)
        self.skipped.append((location, display_path(reason)))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def display_path(value: str | os.PathLike[str]) -> str:
    """``value`` as valid Unicode: undecodable file-name bytes (lone surrogates) become U+FFFD."""
    text = os.fspath(value)
    if not _SURROGATE.search(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # surrogates that no file-name byte gives (e.g. from JSON)
        return _SURROGATE.sub("\ufffd", text)


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.{0 if size % (1024 * 1024) == 0 else 1}f} MiB"


def too_large_reason(size: int, limit: int = MAX_TEXT_BYTES) -> str:
    return (f"larger than {mib(limit)} ({mib(size)}), too large for one article; split it into "
            "smaller files, or into JSONL with one article a line")


def os_error_reason(exc: OSError) -> str:
    if exc.errno == getattr(os, "ELOOP", 40):
        return "symlink loop"
    return f"cannot read: {exc.strerror or exc}"


def library_error_reason(what: str, exc: BaseException) -> str:
    """The reason for a file that made a format library raise (the message is cut to one line)."""
    message = " ".join(str(exc).split())[:200]
    return f"{what} cannot be read: {type(exc).__name__}{': ' + message if message else ''}"


class MissingExtraError(ImportError):
    """An optional package of the ``formats`` extra is not installed; the message says how."""


def require(module: str, what: str, extra: str = "formats") -> ModuleType:
    """Import an optional package, or raise :class:`MissingExtraError` naming the extra."""
    try:
        imported = import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{what} needs {module.split('.')[0]}: pip install 'ragkit[{extra}]' ({exc})") from exc
    quiet_logs(module.split(".")[0])
    return imported


def quiet_logs(*names: str) -> None:
    """Keep these libraries' log records off a bare stderr.

    The format libraries log warnings and errors about every sloppy file they read; without a
    handler of the application's, Python prints those on stderr. A NullHandler on their logger
    stops that and still lets an application's own logging configuration see them.
    """
    for name in names:
        library = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in library.handlers):
            library.addHandler(logging.NullHandler())
