"""``ragkit serve`` and ``ragkit mcp``: the server front ends, behind the ``[server]`` extra.

Registered on the one ``ragkit`` app when :mod:`ragkit.cli` is imported; nothing of the
server is imported until one of these commands runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ragkit.cli.app import _errors, app


def _server():  # noqa: ANN202
    from ragkit.errors import RagkitError

    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401
        import mcp  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise RagkitError(f"the server needs {exc.name}: pip install 'ragkit[server]'") from None
    from ragkit import server

    return server


IndexesOpt = Annotated[Optional[list[Path]], typer.Option("--index", "-i", help="Index folder; repeat to serve several [default: ./index].")]


@app.command()
def serve(
    index_dirs: IndexesOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback exposes reads to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    allow_writes: Annotated[bool, typer.Option("--allow-writes", help="Enable POST /documents and DELETE /documents/{id} (need --token).")] = False,
    token: Annotated[Optional[str], typer.Option(envvar="RAGKIT_TOKEN", help="Bearer token for writes (and reads with --auth-reads).", show_default=False)] = None,
    auth_reads: Annotated[bool, typer.Option("--auth-reads", help="The token guards reads (and MCP) too; /health stays open.")] = False,
    allowed_host: Annotated[Optional[list[str]], typer.Option("--allowed-host", help="Host name clients may use besides localhost and IP addresses.")] = None,
) -> None:
    """Serve an HTTP API, a search page (/) and MCP (/mcp) over live indexes."""
    with _errors():
        from ragkit.errors import InvalidArgumentError
        from ragkit.paths import default_index_dir

        server = _server()
        if auth_reads and not token:
            raise InvalidArgumentError("--auth-reads needs a token (--token or RAGKIT_TOKEN)")
        options = server.ServerOptions(allow_writes=allow_writes, token=token, auth_reads=auth_reads,
                                       allowed_hosts=allowed_host or ())
        application = server.create_app(index_dirs or [default_index_dir()], options)
        if not server.security.is_loopback(host) and not auth_reads:
            typer.echo(f"ragkit: warning: serving on {host}: anyone who can reach it can read the index "
                       "(no auth for reads; add --token ... --auth-reads to guard them)", err=True)
        import uvicorn

        uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command("mcp")
def mcp_(index_dirs: IndexesOpt = None) -> None:
    """Speak MCP on stdin/stdout (tools: search, get_document, info)."""
    with _errors():
        from ragkit.paths import default_index_dir

        _server()
        from ragkit.server.mcp import run_stdio

        run_stdio(index_dirs or [default_index_dir()])
