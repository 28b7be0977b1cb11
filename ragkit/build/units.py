"""The corpus cut into work units for a streaming build: a few files, or a line range of one big file.

A worker (a Ray actor or the local process) reads a unit's pieces (:func:`load_piece`), and
the driver feeds the pieces' loads in unit order to
:class:`~ragkit.ingest.loaders.MergedStream`, which gives exactly the documents and report
of one local read. Units shrink toward the end of the corpus (guided scheduling), so the
workers finish together; a big plain JSONL file is cut at line starts so that no worker is
left reading it alone. Units travel as JSON bytes (:func:`pack_unit`; no pickle).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ragkit.ingest.loaders import FileLoad, load_file

__all__ = ["Piece", "load_piece", "pack_unit", "plan_units", "unpack_unit"]

_BLOCK = 1 << 20  # a planning scan reads this many bytes at a time
_BOM = b"\xef\xbb\xbf"
_SPACE = b" \t\n\r\x0b\x0c"  # what bytes.strip() strips: a line of only these is blank


@dataclass(frozen=True)
class Piece:
    """One file of a unit, or a line range of one (plain JSONL only)."""

    path: str
    doc_id: str  # the file's default id (planned_files' second field)
    skips_before: int  # planned_files' third field: where the file's skips fall among the walk's
    start: int = 0
    end: int | None = None  # None: to the end of the file
    first_line: int = 1
    size: int = 0  # bytes of the piece (for planning and progress)

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end is None and self.first_line == 1


def plan_units(planned: list[tuple[Path, str, int]], largest: int, *, files: int = 64, smallest: int = 64 << 10,
               parts: int = 1) -> list[list[Piece]]:
    """The planned files cut into units of pieces, in plan order (a unit's pieces and the units follow the order
    of planned), deterministic for given files and arguments.

    A unit aims at ``min(largest, max(smallest, bytes_left // parts))`` bytes (guided scheduling: with parts = 2 x
    workers, units shrink toward the end, so no worker is left running a big last unit while the others idle), holds
    at most ``files`` pieces, and ends at the first piece that reaches its aim. A plain .jsonl file larger than the
    aim is split into line-aligned ranges: each fills what is left of its unit's aim (at least one line, so a line
    longer than the aim is a range of its own) and ends that unit; one 1 MiB-block scan counts the newlines that give
    each range's first line number. Gzip JSONL and every other type stay whole (one piece each). A file that cannot
    be stat'ed or read while planning is one whole piece (its loader reports the problem later); one that fails
    midway keeps the ranges found and its rest is one range. An empty or all-whitespace JSONL file is never split
    (only a whole read reports it as empty).
    """
    sizes = [_size(path) for path, _, _ in planned]
    plan = _Plan(sum(sizes), max(1, int(largest)), max(1, int(files)), int(smallest), max(1, int(parts)))
    for (path, doc_id, before), size in zip(planned, sizes):
        whole = Piece(str(path), doc_id, before, size=size)
        if _splittable(path) and size > plan.aim:
            _split(plan, whole)
        else:
            plan.add(whole)
    return plan.units


def load_piece(piece: Piece) -> FileLoad:
    """What one piece gives: :func:`~ragkit.ingest.loaders.load_file` over its range (never raises
    for a file; a range on a file that is not plain JSONL, which :func:`plan_units` never makes, is
    a ValueError)."""
    span = None if piece.whole else (piece.start, piece.end, piece.first_line)
    return load_file(piece.path, piece.doc_id, span)


def pack_unit(pieces: list[Piece]) -> bytes:
    """A unit as JSON bytes; a path's undecodable file-name bytes (lone surrogates) survive."""
    rows = [[p.path, p.doc_id, p.skips_before, p.start, p.end, p.first_line, p.size] for p in pieces]
    return json.dumps(rows, ensure_ascii=False).encode("utf-8", "surrogatepass")


def unpack_unit(data: bytes) -> list[Piece]:
    rows = json.loads(bytes(data).decode("utf-8", "surrogatepass"))
    return [Piece(str(path), str(doc_id), int(before), int(start), None if end is None else int(end), int(line),
                  int(size)) for path, doc_id, before, start, end, line, size in rows]


