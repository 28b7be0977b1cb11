"""Fingerprints of index files, recorded in the manifest and checked before anything parses them.

Opening an index checks every file's size and the SHA-256 of its first 64 KiB (cheap, and it
covers the headers FAISS and SQLite parse first); ``verify`` and every update check the full
SHA-256 too. Files are opened inside the index folder only and never through a symbolic
link (:mod:`ragkit.format.inside`); the folders a generation names may hold nothing but the
files its manifest lists.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ragkit.errors import IndexFormatError
from ragkit.format.inside import check_name, no_link_on_the_way, open_inside
from ragkit.format.pinning import PinnedFolder

HEAD_BYTES = 1 << 16


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: Path) -> dict[str, Any]:
    head = hashlib.sha256()
    full = hashlib.sha256()
    with open(path, "rb") as fh:
        first = fh.read(HEAD_BYTES)
        head.update(first)
        full.update(first)
        for block in iter(lambda: fh.read(1 << 20), b""):
            full.update(block)
        size = os.fstat(fh.fileno()).st_size
    return {"size": size, "head_sha256": head.hexdigest(), "sha256": full.hexdigest()}


def record(root: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Fingerprints of these files and of every file inside these folders, by relative path."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        p = no_link_on_the_way(root, check_name(name, "index file"))
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            out[f.relative_to(root).as_posix()] = fingerprint(f)
    return out


def check(root: Path | PinnedFolder, files: Mapping[str, Mapping[str, Any]], full: bool = False) -> None:
    """Raise IndexFormatError for the first missing, resized, altered, linked or foreign file.

    ``files`` are the manifest's checksums (names already checked by the schema; checked
    again here for callers that bypass it). A size is compared before a byte is hashed.
    """
    pinned = isinstance(root, PinnedFolder)  # a reader's open descriptors: read through them
    for rel, expected in files.items():
        check_name(rel, f"index {root}: file")
        try:
            fd = root.open(rel) if isinstance(root, PinnedFolder) else open_inside(root, rel)
        except FileNotFoundError:
            raise IndexFormatError(f"index {root} is damaged: {rel} is missing") from None
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fd).st_size
            if size != expected.get("size"):
                raise IndexFormatError(f"index {root} is damaged: {rel} has {size} bytes, expected {expected.get('size')}")
            head = hashlib.sha256(fh.read(HEAD_BYTES))
            if head.hexdigest() != expected.get("head_sha256"):
                raise IndexFormatError(f"index {root} is damaged: {rel} does not match its checksum")
            if full:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    head.update(block)
                if head.hexdigest() != expected.get("sha256"):
                    raise IndexFormatError(f"index {root} is damaged: {rel} does not match its checksum")
    if not pinned:  # a pinned folder holds the listed files only, by construction
        only_listed(root, files)


def only_listed(root: Path, files: Iterable[str]) -> None:
    """The folders of a generation hold only the files its manifest lists: no link, no stray entry."""
    listed = set(files)
    for folder in sorted({rel.split("/", 1)[0] for rel in listed if "/" in rel}):
        for dirpath, dirnames, filenames in os.walk(root / folder):
            for name in dirnames + filenames:
                rel = (Path(dirpath) / name).relative_to(root).as_posix()
                if os.path.islink(root / rel):
                    raise IndexFormatError(f"index {root} is unsafe: {rel} is a symbolic link "
                                           "(ragkit never follows links inside an index folder)")
                if name in filenames and rel not in listed:
                    raise IndexFormatError(f"index {root} is damaged: {rel} is not a file of this generation")
