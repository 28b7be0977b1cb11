"""The index folder's layout for writers: the writer lock, generation names and stale files.

Data files carry the number of the generation that wrote them (``vectors-000007.faiss``); the
manifest (:mod:`ragkit.format.manifest`) names the current ones. One writer at a time holds
the folder's lock; readers never take it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ragkit.errors import IndexLockedError
from ragkit.format.manifest import MANIFEST_NAME, fsync_dir

DATA_PREFIXES = ("vectors-", "store-", "lexical-", "doclexical-", "query-encoder-")


@contextmanager
def writer_lock(root: Path, wait: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the index folder's writer lock; wait for it (telling ``on_wait``) or fail at once."""
    from filelock import FileLock, Timeout

    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise IndexLockedError(f"another ragkit process is writing {root}; try again later") from None
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def next_generation(root: Path) -> int:
    """The number of the generation a writer writes next: one above any found in the folder."""
    numbers = [0]
    for f in root.iterdir():
        stem = f.name.split(".")[0]
        if stem.startswith(DATA_PREFIXES[:4]) and stem.rsplit("-", 1)[1].isdigit():
            numbers.append(int(stem.rsplit("-", 1)[1]))
    return max(numbers) + 1


def fsync_file(path: Path) -> None:
    """Flush a written file and its folder entry to disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    fsync_dir(path.parent)


def remove_stale(root: Path, keep: set[str]) -> None:
    """Delete data of generations before the previous one, and leftovers of killed writers.

    The previous generation stays one round longer, so a reader that opened the old manifest
    just before the commit can still load its files. Runs under the writer lock: any
    temporary file or folder found here belongs to a dead writer.
    """
    import re
    import shutil

    generations = sorted({int(m.group(1)) for f in root.iterdir() if (m := re.search(r"-(\d{6})(\.|$)", f.name))})
    previous = f"{generations[-2]:06d}" if len(generations) > 1 else None
    for f in root.iterdir():
        if f.name in keep or f.name == MANIFEST_NAME:
            continue
        leftover = f.name.startswith(".") and ".tmp-" in f.name
        stale = f.name.startswith(DATA_PREFIXES) and not (previous and f"-{previous}" in f.name)
        if f.name.startswith("query-encoder-"):
            stale = True  # encoders are named by model, not generation: keep only the current one
        if not (leftover or stale):
            continue
        if f.is_dir() and not f.is_symlink():
            shutil.rmtree(f, ignore_errors=True)
        elif leftover or f.suffix in (".faiss", ".sqlite", ".sqlite-journal"):
            f.unlink(missing_ok=True)
