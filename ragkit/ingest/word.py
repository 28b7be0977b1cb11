"""Word documents (``.docx``, read with python-docx): paragraphs and tables in document order.

A ``.docx`` file is a zip archive. Before python-docx opens it, the archive's directory is
checked: a member that unpacks to more than :data:`MAX_UNPACKED_BYTES` in all, or a
compression ratio above :data:`MAX_RATIO` (a zip bomb), is skipped with the reason. The sizes
checked are the ones Python's zip reader enforces (a member that unpacks to more than it
declares fails its CRC check), so memory stays bounded.

The title is the document's core property ``title``, else its first ``Title`` or ``Heading``
paragraph, else its first line; the date is the core property ``created``; ``author`` goes to
``metadata["author"]``. Table cells are read row by row, one line a cell.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragkit.documents import Document
from ragkit.ingest.report import MAX_TEXT_BYTES, LoadReport, display_path, mib, require
from ragkit.ingest.text import first_sentence_title

__all__ = ["MAX_RATIO", "MAX_UNPACKED_BYTES", "iter_docx"]

MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_RATIO = 200


def iter_docx(path: Path, doc_id: str, report: LoadReport, stem: str) -> Iterator[tuple[str, Document]]:
    """The one document of a Word file."""
    docx = require("docx", "Word (.docx)")
    problem = _zip_problem(path)
    if problem:
        report._skip(str(path), problem)
        return
    document = docx.Document(str(path))
    lines: list[str] = []
    heading = ""
    size = 0
    for paragraph in _paragraphs(document):
        text = paragraph.text.strip()
        if not text:
            continue
        style = (getattr(paragraph.style, "name", "") or "") if paragraph.style is not None else ""
        if not heading and (style == "Title" or style.startswith("Heading")):
            heading = text
        lines.append(text)
        size += len(text) + 1
        if size > MAX_TEXT_BYTES:
            report._skip(str(path), f"more than {mib(MAX_TEXT_BYTES)} of text, too large for one document; split it")
            return
    if not lines:
        report._skip(str(path), "no text in the document")
        return
    text = "\n".join(lines).replace("\r\n", "\n").replace("\r", "\n")
    props = document.core_properties
    title = _clean(props.title) or heading or first_sentence_title(text, markdown=False) or display_path(stem)
    created = props.created
    author = _clean(props.author)
    yield str(path), Document(id=display_path(doc_id), text=text, title=title,
                              date=created.date().isoformat() if created is not None else None,
                              source=display_path(path), metadata={"author": author} if author else {})


def _paragraphs(document: Any) -> Iterator[Any]:
    """Body paragraphs, and the paragraphs of table cells, in document order."""
    for block in document.iter_inner_content():
        if hasattr(block, "rows"):
            for row in block.rows:
                seen: set[int] = set()
                for cell in row.cells:  # a merged cell comes once per grid column it spans
                    if id(cell._tc) not in seen:
                        seen.add(id(cell._tc))
                        yield from cell.paragraphs
        else:
            yield block


def _zip_problem(path: Path) -> str | None:
    """Why this ``.docx`` is not opened (not a zip, a zip bomb), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        return f"not a Word document (not a zip archive: {exc})"
    unpacked = sum(m.file_size for m in members)
    if unpacked > MAX_UNPACKED_BYTES:
        return f"unpacks to {mib(unpacked)}, more than {mib(MAX_UNPACKED_BYTES)} (a zip bomb?); not read"
    for m in members:
        if m.file_size > 1024 * 1024 and m.file_size > MAX_RATIO * max(m.compress_size, 1):
            return (f"{m.filename} unpacks {m.file_size // max(m.compress_size, 1)} times its packed size "
                    f"(a zip bomb?); not read")
    return None


def _clean(value: object) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""
