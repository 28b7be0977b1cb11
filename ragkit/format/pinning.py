"""Pinning a generation's files, so a reader outlives the writers that replace them.

A writer deletes generations older than the previous one, so a reader that opened parts lazily
would lose its files after two updates. :class:`PinnedFiles` opens every file of the reader's
generation at once (on POSIX an open file outlives its unlink), and :class:`PinnedFolder` lays
the open descriptors out like the index folder: ``folder / name`` is ``/proc/self/fd/N`` for a
file and a sub-folder view for a folder, so loaders read from it as from the index itself and
always see the generation the reader opened. Nothing is written anywhere: no link folder, no
copy. Where the platform has no descriptor folder, the index folder is read directly.

Files are opened with ``O_NOFOLLOW`` and no linked folder on the way
(:func:`ragkit.format.inside.open_inside`): a data file that is a symbolic link is refused, so a
reader never follows a link out of the index folder.
"""

from __future__ import annotations

import errno
import os
import re
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Union

from ragkit.errors import IndexFormatError
from ragkit.format.inside import DESCRIPTORS as _DESCRIPTORS
from ragkit.format.inside import open_inside




def _release(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class PinnedFolder:
    """A read-only view of a reader's pinned files, laid out like the index folder.

    ``view / "store.sqlite"`` is the path of that file's open descriptor; ``view / "lexical-000002"``
    is the view of that folder. A name the generation does not list is an IndexFormatError: a
    reader never reads a file its manifest does not name. ``str(view)`` is the real folder, for
    messages.
    """

    def __init__(self, root: Path, descriptors: Mapping[str, int], prefix: str = "") -> None:
        self.root = root
        self._fds = descriptors
        self._prefix = prefix

    def __truediv__(self, name: str) -> Union[Path, PinnedFolder]:
        full = self._prefix + str(name)
        fd = self._fds.get(full)
        if fd is not None:
            return Path(f"{_DESCRIPTORS}/{fd}")
        if any(n.startswith(full + "/") for n in self._fds):
            return PinnedFolder(self.root, self._fds, full + "/")
        raise IndexFormatError(f"index {self.root} is damaged: {full} is not a file of its generation")

    def open(self, name: str) -> int:
        """A new read-only descriptor of the pinned file ``name`` (its own file offset)."""
        return os.open(self / name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    def __str__(self) -> str:
        return str(self.root / self._prefix) if self._prefix else str(self.root)

    def __repr__(self) -> str:
        return f"PinnedFolder({str(self)!r})"


def _describe(root: Path, fds: Mapping[str, int], text: str) -> str:
    if _DESCRIPTORS is None:
        return text
    names = {str(fd): name for name, fd in fds.items()}
    return re.sub(re.escape(_DESCRIPTORS) + r"/(\d+)",
                  lambda m: str(root / names[m.group(1)]) if m.group(1) in names else m.group(0), text)


def as_folder(folder: str | os.PathLike[str] | PinnedFolder) -> Path | PinnedFolder:
    """``folder`` as something to join names to: a pinned view as it is, anything else as a Path."""
    return folder if isinstance(folder, PinnedFolder) else Path(folder)


class PinnedFiles:
    """Open file descriptors for ``names`` (paths relative to ``root``) and a :class:`PinnedFolder` of them."""

    def __init__(self, root: Path, names: Iterable[str]) -> None:
        self.root = root
        fds: list[int] = []
        self._names: dict[str, int] = {}
        self._finalizer = weakref.finalize(self, _release, fds)
        name = ""
        try:
            for name in names:
                if os.path.isabs(name) or ".." in Path(name).parts:
                    raise IndexFormatError(f"index {root} names a file outside its folder: {name!r}")
                fds.append(open_inside(root, name))  # O_NOFOLLOW, and no linked folder on the way
                self._names[name] = fds[-1]
        except OSError as exc:
            self.close()
            if exc.errno == errno.ELOOP:
                raise IndexFormatError(f"index {root} is unsafe: {name} is a symbolic link") from None
            if exc.errno == errno.ENOENT:
                raise IndexFormatError(f"index {root} is damaged: {name} is missing") from None
            raise IndexFormatError(f"cannot open {name} of index {root}: {exc.strerror}") from None
        self.folder: Path | PinnedFolder = PinnedFolder(root, self._names) if _DESCRIPTORS else root

    def same_file(self, name: str, path: Path) -> bool:
        """Whether ``path`` is (still) the very file pinned as ``name``."""
        try:
            a, b = os.fstat(self._names[name]), os.stat(path, follow_symlinks=False)
        except (KeyError, OSError):
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def describe(self, text: str) -> str:
        """``text`` with descriptor paths replaced by the index paths they stand for."""
        return _describe(self.root, self._names, text)

    def close(self) -> None:
        """Close the descriptors (also done when the object is collected)."""
        self._finalizer()
