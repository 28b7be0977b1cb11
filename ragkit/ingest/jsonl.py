"""JSONL (plain or gzip): one article a line, UTF-8, streamed line by line.

A line longer than :data:`~ragkit.ingest.report.MAX_TEXT_BYTES` is read in 1 MiB blocks and
dropped as ``file:LINE`` (a gzip bomb of one endless line included). A line that is not a
document (bad JSON, nested too deeply for the parser, an integer of more digits than Python
converts, no text, lone surrogate escapes) is skipped with the reason; the file goes on.

The fields ``_id``/``id``, ``text``/``content``, ``title``, ``date`` and ``url`` fill the
:class:`~ragkit.documents.Document`; every other field is kept in ``Document.metadata``:
strings, numbers, booleans and lists of them as they are, objects (and lists holding
objects) as their compact JSON text, ``null`` left out.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ragkit.documents import Document
from ragkit.ingest.report import MAX_TEXT_BYTES, LoadReport, display_path, mib, os_error_reason
from ragkit.ingest.text import iso_date

__all__ = ["KNOWN_FIELDS", "iter_jsonl", "metadata_of"]

KNOWN_FIELDS = frozenset({"_id", "id", "text", "content", "title", "date", "url"})

_SURROGATE = re.compile("[\ud800-\udfff]")


class _BadLine(ValueError):
    """A JSONL line that does not make a document; the message is the reason."""


def iter_jsonl(path: Path, report: LoadReport, stem: str, *, start: int = 0, end: int | None = None,
               first_line: int = 1) -> Iterator[tuple[str, Document]]:
    """One document per non-blank line; bad lines are skipped as ``path:LINE``.

    With ``start``/``end`` only bytes ``[start, end)`` of a plain file are read (both line starts;
    ``end`` None: to the end), their lines numbered from ``first_line``: a build cuts a big file
    into such ranges for its workers, and each range must give what a whole read gives for its
    lines. Only a whole read can tell that a file is empty. A gzip file cannot be read by range
    (ValueError, raised here rather than at the first document).
    """
    ranged = start != 0 or end is not None or first_line != 1
    if ranged and path.name.lower().endswith(".gz"):
        raise ValueError(f"a gzip file cannot be read by byte range: {display_path(path)}")
    if start < 0 or first_line < 1 or (end is not None and end < start):
        raise ValueError(f"bad byte range {start}..{end} (first line {first_line}) of {display_path(path)}")
    return _iter_jsonl(path, report, stem, start, end, first_line)


def _iter_jsonl(path: Path, report: LoadReport, stem: str, start: int, end: int | None,
                first_line: int) -> Iterator[tuple[str, Document]]:
    whole = start == 0 and end is None
    line_no = first_line - 1
    found_any = False
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            lines: IO[bytes] | _Window = fh
            if start:
                fh.seek(start)
            if end is not None:
                lines = _Window(fh, end - start)
            for line_no, raw in enumerate(_bounded_lines(lines, MAX_TEXT_BYTES), start=first_line):
                if raw is None:
                    found_any = True
                    report._skip(f"{path}:{line_no}", f"line longer than {mib(MAX_TEXT_BYTES)}; not read")
                    continue
                if line_no == 1 and start == 0 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if not raw.strip():
                    continue
                found_any = True
                location = f"{path}:{line_no}"
                try:
                    doc = _jsonl_document(raw, display_path(stem), line_no, display_path(path))
                except _BadLine as exc:
                    report._skip(location, str(exc))
                    continue
                yield location, doc
    except (OSError, EOFError, zlib.error) as exc:
        if line_no:
            report._skip(str(path), f"cannot read after line {line_no}: {exc}")
        elif isinstance(exc, OSError):
            report._skip(str(path), os_error_reason(exc))
        else:
            report._skip(str(path), f"cannot read: {exc}")
        return
    if whole and not found_any:
        report._skip(str(path), "empty file")


class _Window:
    """The next ``size`` bytes of a file, read by lines: a range read stops at its end."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        self._fh = fh
        self._left = size

    def readline(self, size: int) -> bytes:
        size = min(size, self._left)
        if size <= 0:
            return b""
        raw = self._fh.readline(size)
        self._left -= len(raw)
        return raw


def _bounded_lines(fh: IO[bytes] | _Window, limit: int) -> Iterator[bytes | None]:
    """The lines of ``fh``; a line over ``limit`` bytes is read in blocks, dropped, and given as None."""
    while True:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        if len(raw) > limit and not raw.endswith(b"\n"):
            while True:
                rest = fh.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
            continue
        yield raw


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _BadLine("not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _BadLine(f"bad JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise _BadLine("bad JSON: nested too deeply to parse") from None
    except ValueError as exc:  # e.g. an integer of more digits than int() converts (Python 3.11+)
        raise _BadLine(f"bad JSON: {' '.join(str(exc).split())[:160]}") from None


def _jsonl_document(raw: bytes, stem: str, line_no: int, source: str) -> Document:
    record = _parse(raw)
    if not isinstance(record, dict):
        raise _BadLine(f"not a JSON object but {type(record).__name__}")
    text = record.get("text")
    if text is None:
        text = record.get("content")
    if text is None:
        raise _BadLine('no "text" or "content" field')
    if not isinstance(text, str):
        raise _BadLine(f'"text" is not a string but {type(text).__name__}')
    if not text.strip():
        raise _BadLine("empty text")
    doc_id = _jsonl_id(record, stem, line_no)
    try:
        metadata = metadata_of({k: v for k, v in record.items() if k not in KNOWN_FIELDS})
        doc = Document(
            id=doc_id,
            text=text,
            title=_scalar_str(record.get("title")).strip(),
            date=iso_date(record.get("date")),
            source=source,
            url=record["url"] if isinstance(record.get("url"), str) and record["url"] else None,
            metadata=metadata,
        )
    except (ValueError, RecursionError) as exc:  # a value too large or deep to write back as JSON
        raise _BadLine(f"a field cannot be kept: {' '.join(str(exc).split())[:160]}") from None
    # JSON may escape lone surrogates ("\ud800"): not text, and no tokenizer accepts them.
    strings = [doc.id, doc.text, doc.title, doc.url or "", json.dumps(metadata, ensure_ascii=False)]
    if any(_SURROGATE.search(v) for v in strings):
        raise _BadLine("unpaired surrogate escape in a string")
    return doc


def metadata_of(fields: dict[str, Any]) -> dict[str, Any]:
    """Metadata values as kept: scalars and lists of scalars as they are, the rest as JSON text."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None or not key:
            continue
        if isinstance(value, (str, int, float, bool)):
            out[key] = value
        elif isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
            out[key] = value
        else:
            out[key] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return out


def _jsonl_id(record: dict[str, object], stem: str, line_no: int) -> str:
    for key in ("_id", "id"):
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            raise _BadLine(f'"{key}" is not a JSON scalar')
        doc_id = _scalar_str(value)
        if doc_id.strip():
            return doc_id
    return f"{stem}:{line_no}"


def _scalar_str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
