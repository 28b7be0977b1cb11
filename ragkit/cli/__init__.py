"""The ``ragkit`` command line: a thin layer over the library (see :mod:`ragkit.cli.app`)."""

from ragkit.cli import serving  # noqa: F401 - registers ``serve`` and ``mcp`` on the app
from ragkit.cli.app import app, main

__all__ = ["app", "main"]
