"""The ``ragkit`` command line: a thin layer over the library (see :mod:`ragkit.cli.app`)."""

from ragkit.cli.app import app, main

__all__ = ["app", "main"]
