"""``manifest.json``: what an index folder holds, how it was built, and which files are current.

The manifest is the commit point of an index: data files are written under new generation
names first, then the manifest is atomically replaced to point at them. A reader that opens
the manifest therefore always sees one complete generation.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit._version import __version__
from ragkit.errors import IndexFormatError, IndexNotFoundError
from ragkit.format.inside import brief

if TYPE_CHECKING:
    from ragkit.format.schema import Manifest

FORMAT = "ragkit-index"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MAX_JSON_BYTES = 64 << 20  # a manifest, BM25 or encoder config larger than this is not ragkit's


def new_manifest(**parts: Any) -> dict[str, Any]:
    import datetime as _dt

    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "ragkit_version": __version__, "created": created, **parts}


def read_versioned_json(
    path: Path, fmt: str, version: int | tuple[int, ...], what: str, error: type[IndexFormatError] = IndexFormatError,
    limit: int = MAX_JSON_BYTES,
) -> dict[str, Any]:
    """Read a JSON object stamped ``{"format": fmt, "format_version": version}``.

    ``version`` may be a tuple of the versions this ragkit reads.

    Anything unreadable, foreign or of another version raises ``error`` with one line naming
    ``what`` it was meant to be; so do a symbolic link (never followed), a file over ``limit``
    bytes, nesting deeper than :data:`~ragkit.format.schema.MAX_NESTING` and numbers Python
    cannot hold. Callers handle a missing file themselves (its meaning differs).
    """
    from ragkit.format.inside import read_inside
    from ragkit.format.schema import MAX_NESTING, nesting

    try:
        raw = read_inside(path.parent, path.name, limit)
        data = json.loads(raw.decode("utf-8"))
    except IndexFormatError as exc:
        raise error(str(exc)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: bad JSON, an integer of 5,000 digits
        raise error(f"{path} is not a readable {what}: {_first_line(exc)}") from None
    except RecursionError:
        raise error(f"{path} is not a readable {what}: nested too deeply") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path} is not a {what}")
    if nesting(data) > MAX_NESTING:
        raise error(f"{path} is not a readable {what}: nested deeper than {MAX_NESTING} levels")
    versions = version if isinstance(version, tuple) else (version,)
    found = data.get("format_version")
    if isinstance(found, bool) or found not in versions:
        readable = " or ".join(str(v) for v in versions)
        raise error(
            f"{what} {path} has format version {brief(found)}; this ragkit ({__version__}) "
            f"reads version {readable}: rebuild the index"
        )
    return data


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read and check a manifest (:mod:`ragkit.format.schema`); raise a one-line ragkit error for anything wrong."""
    return load_manifest(folder).raw


def load_manifest(folder: str | Path) -> Manifest:
    """The typed, checked manifest of the index folder ``folder``."""
    from ragkit.format.schema import parse

    root = Path(folder)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        if root.exists():
            raise IndexNotFoundError(f"no index at {root}: it is a file, not a folder")
        raise IndexNotFoundError(f"no index at {root} (folder does not exist)")
    if not os.path.lexists(path):
        raise IndexNotFoundError(f"no ragkit index in {root} (no {MANIFEST_NAME})")
    data = read_versioned_json(path, FORMAT, FORMAT_VERSION, "ragkit index manifest")
    return parse(data, path)


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:200]


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside, fsync, rename over, fsync the folder: a crash leaves old or new, never half.

    The temporary file is created afresh (``O_EXCL | O_NOFOLLOW``): a link planted under its
    name is refused, never written through.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        with os.fdopen(os.open(tmp, flags, 0o644), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    write_atomic(folder / MANIFEST_NAME, text.encode("utf-8"))
