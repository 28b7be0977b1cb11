"""Paths inside an index folder: relative names only, and no symbolic link is ever followed.

An index folder may come from someone else, so everything ragkit reads or writes in it is
named relative to the folder, checked here (no absolute path, no ``..``, no empty or hidden
component), and opened without following links: every folder on the way is ``lstat``-ed and
the file itself is opened with ``O_NOFOLLOW``. The folder itself may be a link (the user
chose it); nothing inside it may be.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from ragkit.errors import IndexFormatError

MAX_NAME = 255
MAX_DEPTH = 4
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _descriptor_folder() -> str | None:
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return folder
    return None


DESCRIPTORS = _descriptor_folder()  # where a reader's pinned files are read (ragkit.format.pinning)


def bad_name(name: object, depth: int = MAX_DEPTH) -> str | None:
    """Why ``name`` is not a safe relative name inside a folder (None: it is).

    Safe: a string of at most ``depth`` ``/``-separated components, each a plain name that is
    not ``.`` or ``..``, does not start with a dot, and holds no backslash, NUL or control
    character.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a file name"
    if not name or len(name) > MAX_NAME * depth:
        return "is empty or too long"
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    parts = name.split("/")
    if len(parts) > depth:
        return f"has more than {depth} components"
    for part in parts:
        if part in ("", ".", ".."):
            return "leaves the index folder" if part == ".." else "has an empty component"
        if part.startswith(".") or len(part) > MAX_NAME or any(ord(c) < 32 or c == "\x7f" for c in part):
            return "is not a plain file name"
    return None


def check_name(name: object, what: str, depth: int = MAX_DEPTH) -> str:
    """``name`` if it is a safe relative name, else IndexFormatError naming ``what``."""
    why = bad_name(name, depth)
    if why is not None:
        raise IndexFormatError(f"{what} {brief(name)} {why}")
    return name  # type: ignore[return-value]


def no_link_on_the_way(root: Path, rel: str) -> Path:
    """``root / rel`` after checking that no component inside ``root`` is a symbolic link."""
    path = root
    for part in PurePosixPath(rel).parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return root / rel  # the caller reports what is missing
        except OSError as exc:
            raise IndexFormatError(f"cannot read {path}: {exc.strerror}") from exc
        if stat.S_ISLNK(mode):
            raise IndexFormatError(f"index {root} is unsafe: {path.relative_to(root)} is a symbolic link "
                                   "(ragkit never follows links inside an index folder)")
    return path


def open_inside(root: Path, rel: str) -> int:
    """A read-only descriptor of the regular file ``root/rel``; no link followed on the way.

    The one exception: ``root`` is this process's descriptor folder, where a reader reads the
    files it pinned (:mod:`ragkit.format.pinning`) after opening them this way.
    """
    if DESCRIPTORS is not None and str(root) == DESCRIPTORS:
        return os.open(root / rel, os.O_RDONLY | _CLOEXEC)
    path = no_link_on_the_way(root, rel)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == getattr(os, "ELOOP", -1):
            raise IndexFormatError(f"index {root} is unsafe: {rel} is a symbolic link") from exc
        raise IndexFormatError(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IndexFormatError(f"index {root} is damaged: {rel} is not a regular file")
    return fd


def read_inside(root: Path, rel: str, limit: int) -> bytes:
    """The bytes of ``root/rel`` (at most ``limit``: a larger file is an IndexFormatError)."""
    fd = open_inside(root, rel)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise IndexFormatError(f"{root / rel} is {size} bytes, more than the {limit} a ragkit file of its kind may have")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise IndexFormatError(f"{root / rel} is larger than {limit} bytes")
    return data


def refuse_links(root: Path, names: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> None:
    """IndexFormatError if any of these names, or any entry starting with a prefix, is a link."""
    try:
        entries = list(os.scandir(root))
    except OSError as exc:
        raise IndexFormatError(f"cannot read {root}: {exc.strerror}") from exc
    for entry in entries:
        if (entry.name in names or entry.name.startswith(prefixes)) and entry.is_symlink():
            raise IndexFormatError(f"index {root} is unsafe: {entry.name} is a symbolic link "
                                   "(ragkit never follows links inside an index folder); remove it")


def brief(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
