"""The search page at ``/`` and the article view, rendered on the server (Jinja2, no JS, no CDN).

Query terms are highlighted the way BM25 matched them: a word is marked when one of its
analyzed terms (the index's own stemmer) is a term of the query.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

import ragkit

from ragkit.server.live import SEARCH_LOCK
from ragkit.server.service import NotFoundError, SearchParams, Service

MODES = (("hybrid", "Гибридный"), ("lexical", "По словам (BM25)"), ("dense", "По смыслу"))
_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1)
def _env() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    return _env().get_template(template).render(**context)


def segments(text: str, wanted: set[str], analyzer: Any) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is a query word) pairs."""
    out: list[tuple[str, bool]] = []
    pos = 0
    words = list(_WORD.finditer(text)) if wanted else []
    for m, terms in zip(words, analyzer.terms_batch([w.group() for w in words]) if words else []):
        if wanted.intersection(terms):
            if m.start() > pos:
                out.append((text[pos:m.start()], False))
            out.append((m.group(), True))
            pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def _highlighter(service: Service, index: str | None, query: str) -> Any:
    """A function text -> segments for ``query`` with the index's analyzer."""
    with service.live(index).use() as idx, SEARCH_LOCK:
        analyzer = idx.lexical.analyzer
        wanted = set(analyzer.terms(query)) if query else set()

    def mark(text: str) -> list[tuple[str, bool]]:
        with SEARCH_LOCK:  # a stemmer object is not safe to share between threads
            return segments(text, wanted, analyzer)

    return mark


def search_page(service: Service, form: dict[str, str]) -> tuple[int, str]:
    q = form.get("q", "").strip()
    mode = form.get("mode") if form.get("mode") in dict(MODES) else "hybrid"
    index = form.get("index") or None
    context: dict[str, Any] = {"q": q, "mode": mode, "modes": MODES, "since": form.get("since", ""),
                               "until": form.get("until", ""), "source": form.get("source", ""),
                               "indexes": list(service.indexes), "index": index or service.default,
                               "results": [], "error": None}
    status = 200
    if q:
        try:
            params = SearchParams(k=20, mode=mode, since=form.get("since") or None, until=form.get("until") or None,
                                  source=form.get("source") or None)
            response = service.search([q], params, index)[0]
            mark = _highlighter(service, index, q)
            for r in response["results"]:
                link = f"/view/{quote(str(r['doc_id']), safe='')}?" + urlencode(
                    {"start": r["start"], "end": r["end"], "q": q, **({"index": index} if index else {})}) + "#passage"
                context["results"].append({**r, "title": r["title"] or r["doc_id"], "link": link,
                                           "segments": mark(" ".join(str(r["text"]).split()))})
        except ragkit.RagkitError as exc:
            status, context["error"] = (404 if isinstance(exc, NotFoundError) else 400), str(exc)
    return status, render("search.html", **context)


def article_page(service: Service, doc_id: str, form: dict[str, str]) -> tuple[int, str]:
    index = form.get("index") or None
    try:
        start = int(form["start"]) if form.get("start") else None
        end = int(form["end"]) if form.get("end") else None
        doc = service.document(doc_id, start, end, index)
    except ValueError:
        return 400, render("search.html", q="", modes=MODES, mode="hybrid", indexes=[], results=[],
                           error="start and end must be whole numbers")
    except ragkit.RagkitError as exc:
        return (404 if isinstance(exc, NotFoundError) else 400), render(
            "search.html", q="", modes=MODES, mode="hybrid", indexes=[], results=[], error=str(exc))
    mark = _highlighter(service, index, form.get("q", ""))
    text, span = doc["text"], doc["span"]
    cuts = [(0, span["start"], False), (span["start"], span["end"], True), (span["end"], len(text), False)] if span \
        else [(0, len(text), False)]
    parts = [{"span": is_span, "segments": mark(text[a:b])} for a, b, is_span in cuts if b > a or is_span]
    back = "/?" + urlencode({"q": form["q"], **({"index": index} if index else {})}) if form.get("q") else "/"
    return 200, render("article.html", doc=doc, parts=parts, marked=bool(span), back=back)


def render_api_docs(openapi: dict[str, Any]) -> str:
    """The OpenAPI document as one plain HTML table (Swagger UI would load scripts from a CDN)."""
    operations = []
    for path, methods in openapi.get("paths", {}).items():
        for method, op in methods.items():
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema", {})
            operations.append({
                "method": method.upper(), "path": path, "summary": op.get("summary", ""),
                "description": op.get("description", ""),
                "parameters": [{"name": p["name"], "where": p["in"], "required": p.get("required", False),
                                "description": p.get("description", "")} for p in op.get("parameters", [])],
                "body": body.get("$ref", "").rsplit("/", 1)[-1],
            })
    info = openapi.get("info", {})
    return render("api.html", operations=operations, version=info.get("version", ""), description=info.get("description", ""))


def add_routes(app: FastAPI, service: Service, call: Any) -> None:
    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> HTMLResponse:
        status, html = await call(search_page, service, dict(request.query_params))
        return HTMLResponse(html, status_code=status)

    @app.get("/view/{doc_id:path}", include_in_schema=False)
    async def view(doc_id: str, request: Request) -> HTMLResponse:
        status, html = await call(article_page, service, doc_id, dict(request.query_params))
        return HTMLResponse(html, status_code=status)
