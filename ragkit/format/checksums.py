"""Fingerprints of index files, recorded in the manifest and checked before anything parses them.

Opening an index checks every file's size and the SHA-256 of its first 64 KiB (cheap, and it
covers the headers FAISS and SQLite parse first); ``verify`` checks the full SHA-256 too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ragkit.errors import IndexFormatError

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
    return {"size": path.stat().st_size, "head_sha256": head.hexdigest(), "sha256": full.hexdigest()}


def record(root: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Fingerprints of these files and of every file inside these folders, by relative path."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        p = root / name
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            out[f.relative_to(root).as_posix()] = fingerprint(f)
    return out


def check(root: Path, files: dict[str, dict[str, Any]], full: bool = False) -> None:
    """Raise IndexFormatError for the first missing, resized or altered file."""
    for rel, expected in files.items():
        p = root / rel
        if ".." in Path(rel).parts or not p.is_file():
            raise IndexFormatError(f"index {root} is damaged: {rel} is missing")
        size = p.stat().st_size
        if size != expected.get("size"):
            raise IndexFormatError(f"index {root} is damaged: {rel} has {size} bytes, expected {expected.get('size')}")
        with open(p, "rb") as fh:
            head = hashlib.sha256(fh.read(HEAD_BYTES)).hexdigest()
        if head != expected.get("head_sha256"):
            raise IndexFormatError(f"index {root} is damaged: {rel} does not match its checksum")
        if full and fingerprint(p)["sha256"] != expected.get("sha256"):
            raise IndexFormatError(f"index {root} is damaged: {rel} does not match its checksum")
