"""Web archives (``.warc``, ``.warc.gz``, read with warcio): each HTML response is one document.

The archive is streamed record by record (warcio reads gzip members and HTTP chunking as it
goes), and a record's body is read up to :data:`~ragkit.ingest.html.MAX_PAGE_BYTES`, so a
2 GB crawl needs the memory of one page, not of the file. A ``response`` record with an HTTP
2xx status and an HTML content type is a page: its main text and metadata come from
:func:`~ragkit.ingest.html.extract_page`; its id is the record's target URI; ``url`` is the
page's canonical URL, else the target URI; ``date`` is the page's own date, else the crawl
date (``WARC-Date``). Every other record (requests, metadata, revisits, non-HTML or non-2xx
responses) is counted, and the counts are one line of the report for the file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ragkit.documents import Document
from ragkit.ingest.html import MAX_PAGE_BYTES, NoMainText, extract_page
from ragkit.ingest.report import LoadReport, display_path, library_error_reason, mib, require
from ragkit.ingest.text import iso_date

__all__ = ["iter_warc"]

_HTML_TYPES = ("text/html", "application/xhtml+xml")


def iter_warc(path: Path, doc_id: str, report: LoadReport, stem: str) -> Iterator[tuple[str, Document]]:
    """The HTML pages of one archive; locations are ``path#RECORD`` (records counted from 1)."""
    archive = require("warcio.archiveiterator", "WARC")
    others: Counter[str] = Counter()
    number = 0
    with open(path, "rb") as fh:
        try:
            for number, record in enumerate(archive.ArchiveIterator(fh), start=1):
                kind = _page_kind(record)
                if kind is not None:
                    others[kind] += 1
                    continue
                found = _page(record, f"{path}#{number}", report, display_path(path))
                if found is not None:
                    yield found
        except Exception as exc:  # noqa: BLE001 - warcio's errors on a damaged archive; pages so far are kept
            where = f"after record {number}" if number else "at its start"
            report._skip(str(path), library_error_reason(f"web archive ({where})", exc))
    if others:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(others.items()))
        report._skip(str(path), f"{sum(others.values())} records are not HTML pages and were not indexed ({counts})")
    elif number == 0:
        report._skip(str(path), "no records (empty web archive)")


def _page_kind(record: object) -> str | None:
    """None for an HTML page with a 2xx status, else what the record is, for the counts."""
    kind = getattr(record, "rec_type", "") or "unknown"
    if kind != "response":
        return f"{kind} records"
    http = getattr(record, "http_headers", None)
    if http is None:
        return "responses without HTTP headers"
    status = str(http.get_statuscode() or "")
    if not status.startswith("2"):
        return f"HTTP {status or '?'} responses"
    content_type = (http.get_header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type not in _HTML_TYPES:
        return f"{content_type or 'untyped'} responses"
    return None


def _page(record: object, location: str, report: LoadReport, source: str) -> tuple[str, Document] | None:
    headers = record.rec_headers  # type: ignore[attr-defined]
    url = headers.get_header("WARC-Target-URI") or ""
    data = record.content_stream().read(MAX_PAGE_BYTES + 1)  # type: ignore[attr-defined]
    if len(data) > MAX_PAGE_BYTES:
        report._skip(location, f"page larger than {mib(MAX_PAGE_BYTES)}; not read")
        return None
    if getattr(record.raw_stream, "limit", 0) > 0:  # type: ignore[attr-defined]  # bytes its Content-Length promised
        report._skip(location, f"{url or 'response'}: record truncated (the archive ends inside it)")
        return None
    if not url:
        report._skip(location, "response without WARC-Target-URI")
        return None
    try:
        page = extract_page(data, url=url)
    except NoMainText as exc:
        report._skip(location, f"{url}: {exc}")
        return None
    except Exception as exc:  # noqa: BLE001 - one broken page is a skip; the archive goes on
        report._skip(location, library_error_reason(f"page {url}", exc))
        return None
    date = page.date or iso_date(headers.get_header("WARC-Date"))
    doc = Document(id=display_path(url), text=page.text, title=page.title or url, date=date, source=source,
                   url=page.url or url, metadata=page.metadata)
    return location, doc
