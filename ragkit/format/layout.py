"""The index folder's layout for writers: the writer lock, generation names and stale files.

Data files carry the number of the generation that wrote them (``vectors-000007.faiss``); the
manifest (:mod:`ragkit.format.manifest`) names the current ones. One writer at a time holds
the folder's lock; readers never take it.

A writer that fails for any reason (a full disk, an I/O error, a bad document, Ctrl-C)
removes what it wrote at once, before it lets go of the lock; the committed generation is
never touched. A full disk or another I/O error becomes one :class:`~ragkit.errors.StorageError`
line. Links planted in the folder (``.lock``, the embedding cache, the manifest, data files)
are refused: a writer never writes through one.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragkit.errors import IndexFormatError, IndexLockedError, InvalidArgumentError, RagkitError, StorageError
from ragkit.format.inside import refuse_links
from ragkit.format.manifest import MANIFEST_NAME, fsync_dir, load_manifest, write_manifest

DATA_PREFIXES = ("vectors-", "store-", "lexical-", "doclexical-", "query-encoder-", "duplicates-")
CACHE_PREFIX = "embeddings.sqlite"  # the embedding cache and its journal: not part of a generation
LOCK_NAME = ".lock"
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


@contextmanager
def writer_lock(
    root: Path, wait: bool = True, on_wait: Callable[[], None] | None = None, create: bool = True,
) -> Iterator[None]:
    """Hold the index folder's writer lock; wait for it (telling ``on_wait``) or fail at once.

    ``create=False`` (an update): the folder must already hold an index; nothing is created
    in it otherwise. Whatever the writer adds to the folder and does not commit is removed
    when it fails.
    """
    from filelock import FileLock, Timeout

    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InvalidArgumentError(f"index folder {root} is a file, not a folder")
    if not create:
        load_manifest(root)  # IndexNotFoundError / IndexFormatError before anything is written
    created = not os.path.lexists(root)
    root.mkdir(parents=True, exist_ok=True)
    refuse_links(root, (LOCK_NAME, MANIFEST_NAME), DATA_PREFIXES + (CACHE_PREFIX,))
    _touch(root / LOCK_NAME)
    lock = FileLock(str(root / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise IndexLockedError(f"another ragkit process is writing {root}; try again later") from None
        if on_wait is not None:
            on_wait()
        lock.acquire()
    failed = False
    try:
        refuse_links(root, (LOCK_NAME, MANIFEST_NAME), DATA_PREFIXES + (CACHE_PREFIX,))
        before = set(os.listdir(root))
        try:
            yield
        except BaseException as exc:
            failed = True
            error = storage_error(exc, root)  # before the cleanup frees the space
            discard_uncommitted(root, before)
            if error is not None:
                raise error from exc
            raise
    finally:
        lock.release()
        if failed and created and not os.path.lexists(root / MANIFEST_NAME):
            shutil.rmtree(root, ignore_errors=True)  # a first build that failed leaves no folder


def _touch(path: Path) -> None:
    """Create the lock file without following a link planted under its name."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        os.close(os.open(path, flags, 0o644))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IndexFormatError(f"index {path.parent} is unsafe: {path.name} is a symbolic link") from None
        raise StorageError(f"cannot write index {path.parent}: {exc.strerror}") from None


def storage_error(exc: BaseException, root: Path) -> StorageError | None:
    """A one-line StorageError for a full disk or another I/O error (None: not one)."""
    if isinstance(exc, RagkitError):
        return None
    message = str(exc).lower()
    full = (isinstance(exc, OSError) and exc.errno in _FULL) or "disk is full" in message or "no space left" in message
    if not full and isinstance(exc, (OSError, sqlite3.OperationalError, RuntimeError)) and _free_bytes(root) < (1 << 20):
        full = True  # SQLite, FAISS and NumPy say "disk I/O error", "write error", "N requested and M written"
    if full:
        free = _free_bytes(root)
        return StorageError(f"no space left on the device of {root} ({free // (1 << 20)} MiB free): "
                            "nothing was changed; free some space and run it again")
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" ({exc.filename})" if exc.filename else ""
        return StorageError(f"cannot write index {root}: {exc.strerror}{where}; nothing was changed")
    return None


def _free_bytes(root: Path) -> int:
    try:
        st = os.statvfs(root)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def discard_uncommitted(root: Path, before: set[str]) -> None:
    """Remove what a failed writer added to the folder, except the committed generation and the cache."""
    try:
        committed = load_manifest(root).names()
    except RagkitError:
        committed = set()
    for name in set(os.listdir(root)) - before - committed:
        if name.startswith(CACHE_PREFIX) or name in (LOCK_NAME, MANIFEST_NAME):
            continue
        _remove(root / name)



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


def commit(root: Path, manifest: dict[str, Any], keep: set[str]) -> None:
    """Replace the manifest by ``manifest`` (the commit point), then remove stale files.

    ``keep``: the new generation's top-level names. The generation the replaced manifest
    named stays one round longer; everything else with a data prefix goes.
    """
    try:
        previous = load_manifest(root).names()
    except RagkitError:
        previous = set()
    write_manifest(root, manifest)
    remove_stale(root, keep | previous)


def remove_stale(root: Path, keep: set[str]) -> None:
    """Delete data files and folders not in ``keep``, and leftovers of killed writers.

    ``keep`` holds the current generation's names and the previous manifest's (a reader that
    opened the old manifest just before the commit can still load its files). A generation
    number alone never makes a file "previous": a killed writer's partial generation has the
    highest number of all and is removed like any other uncommitted file. Runs under the
    writer lock: any temporary file or folder found here belongs to a dead writer.
    """
    for f in root.iterdir():
        if f.name in keep or f.name == MANIFEST_NAME:
            continue
        leftover = f.name.startswith(".") and (".tmp-" in f.name or ".old-" in f.name)
        if leftover or f.name.startswith(DATA_PREFIXES):
            _remove(f)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            pass  # best effort: the next writer tries again
