"""``ragkit serve``: an HTTP API, a search page and MCP over live indexes (the ``[server]`` extra).

    from ragkit.server import create_app, ServerOptions
    app = create_app(["index/"], ServerOptions())

Importing this package needs FastAPI, uvicorn, Jinja2 and mcp: ``pip install 'ragkit[server]'``.
"""

from __future__ import annotations

from ragkit.server.app import ServerOptions, create_app
from ragkit.server.live import LiveIndex

__all__ = ["LiveIndex", "ServerOptions", "create_app"]
