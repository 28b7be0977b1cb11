"""``manifest.json``: what an index folder holds, how it was built, and which files are current.

The manifest is the commit point of an index: data files are written under new generation
names first, then the manifest is atomically replaced to point at them. A reader that opens
the manifest therefore always sees one complete generation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ragkit._version import __version__
from ragkit.errors import IndexFormatError, IndexNotFoundError

FORMAT = "ragkit-index"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def new_manifest(**parts: Any) -> dict[str, Any]:
    import datetime as _dt

    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "ragkit_version": __version__, "created": created, **parts}


def read_versioned_json(
    path: Path, fmt: str, version: int | tuple[int, ...], what: str, error: type[IndexFormatError] = IndexFormatError
) -> dict[str, Any]:
    """Read a JSON object stamped ``{"format": fmt, "format_version": version}``.

    ``version`` may be a tuple of the versions this ragkit reads.

    Anything unreadable, foreign or of another version raises ``error`` with one line naming
    ``what`` it was meant to be. Callers handle a missing file themselves (its meaning differs).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path} is not a readable {what}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path} is not a {what}")
    versions = version if isinstance(version, tuple) else (version,)
    found = data.get("format_version")
    if isinstance(found, bool) or found not in versions:
        readable = " or ".join(str(v) for v in versions)
        raise error(
            f"{what} {path} has format version {found}; this ragkit ({__version__}) "
            f"reads version {readable}: rebuild the index"
        )
    return data


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read and check a manifest; raise a one-line ragkit error for anything wrong."""
    root = Path(folder)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise IndexNotFoundError(f"no index at {root} (folder does not exist)")
    if not path.is_file():
        raise IndexNotFoundError(f"no ragkit index in {root} (no {MANIFEST_NAME})")
    data = read_versioned_json(path, FORMAT, FORMAT_VERSION, "ragkit index manifest")
    for key in ("model", "vectors", "store", "counts"):
        if not isinstance(data.get(key), dict):
            raise IndexFormatError(f"{path} lacks the {key!r} section")
    return data


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside, fsync, rename over, fsync the folder: a crash leaves old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
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
