"""MCP tools over the served indexes, with the official SDK: ``search``, ``get_document``, ``info``.

``ragkit mcp --index DIR`` speaks stdio; ``ragkit serve`` answers the same tools on ``/mcp``
(streamable HTTP). ``search`` returns the object ``ragkit search --json`` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from anyio import to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

import ragkit

from ragkit.server.service import SearchParams, Service


async def _run(fn: Callable[[], Any]) -> Any:
    """``fn`` on a worker thread; a ragkit error reaches the client as the tool's error text."""
    try:
        return await to_thread.run_sync(fn)
    except ragkit.RagkitError as exc:
        raise ToolError(str(exc)) from None


def build_mcp(service: Service) -> MCPServer:
    server = MCPServer("ragkit", version=ragkit.__version__,
                       instructions="Search a ragkit index of articles; fetch a whole article by id.")

    @server.tool()
    async def search(query: str, k: int = 10, mode: str = "hybrid", since: str | None = None, until: str | None = None,
                     source: str | None = None, per_doc: int = 3, index: str | None = None) -> dict[str, Any]:
        """Search the index. mode: hybrid, lexical or dense; since/until: YYYY-MM-DD; source: a path glob.

        Returns {query, mode, results}: each result has rank, score, doc_id, title, date, source,
        start, end (character offsets in the document) and the passage text.
        """
        params = SearchParams(k=k, mode=mode, since=since, until=until, source=source, per_doc=per_doc)
        return (await _run(lambda: service.search([query], params, index)))[0]

    @server.tool()
    async def get_document(doc_id: str, start: int | None = None, end: int | None = None,
                           index: str | None = None) -> dict[str, Any]:
        """The whole document with this id; with start/end (from a search result) its span too."""
        return await _run(lambda: service.document(doc_id, start, end, index))

    @server.tool()
    async def info(index: str | None = None) -> dict[str, Any]:
        """What the index holds: model, counts, chunking, generation."""
        return await _run(lambda: service.info(index))

    return server


def run_stdio(indexes: Sequence[str | Path], poll: float = 0.25) -> None:
    """Serve the MCP tools on stdin/stdout until the client closes them."""
    service = Service(indexes, poll=poll)
    service.start()
    try:
        build_mcp(service).run("stdio")
    finally:
        service.close()
