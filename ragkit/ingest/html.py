"""Saved web pages (``.html``, ``.htm``): the article's main text, as trafilatura extracts it.

trafilatura removes menus, related links, ads, comments and footers and finds the title,
date (via htmldate), author, canonical URL and site name in the page's metadata. The text it
extracts is the document's text: passages and their offsets refer to it, and it is stored.
What ragkit adds: the page's language from ``<html lang>``, ``Content-Language`` or
``og:locale``; ``metadata`` with ``author``, ``site`` (the host of the canonical URL, e.g.
``ng.ru``), ``site_name`` and ``language`` where the page has them; a title from the text when
the page gives none. A page larger than :data:`MAX_PAGE_BYTES` is skipped by its size before
it is read; one with no main text is skipped with that reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.documents import Document
from ragkit.ingest.report import LoadReport, display_path, mib, quiet_logs, require
from ragkit.ingest.text import first_sentence_title, iso_date

__all__ = ["MAX_PAGE_BYTES", "Page", "extract_page", "iter_html_file"]

MAX_PAGE_BYTES = 20 * 1024 * 1024

_LANG = re.compile(r"^[A-Za-z]{2,3}(?=$|[-_])")


@dataclass(frozen=True)
class Page:
    """What one HTML page gives: its main text and the metadata found in it."""

    text: str
    title: str = ""
    date: str | None = None
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class NoMainText(ValueError):
    """trafilatura found no article text in the page."""


def extract_page(data: bytes, url: str | None = None, *, precision: bool = True) -> Page:
    """The main text and metadata of one HTML page (``url``: where it was fetched from).

    ``precision``: trafilatura's ``favor_precision``. On the benchmark pages
    (benchmarks/ingest_bench.py) it kept the same article text and let in less boilerplate
    from the hardest layout than the balanced default, so it is ragkit's default.

    Raises :class:`NoMainText` when there is no article text and
    :class:`~ragkit.ingest.report.MissingExtraError` without the ``formats`` extra.
    """
    trafilatura = require("trafilatura", "HTML")
    require("lxml_html_clean", "HTML (trafilatura with lxml 5.2 or later)")
    quiet_logs("htmldate", "courlan", "justext")
    tree = trafilatura.load_html(data)
    if tree is None:
        raise NoMainText("not an HTML page (nothing to parse)")
    language = _language(tree)
    found = trafilatura.bare_extraction(tree, url=url, with_metadata=True, include_comments=False,
                                        include_tables=True, deduplicate=False, favor_precision=precision)
    text = (getattr(found, "text", None) or "").strip() if found is not None else ""
    if not text:
        raise NoMainText("no main text found in the page")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    metadata = {key: value for key, value in (
        ("author", found.author), ("site", found.hostname), ("site_name", found.sitename), ("language", language),
    ) if isinstance(value, str) and value.strip()}
    title = (found.title or "").strip() or first_sentence_title(text, markdown=False)
    return Page(text=text, title=title, date=iso_date(found.date), url=found.url or url, metadata=metadata)


def _language(tree: Any) -> str | None:
    """The page's declared language as a lower-case code (``ru``), or None."""
    candidates = [tree.get("lang"), tree.get("{http://www.w3.org/XML/1998/namespace}lang")]
    candidates += tree.xpath('//meta[translate(@http-equiv, "CONTENT-LANGUAGE", "content-language")'
                             '="content-language"]/@content')
    candidates += tree.xpath('//meta[@property="og:locale"]/@content')
    for value in candidates:
        match = _LANG.match(str(value or "").strip())
        if match:
            return match.group(0).lower()
    return None


def iter_html_file(path: Path, doc_id: str, report: LoadReport, stem: str) -> Iterator[tuple[str, Document]]:
    """The one document of a saved page (its id: the path under the folder given)."""
    size = os.stat(path).st_size
    if size > MAX_PAGE_BYTES:
        report._skip(str(path), f"larger than {mib(MAX_PAGE_BYTES)} ({mib(size)}), too large for one page; not read")
        return
    with open(path, "rb") as fh:
        data = fh.read(MAX_PAGE_BYTES + 1)
    try:
        page = extract_page(data)
    except NoMainText as exc:
        report._skip(str(path), str(exc))
        return
    yield str(path), Document(id=display_path(doc_id), text=page.text, title=page.title or display_path(stem),
                              date=page.date, source=display_path(path), url=page.url, metadata=page.metadata)
