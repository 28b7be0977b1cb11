"""A content-addressed cache of passage vectors: re-indexing unchanged passages embeds nothing.

Keys are SHA-256 digests of (model name, dimension, passage prompt[, backend tag], passage
text); values the float32 unit vectors. The backend tag keeps vectors of an approximate
backend (int8) apart from float32 ones; float32 keys carry none, as before it existed. The cache lives beside the index data (``embeddings.sqlite``); it is a
cache, not part of an index generation: deleting it only costs re-embedding.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CACHE_NAME = "embeddings.sqlite"


class EmbeddingCache:
    def __init__(self, path: str | Path, model: str, dimension: int, prompt: str, backend: str = "") -> None:
        self.path = Path(path)
        self.dimension = int(dimension)
        self._salt = f"{model}\0{dimension}\0{prompt}\0{backend + chr(0) if backend else ''}".encode()
        self._conn = sqlite3.connect(self.path)
        try:
            self._conn.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        except sqlite3.DatabaseError as exc:
            self._reset(exc)

    def _reset(self, exc: sqlite3.DatabaseError) -> None:
        """A damaged cache is worthless, never fatal: start a fresh one (a full disk is raised)."""
        if "full" in str(exc):
            raise exc
        self._conn.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._conn = sqlite3.connect(self.path)
        self._conn.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")

    def keys(self, texts: Sequence[str]) -> list[bytes]:
        return [hashlib.sha256(self._salt + t.encode("utf-8", "surrogatepass")).digest() for t in texts]

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        try:
            return self._get(keys)
        except sqlite3.DatabaseError as exc:  # damaged past its first page: rebuilt, nothing found
            self._reset(exc)
            return {}

    def _get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        size = self.dimension * 4
        for lo in range(0, len(keys), 500):
            chunk = list(keys[lo : lo + 500])
            marks = ",".join("?" * len(chunk))
            for key, blob in self._conn.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                if len(blob) == size:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        def rows():  # noqa: ANN202
            return ((k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vectors))

        try:
            with self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows())
        except sqlite3.DatabaseError as exc:
            self._reset(exc)
            with self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows())

    def close(self) -> None:
        self._conn.close()
