"""Pinning a generation's files, so a reader outlives the writers that replace them.

A writer deletes generations older than the previous one, so a reader that opens parts lazily
would lose its files after two updates. :class:`PinnedFiles` opens every file of the reader's
generation at once (on POSIX an open file outlives its unlink) and offers a private folder of
links to the open descriptors (``/proc/self/fd/N``), laid out like the index folder: loaders
read from that folder as from the index itself, and always see the generation the reader
opened. Where the platform has no descriptor folder, the index folder is read directly.

Files are opened with ``O_NOFOLLOW``: a data file that is a symbolic link is refused, so a
reader never follows a link out of the index folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import weakref
from collections.abc import Iterable
from pathlib import Path

from ragkit.errors import IndexFormatError
from ragkit.format.inside import mark_pinned, open_inside


def _descriptor_folder() -> str | None:
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return folder
    return None


def _release(fds: list[int], folder: str | None) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    if folder is not None:
        mark_pinned(folder, live=False)
        _remove_tree(folder)


def _remove_tree(folder: str) -> None:
    """Remove a folder this module made (links and copies only; never follows a link)."""
    for parent, dirs, files in os.walk(folder, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(parent, d))]:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(parent, name))
        with contextlib.suppress(OSError):
            os.rmdir(parent)


class PinnedFiles:
    """Open file descriptors for ``names`` (paths relative to ``root``) and a folder to read them from."""

    def __init__(self, root: Path, names: Iterable[str]) -> None:
        self.root = root
        fds: list[int] = []
        self._names: dict[str, int] = {}
        descriptors = _descriptor_folder()
        links = tempfile.mkdtemp(prefix="ragkit-reader-") if descriptors else None
        self._finalizer = weakref.finalize(self, _release, fds, links)
        try:
            for name in names:
                if os.path.isabs(name) or ".." in Path(name).parts:
                    raise IndexFormatError(f"index {root} names a file outside its folder: {name!r}")
                fds.append(open_inside(root, name))  # O_NOFOLLOW, and no linked folder on the way
                self._names[name] = fds[-1]
                if links is not None:
                    link = Path(links, name)
                    link.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(f"{descriptors}/{fds[-1]}", link)
        except OSError as exc:
            self.close()
            if exc.errno == errno.ELOOP:
                raise IndexFormatError(f"index {root} is unsafe: {name} is a symbolic link") from None
            if exc.errno == errno.ENOENT:
                raise IndexFormatError(f"index {root} is damaged: {name} is missing") from None
            raise IndexFormatError(f"cannot open {name} of index {root}: {exc.strerror}") from None
        self.folder = Path(links) if links is not None else root
        if links is not None:
            mark_pinned(links, live=True)

    def materialize(self, folder: str) -> Path:
        """Copy the pinned files under ``folder`` into a private folder of real files.

        For libraries that resolve links before reading (onnxruntime checks where a model's
        external weights really lie): once a writer has deleted the index's own copy, the
        links of :attr:`folder` resolve to nothing, while the descriptors still read.
        """
        target = Path(tempfile.mkdtemp(prefix="ragkit-reader-copy-"))
        weakref.finalize(self, _remove_tree, str(target))
        prefix = folder.rstrip("/") + "/"
        for name, fd in self._names.items():
            if name.startswith(prefix):
                out = target / name[len(prefix):]
                out.parent.mkdir(parents=True, exist_ok=True)
                with open(out, "wb") as dst:
                    os.lseek(fd, 0, os.SEEK_SET)
                    while block := os.read(fd, 1 << 20):
                        dst.write(block)
        return target

    def close(self) -> None:
        """Close the descriptors and remove the link folder (also done when the object is collected)."""
        self._finalizer()
