"""PDF files (read with pypdf, BSD-licensed): the text of each page, with where each page starts.

The file is opened, not read whole: pypdf seeks to the objects of each page as its text is
extracted, page by page. The pages' texts are joined by a blank line; ``Document.pages`` holds
the offset where each page starts, so every passage (and search result) knows its ``page``.
The title is the PDF's ``/Title`` when set, else the first line of text; the date is its
creation date; ``/Author`` goes to ``metadata["author"]``.

Skipped with a reason: an encrypted PDF that an empty password does not open, a PDF with no
pages, one with no text on any page (a scan: it needs OCR first), one whose text passes
:data:`~ragkit.ingest.report.MAX_TEXT_BYTES`, and any PDF that makes pypdf throw.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragkit.documents import Document
from ragkit.ingest.report import MAX_TEXT_BYTES, LoadReport, display_path, mib, require
from ragkit.ingest.text import first_sentence_title

__all__ = ["iter_pdf"]

_PAGE_SEPARATOR = "\n\n"


def iter_pdf(path: Path, doc_id: str, report: LoadReport, stem: str) -> Iterator[tuple[str, Document]]:
    """The one document of a PDF file."""
    pypdf = require("pypdf", "PDF")
    with open(path, "rb") as fh:
        reader = pypdf.PdfReader(fh)
        if reader.is_encrypted and not _opens_without_password(reader):
            report._skip(str(path), "encrypted PDF (needs a password); not read")
            return
        if len(reader.pages) == 0:
            report._skip(str(path), "PDF without pages")
            return
        parts: list[str] = []
        starts: list[int] = []
        size = 0
        for page in reader.pages:
            text = (page.extract_text() or "").replace("\r\n", "\n").replace("\r", "\n").strip()
            starts.append(size + (len(_PAGE_SEPARATOR) if parts else 0))  # where its text begins, if any
            if text:
                if parts:
                    size += len(_PAGE_SEPARATOR)
                parts.append(text)
                size += len(text)
            if size > MAX_TEXT_BYTES:
                report._skip(str(path), f"more than {mib(MAX_TEXT_BYTES)} of text, too large for one document; "
                                        "split the PDF")
                return
        if not parts:
            report._skip(str(path), f"no text on any of its {len(starts)} pages (a scan? it needs OCR first)")
            return
        info = _info(reader)
    text = _PAGE_SEPARATOR.join(parts)
    starts = [min(start, len(text)) for start in starts]  # a page with no text after the last one starts at the end
    title = info.get("title") or first_sentence_title(text, markdown=False) or display_path(stem)
    metadata = {"author": info["author"]} if info.get("author") else {}
    yield str(path), Document(id=display_path(doc_id), text=text, title=title, date=info.get("date"),
                              source=display_path(path), metadata=metadata, pages=tuple(starts))


def _opens_without_password(reader: Any) -> bool:
    try:
        return bool(reader.decrypt(""))
    except Exception:  # noqa: BLE001 - e.g. AES without the cryptography package: not readable here
        return False


def _info(reader: Any) -> dict[str, str]:
    """Title, author and creation date (ISO) from the document information, where readable."""
    out: dict[str, str] = {}
    try:
        meta = reader.metadata
        if meta is None:
            return out
        for key, value in (("title", meta.title), ("author", meta.author)):
            if isinstance(value, str) and value.strip():
                out[key] = " ".join(value.split())
        created = meta.creation_date
        if created is not None:
            out["date"] = created.date().isoformat()
    except Exception:  # noqa: BLE001 - a malformed info dictionary or date leaves the fields out
        pass
    return out
