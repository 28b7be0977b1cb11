"""The build engine options of ``ragkit index/add/remove`` (``--engine local|ray``), kept light:
Ray is imported only when a command runs with ``--engine ray``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

import typer

EngineOpt = Annotated[str, typer.Option("--engine", help="Where the build runs: local (this process) or ray (a Ray cluster; pip install 'ragkit[ray]').")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join: auto or ray://host:port [default: start a local Ray instance].")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Ray workers (actors) per build stage.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show Ray's logs and progress bars.")]


@contextmanager
def engine_for(engine: str, address: Optional[str], workers: int, verbose: bool) -> Iterator[object]:
    """The executor of ``--engine`` (None: the local path), closed afterwards."""
    from ragkit.errors import InvalidArgumentError

    if engine not in ("local", "ray"):
        raise InvalidArgumentError(f"--engine must be local or ray, not {engine!r}")
    if engine == "local":
        if address is not None:
            raise InvalidArgumentError("--ray-address needs --engine ray")
        yield None
        return
    from ragkit import RayExecutor

    with RayExecutor(address=address, workers=workers, verbose=verbose) as executor:
        yield executor
