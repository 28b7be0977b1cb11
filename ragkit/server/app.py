"""The ASGI app of ``ragkit serve``: the JSON API, the search page and MCP on ``/mcp``.

    from ragkit.server import create_app
    app = create_app(["index/"])          # then: uvicorn.run(app, host="127.0.0.1", port=8000)

Reads are open (unless ``auth_reads``); writes are off unless ``allow_writes``, and then need
the bearer ``token``. Every error is JSON ``{"error": ...}``: 4xx for bad input, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import ragkit

from ragkit.server import page
from ragkit.server.security import DEFAULT_MAX_BODY, GuardMiddleware, bearer, token_matches
from ragkit.server.service import NotFoundError, SearchParams, Service

log = logging.getLogger("ragkit.server")


@dataclass
class ServerOptions:
    allow_writes: bool = False
    token: str | None = None
    auth_reads: bool = False  # the token guards reads too
    allowed_hosts: Sequence[str] = ()
    max_body: int = DEFAULT_MAX_BODY
    poll: float = 0.25
    mcp: bool = True  # answer MCP on /mcp too


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SearchBatch(BaseModel):
    queries: list[str] = Field(description="Queries; at most 64.")
    k: int = 10
    mode: str = "hybrid"
    since: str | None = None
    until: str | None = None
    source: str | None = None
    per_doc: int = 3
    index: str | None = None


def _document_body() -> type[BaseModel]:
    """The upsert body of one document: the fields of :class:`ragkit.Document` (``source``: "api")."""
    import dataclasses
    import typing

    from pydantic import create_model

    hints = typing.get_type_hints(ragkit.Document)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(ragkit.Document):
        if f.name == "pages":  # page starts come from PDF loading, not from a client
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = "api" if f.name == "source" else f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory)
        else:
            default = ...
        fields[f.name] = (hints[f.name], default)
    return create_model("DocumentIn", **fields)


DocumentIn = _document_body()


class Upsert(BaseModel):
    documents: list[DocumentIn]
    index: str | None = None


def _status(exc: Exception) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (ragkit.InvalidArgumentError, ragkit.EmptyCorpusError)):
        return 400
    if type(exc).__name__ == "IndexLockedError":
        return 409
    return 500


def create_app(indexes: Sequence[str | Path], options: ServerOptions | None = None) -> FastAPI:
    """The app serving ``indexes`` (folders; the first is the default, others by ``?index=NAME``)."""
    opts = options or ServerOptions()
    if opts.allow_writes and not opts.token:
        raise ragkit.InvalidArgumentError("--allow-writes needs a token (--token or RAGKIT_TOKEN)")
    service = Service(indexes, poll=opts.poll)
    mcp_server = None
    if opts.mcp:
        from mcp.server.transport_security import TransportSecuritySettings

        from ragkit.server.mcp import build_mcp

        mcp_server = build_mcp(service)
        # Host, Origin and body size are checked for every route, /mcp included, by GuardMiddleware.
        mcp_app = mcp_server.streamable_http_app(
            streamable_http_path="/mcp", stateless_http=True, json_response=True, max_request_body_size=opts.max_body,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            if mcp_server is not None:
                async with mcp_server.session_manager.run():
                    yield
            else:
                yield
        finally:
            service.close()

    app = FastAPI(title="ragkit", version=ragkit.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Search over a live ragkit index. Errors are JSON {\"error\": ...}.")
    app.state.service = service
    app.add_middleware(GuardMiddleware, allowed_hosts=opts.allowed_hosts, max_body=opts.max_body,
                       read_token=opts.token if opts.auth_reads else None)

    def writer(request: Request) -> None:
        if not opts.allow_writes:
            raise HTTPError(403, "writes are off: start the server with --allow-writes and a token")
        if not token_matches(bearer(dict(request.headers)), opts.token or ""):
            raise HTTPError(401, "writes need the bearer token (Authorization: Bearer ...)")

    async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def timed_search(queries: list[str], params: SearchParams, index: str | None) -> tuple[Any, dict[str, str]]:
        """The search on a worker thread, and a Server-Timing header with its wall and CPU time there (ms)."""
        def run() -> tuple[Any, float, float]:
            start, cpu = time.perf_counter(), time.thread_time()
            out = service.search(queries, params, index)
            return out, time.perf_counter() - start, time.thread_time() - cpu

        out, seconds, cpu = await to_thread.run_sync(run)
        return out, {"Server-Timing": f"search;dur={seconds * 1000:.3f}, search-cpu;dur={cpu * 1000:.3f}"}

    @app.exception_handler(HTTPError)
    async def _http_error(_: Request, exc: HTTPError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(ragkit.RagkitError)
    async def _ragkit_error(_: Request, exc: ragkit.RagkitError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
        return JSONResponse({"error": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("ragkit serve: internal error: %r", exc)
        return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)

    # -- API -------------------------------------------------------------------------------
    @app.get("/search", summary="Search one query",
             description="Exactly the object `ragkit search --json` prints: {query, mode, results}.")
    async def search_one(q: str = Query(description="The query (at most 1000 characters)."),
                         k: int = Query(10, description="Passages to return, 1-1000."),
                         mode: str = Query("hybrid", description="hybrid, lexical or dense."),
                         since: str | None = Query(None, description="Documents dated on or after YYYY-MM-DD."),
                         until: str | None = Query(None, description="Documents dated on or before YYYY-MM-DD."),
                         source: str | None = Query(None, description="Source path glob."),
                         per_doc: int = Query(3, description="At most this many passages per document (0: no cap)."),
                         index: str | None = Query(None, description="Index name (default: the first served).")) -> JSONResponse:
        params = SearchParams(k=k, mode=mode, since=since, until=until, source=source, per_doc=per_doc)
        out, timing = await timed_search([q], params, index)
        return JSONResponse(out[0], headers=timing)

    @app.post("/search", summary="Search a batch of queries",
              description="A JSON array: one {query, mode, results} object per query, in order.")
    async def search_batch(body: SearchBatch) -> JSONResponse:
        params = SearchParams(k=body.k, mode=body.mode, since=body.since, until=body.until, source=body.source,
                              per_doc=body.per_doc)
        out, timing = await timed_search(body.queries, params, body.index)
        return JSONResponse(out, headers=timing)

    @app.get("/documents/{doc_id:path}", summary="One whole document",
             description="With `start`/`end` (character offsets, as in a result) the span is returned too.")
    async def get_document(doc_id: str, start: int | None = None, end: int | None = None,
                           index: str | None = None) -> JSONResponse:
        return JSONResponse(await call(service.document, doc_id, start, end, index))

    @app.get("/info", summary="The index manifest: model, counts, files")
    async def info(index: str | None = None) -> JSONResponse:
        return JSONResponse(await call(service.info, index))

    @app.get("/health", summary="Liveness and each index's generation")
    async def health() -> JSONResponse:
        return JSONResponse(service.health())

    @app.post("/documents", dependencies=[Depends(writer)], summary="Upsert documents (needs --allow-writes and the token)")
    async def upsert(body: Upsert) -> JSONResponse:
        docs = [d.model_dump() for d in body.documents]
        return JSONResponse(await call(service.upsert, docs, body.index))

    @app.delete("/documents/{doc_id:path}", dependencies=[Depends(writer)], summary="Remove a document (needs --allow-writes and the token)")
    async def delete(doc_id: str, index: str | None = None) -> JSONResponse:
        return JSONResponse(await call(service.delete, doc_id, index))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page.render_api_docs(app.openapi()))

    page.add_routes(app, service, call)
    if mcp_server is not None:
        app.router.routes.extend(mcp_app.routes)  # POST/GET /mcp (streamable HTTP), behind the same guard
    return app
