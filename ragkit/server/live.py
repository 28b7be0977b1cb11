"""A live index: the newest committed generation of an index folder, swapped in while serving.

``ragkit add`` / ``remove`` in another process commit a new generation by replacing
``manifest.json``. :class:`LiveIndex` notices the new manifest (a watcher thread checks it every
``poll`` seconds), opens the new generation, loads all of its parts into memory and only then
swaps it in. A request holds the generation it started on (:meth:`LiveIndex.use`) until it ends;
a replaced generation is closed when its last request finishes. Opening a generation reads its
files once, so an open one no longer needs them and survives the writer deleting them.

When the core grows ``Index.reload()``, :meth:`LiveIndex._open` is the one place to call it.

Searches run under :data:`SEARCH_LOCK`, one process-wide lock: FAISS's OpenMP thread count is
process-wide (ragkit changes it per call) and an index caches query vectors and filter subsets
in plain dicts, so two searches at once, even on two generations, could race.

A server also runs NumPy's BLAS on one thread (:func:`single_threaded_blas`): the searches are
one at a time anyway, and OpenBLAS's idle threads spin between requests. On 2 busy cores that
spinning took the CPU the response needed (in a one-off check at 100k passages, hybrid over
HTTP: about 58 ms at p50 with FAISS's two BLAS threads, 12 ms with one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ragkit

log = logging.getLogger("ragkit.server")

SEARCH_LOCK = threading.Lock()
MANIFEST = "manifest.json"
_WARM_QUERY = "ragkit"


class _Generation:
    """One opened Index and the number of requests using it."""

    def __init__(self, index: ragkit.Index, signature: tuple[int, int, int]) -> None:
        self.index = index
        self.signature = signature
        self.users = 0
        self.retired = False

    @property
    def number(self) -> int:
        return int(self.index.manifest.get("generation") or 0)


def _signature(path: Path) -> tuple[int, int, int]:
    st = (path / MANIFEST).stat()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def single_threaded_blas() -> None:
    """Limit this process's BLAS (OpenBLAS, MKL, ...) to one thread, for a server's lifetime."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def warm(index: ragkit.Index) -> None:
    """Load every part of ``index`` now (vectors, passages, BM25, the query model)."""
    with SEARCH_LOCK:
        index.vectors, index.store, index.lexical, index.doc_lexical  # noqa: B018 - each loads on first access
        index.embed_queries([_WARM_QUERY])
        for side in index.language_sides():  # a mixed archive's second vectors and query model
            side.vectors  # noqa: B018
            side.embed_queries([_WARM_QUERY])
        for mode in ("hybrid", "lexical"):
            index.search_many([_WARM_QUERY], 1, mode=mode)


class LiveIndex:
    """The current generation of the index at ``path``; see the module docstring."""

    def __init__(self, path: str | Path, *, name: str | None = None, poll: float = 0.25) -> None:
        self.path = Path(path)
        self.name = name or self.path.resolve().name
        self.poll = poll
        self._lock = threading.Lock()  # guards the swap and the use counts
        self._refreshing = threading.Lock()  # one refresh at a time (the watcher and a write's own)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            signature = _signature(self.path)  # before opening: a commit in between is seen at the next check
        except OSError:
            signature = (0, 0, 0)  # no manifest: Index.open says what is wrong
        self._current = _Generation(self._open(None), signature)

    # -- reading ---------------------------------------------------------------------------
    @contextmanager
    def use(self) -> Iterator[ragkit.Index]:
        """The current generation, held (not closed, not replaced under you) for the block."""
        with self._lock:
            gen = self._current
            gen.users += 1
        try:
            yield gen.index
        finally:
            with self._lock:
                gen.users -= 1
                done = gen.retired and gen.users == 0
            if done:
                gen.index.close()

    @property
    def generation(self) -> int:
        return self._current.number

    # -- switching -------------------------------------------------------------------------
    def _open(self, previous: ragkit.Index | None) -> ragkit.Index:
        index = None
        if previous is not None:
            try:  # keep the loaded query model when the index still uses it
                index = ragkit.Index.open(self.path, embedder=previous.embedder)
            except ragkit.ModelMismatchError:
                index = None
        if index is None:
            index = ragkit.Index.open(self.path)
        try:
            warm(index)
        except BaseException:
            index.close()
            raise
        return index

    def refresh(self) -> bool:
        """Swap in a newly committed generation, if there is one; True when it swapped.

        A generation that cannot be opened (say a writer removed its files before we read
        them) leaves the current one serving; the next check tries again.
        """
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            signature = _signature(self.path)
        except OSError:
            return False  # the folder or its manifest is gone for now: keep serving what we have
        if signature == self._current.signature:
            return False
        try:
            index = self._open(self._current.index)
        except (ragkit.RagkitError, OSError) as exc:
            log.warning("ragkit serve: new generation of %s not opened yet: %s", self.path, exc)
            return False
        with self._lock:
            old, self._current = self._current, _Generation(index, signature)
            old.retired = True
            done = old.users == 0
        if done:
            old.index.close()
        log.info("ragkit serve: %s now at generation %d", self.name, self.generation)
        return True

    def start(self) -> None:
        """Watch the manifest in a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name=f"ragkit-watch-{self.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        self.stop()
        with self._lock:
            gen = self._current
            gen.retired = True
            done = gen.users == 0
        if done:
            gen.index.close()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - logged; the watcher must outlive one bad generation
                log.exception("ragkit serve: reloading %s failed", self.path)