# --------------------------------------------------------------------------- planning


class _Plan:
    """Units being filled: each aims at its share of the bytes left when it starts."""

    def __init__(self, total: int, largest: int, files: int, smallest: int, parts: int) -> None:
        self.units: list[list[Piece]] = []
        self._left = total  # bytes not in a finished or current unit when the current one started
        self._largest, self._files, self._smallest, self._parts = largest, files, smallest, parts
        self._used = 0
        self._open = False
        self.aim = self._aim()

    def _aim(self) -> int:
        return max(1, min(self._largest, max(self._smallest, self._left // self._parts)))

    @property
    def room(self) -> int:
        """Bytes the current unit can still take before it reaches its aim."""
        return self.aim - self._used

    def add(self, piece: Piece) -> None:
        if not self._open:
            self.units.append([])
            self._open = True
        self.units[-1].append(piece)
        self._used += piece.size
        if self._used >= self.aim or len(self.units[-1]) >= self._files:
            self.close()

    def close(self) -> None:
        if self._open:
            self._left = max(0, self._left - self._used)
            self._used = 0
            self._open = False
            self.aim = self._aim()


def _split(plan: _Plan, whole: Piece) -> None:
    """Add ``whole`` (a plain JSONL file larger than the aim) to ``plan`` as line ranges."""
    try:
        fh = open(whole.path, "rb")  # noqa: SIM115 - closed below, after the ranges are placed
    except OSError:
        plan.add(whole)
        return
    with fh:
        pos, line = 0, 1
        try:
            if not _has_text(fh):
                plan.add(whole)
                return
            fh.seek(0)
            scan = _LineScan(fh)
            while whole.size - pos > plan.room:
                cut, lines = scan.cut(pos, plan.room)
                if cut is None or cut >= whole.size:  # the rest is one line
                    break
                plan.add(Piece(whole.path, whole.doc_id, whole.skips_before, pos, cut, line, cut - pos))
                plan.close()  # the range filled the unit as far as lines allow
                pos, line = cut, line + lines
        except OSError:
            pass  # the rest is one range: its loader meets the problem and reports it
    if pos == 0:
        plan.add(whole)
    else:
        plan.add(Piece(whole.path, whole.doc_id, whole.skips_before, pos, None, line, max(0, whole.size - pos)))


class _LineScan:
    """Line starts of a file, found by one forward scan in 1 MiB blocks; cuts come in order."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._block = b""
        self._at = 0  # file offset of the block
        self._i = 0  # scanned up to here in the block; no newline between the last cut and here

    def cut(self, pos: int, target: int) -> tuple[int | None, int]:
        """The last line start in ``(pos, pos + target]``, else the first one after ``pos`` (a line
        longer than ``target``), with the newlines in between; None if the file ends first.
        ``pos`` is the previous cut (0 at first)."""
        limit = pos + max(1, target)
        best: int | None = None
        lines = 0
        while True:
            if self._i == len(self._block):
                self._at += len(self._block)
                self._block, self._i = self._fh.read(_BLOCK), 0
                if not self._block:
                    return best, lines
            stop = limit - self._at  # a newline before this index starts a line within the limit
            if stop > self._i:
                hi = min(stop, len(self._block))
                j = self._block.rfind(b"\n", self._i, hi)
                if j >= 0:
                    lines += self._block.count(b"\n", self._i, j + 1)
                    best = self._at + j + 1
                self._i = hi
                if hi == len(self._block):
                    continue
            if best is not None:
                return best, lines
            j = self._block.find(b"\n", self._i)
            if j >= 0:
                self._i = j + 1
                return self._at + j + 1, 1
            self._i = len(self._block)


def _has_text(fh: IO[bytes]) -> bool:
    """Whether a line of the file is not blank: only a whole read may call a file empty."""
    first = True
    while block := fh.read(_BLOCK):
        if first and block.startswith(_BOM):
            block = block[len(_BOM):]
        first = False
        if block.translate(None, _SPACE):
            return True
    return False


def _splittable(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".jsonl") and len(name) > len(".jsonl")


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
