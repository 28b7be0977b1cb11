"""The count fields of a FAISS file, checked against its size before FAISS allocates anything.

``faiss.read_index`` sizes its arrays from count fields in the file and only then reads the
bytes; a 1.6 MB file that claims 750 million vectors costs gigabytes before FAISS notices
the bytes are not there. ragkit writes every vector file as an ``IDMap2`` wrapper, whose id
array ends the file, around its index; so the wrapper's vector count, the id array's length
and (for the exact ``Flat`` types) the stored vector array's length are read here from the
header and tail and must add up to the file's size. Approximate types (HNSW graphs, IVF lists)
have further arrays inside that are not parsed here; their counts must still match the
wrapper's, and the wrapper's count is bounded by the file's size. Their inner arrays are
bounded by :func:`bounded_memory` instead: FAISS reads with its own per-array limit lowered to
the file's size, so a crafted inner count fails before it allocates (a 687 KB HNSW file whose
neighbour-offset count says 3*10^8 cost 2.3 GB of RSS before FAISS noticed the missing bytes).
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragkit.errors import IndexFormatError

_HEADER = struct.Struct("<iqqq?i")  # d, ntotal, two dummies, is_trained, metric_type
_ID_MAPS = (b"IxM2", b"IxMp")
_FLATS = (b"IxFI", b"IxF2", b"IxFl")


def check_counts(path: Path, dimension: int) -> tuple[int, bool]:
    """(vector count, whether the index is an exact Flat one) of a ragkit FAISS file, after
    checking its count fields; IndexFormatError if they lie."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size

        def read_at(offset: int, n: int) -> bytes:
            fh.seek(offset)
            data = fh.read(n)
            if len(data) != n:
                raise IndexFormatError(f"vector file {path} is truncated ({size} bytes)")
            return data

        fourcc = read_at(0, 4)
        if fourcc not in _ID_MAPS:
            raise IndexFormatError(f"vector file {path} is not a ragkit FAISS file (it starts with {fourcc!r})")
        d, ntotal, offset = _header(read_at, 4, path)
        if d != dimension:
            raise IndexFormatError(f"vector file {path} has dimension {d}, manifest says {dimension}")
        if ntotal < 0 or 8 * ntotal + 8 > size - offset:
            raise IndexFormatError(f"vector file {path} claims {ntotal} vectors; its {size} bytes cannot hold them")
        ids_at = size - 8 * ntotal - 8
        (n_ids,) = struct.unpack("<Q", read_at(ids_at, 8))
        if n_ids != ntotal:
            raise IndexFormatError(f"vector file {path} is damaged: {n_ids} ids for {ntotal} vectors")
        inner = read_at(offset, 4)
        inner_d, inner_n, inner_end = _header(read_at, offset + 4, path)
        if (inner_d, inner_n) != (d, ntotal):
            raise IndexFormatError(f"vector file {path} is damaged: its index holds {inner_n} vectors of "
                                   f"dimension {inner_d}, its id map {ntotal} of dimension {d}")
        if inner in _FLATS:
            (floats,) = struct.unpack("<Q", read_at(inner_end, 8))
            if floats != ntotal * d or inner_end + 8 + 4 * floats != ids_at:
                raise IndexFormatError(f"vector file {path} is damaged: its vector array does not match "
                                       f"{ntotal} vectors of dimension {d} in {size} bytes")
    return ntotal, inner in _FLATS


def _header(read_at, offset: int, path: Path) -> tuple[int, int, int]:  # noqa: ANN001
    d, ntotal, _, _, _, metric = _HEADER.unpack(read_at(offset, _HEADER.size))
    end = offset + _HEADER.size + (4 if metric > 1 else 0)
    if not 0 < d <= 1 << 16:
        raise IndexFormatError(f"vector file {path} is damaged: dimension {d}")
    return d, ntotal, end


_READ_LOCK = threading.Lock()  # FAISS's limits are process-wide: one bounded read at a time


@contextmanager
def bounded_memory(faiss: Any, file_size: int) -> Iterator[None]:  # noqa: ANN401 - the faiss module
    """While FAISS reads a ``file_size``-byte file, no array it reads may claim more bytes than that.

    FAISS's own deserialization limits (``set_deserialization_vector_byte_limit``, default 1 TiB,
    and the loop limit) are lowered to the file's size: a crafted count fails before FAISS
    allocates more than the file could hold, so a read costs at most about twice the file's
    size. The limits are process-wide, so bounded reads take turns; they are restored after.
    """
    if not hasattr(faiss, "set_deserialization_vector_byte_limit"):
        yield
        return
    bound = max(int(file_size), 1 << 16)
    with _READ_LOCK:
        vectors, loops = faiss.get_deserialization_vector_byte_limit(), faiss.get_deserialization_loop_limit()
        faiss.set_deserialization_vector_byte_limit(bound)
        faiss.set_deserialization_loop_limit(bound)
        try:
            yield
        finally:
            faiss.set_deserialization_vector_byte_limit(vectors)
            faiss.set_deserialization_loop_limit(loops)
