"""Reading the command line's own inputs in bounded pieces: query files and stdin, globs."""

from __future__ import annotations

import sys

MAX_QUERY_BYTES = 1 << 16  # a longer line is not a query
MAX_QUERIES_BYTES = 256 << 20
MAX_QUERIES = 1_000_000


def query_lines(queries: str) -> list[str]:
    """The lines of a queries file ('-': stdin), read in bounded pieces: a line over
    MAX_QUERY_BYTES, more than MAX_QUERIES_BYTES or MAX_QUERIES lines, or invalid UTF-8 is one
    error line (``--queries /dev/zero`` ends at the first 64 KiB)."""
    from ragkit.errors import InvalidArgumentError

    name = "standard input" if queries == "-" else queries
    try:
        stream = sys.stdin.buffer if queries == "-" else open(queries, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read queries file {queries}: {exc.strerror}") from exc
    lines: list[str] = []
    total = 0
    try:
        while True:
            line = stream.readline(MAX_QUERY_BYTES + 1)
            if not line:
                break
            total += len(line)
            if len(line) > MAX_QUERY_BYTES:
                raise InvalidArgumentError(f"line {len(lines) + 1} of {name} is longer than {MAX_QUERY_BYTES} bytes")
            if total > MAX_QUERIES_BYTES or len(lines) >= MAX_QUERIES:
                raise InvalidArgumentError(f"{name} holds more than {MAX_QUERIES} queries or {MAX_QUERIES_BYTES >> 20} MiB")
            try:
                lines.append(line.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as exc:
                raise InvalidArgumentError(f"line {len(lines) + 1} of {name} is not valid UTF-8 "
                                           f"(byte {exc.start}: {line[exc.start:exc.start + 1]!r})") from None
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read queries file {queries}: {exc.strerror}") from exc
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return lines


MAX_GLOB = 4096


def check_glob(source: str | None) -> None:
    from ragkit.errors import InvalidArgumentError

    if source is not None and len(source) > MAX_GLOB:
        raise InvalidArgumentError(f"--source is {len(source)} characters long; at most {MAX_GLOB}")
