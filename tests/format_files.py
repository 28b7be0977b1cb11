"""Real files for the format tests, written by the real tools: warcio, fpdf2, python-docx."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest


def write_warc(path: Path, pages: list[tuple[str, bytes, str]], extra: bool = True) -> None:
    """A gzipped (``.warc.gz``) or plain WARC: one request + response per (url, html, crawl date);
    with ``extra``, also a PNG response, a 404 page and a metadata record."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=path.name.endswith(".gz"))

        def response(url: str, body: bytes, date: str, status: str = "200 OK", ctype: str = "text/html; charset=utf-8") -> None:
            http = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n"),
                                                          warc_headers_dict={"WARC-Date": date}))
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http,
                                                          warc_headers_dict={"WARC-Date": date}))

        for url, body, date in pages:
            response(url, body, date)
        if extra:
            response("https://example.org/logo.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "2024-06-01T10:00:00Z", ctype="image/png")
            response("https://example.org/missing", b"<html><body><p>Not found</p></body></html>", "2024-06-01T10:00:00Z",
                     status="404 Not Found")
            writer.write_record(writer.create_warc_record("https://example.org/", "metadata",
                                                          payload=io.BytesIO(b"outlinks: none"),
                                                          warc_content_type="application/warc-fields"))


def cyrillic_font() -> str | None:
    """A TTF with Cyrillic: DejaVu Sans from matplotlib (bench extra) or the system, if present."""
    candidates = [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
    try:
        import matplotlib

        candidates.insert(0, Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    except ImportError:
        pass
    return next((str(p) for p in candidates if p.is_file()), None)


def write_pdf(path: Path, pages: list[list[str]], title: str | None = None, author: str | None = None,
              created: dt.datetime | None = None, user_password: str | None = None, cyrillic: bool = False) -> None:
    """A PDF written by fpdf2: one list of lines per page (an empty list: a page without text)."""
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 (test extra) writes the test PDFs")
    pdf = fpdf.FPDF()
    if cyrillic:
        font = cyrillic_font()
        if font is None:
            pytest.skip("no TTF font with Cyrillic (DejaVu Sans) on this machine to write a Russian PDF")
        pdf.add_font("DejaVu", "", font)
        pdf.set_font("DejaVu", size=12)
    else:
        pdf.set_font("Helvetica", size=12)
    if title:
        pdf.set_title(title)
    if author:
        pdf.set_author(author)
    if created:
        pdf.set_creation_date(created)
    if user_password is not None:
        pdf.set_encryption(owner_password="owner-secret", user_password=user_password)
    for lines in pages:
        pdf.add_page()
        if not lines:
            pdf.rect(20, 20, 100, 60, style="F")  # a "scanned" page: marks, no text
        for line in lines:
            pdf.multi_cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


def write_docx(path: Path, paragraphs: list[str], heading: str | None = None, title: str | None = None,
               author: str | None = None, created: dt.datetime | None = None,
               table: list[list[str]] | None = None) -> None:
    """A .docx written by python-docx."""
    docx = pytest.importorskip("docx", reason="python-docx ([formats] extra) writes the test DOCX files")
    document = docx.Document()
    props = document.core_properties
    props.title = title or ""
    props.author = author or ""
    if created is not None:
        props.created = created
    if heading:
        document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.save(str(path))
