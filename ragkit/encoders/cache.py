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
from dataclasses import dataclass
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
        return _keys(self._salt, texts)

    def held(self) -> CachedKeys:
        """Which texts this cache holds, as a worker elsewhere can ask it (:class:`CachedKeys`)."""
        try:
            heads = [key[:8] for (key,) in self._conn.execute("SELECT key FROM vectors")]
        except sqlite3.DatabaseError as exc:  # damaged: rebuilt, holds nothing
            self._reset(exc)
            heads = []
        values = np.frombuffer(b"".join(heads), dtype="<u8") if heads else np.zeros(0, dtype="<u8")
        return CachedKeys(self._salt, np.sort(values))

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        try:
            return self._get(keys)
        except sqlite3.DatabaseError as exc:  # damaged past its first page: rebuilt, nothing found
            self._reset(exc)
            return {}

    def fill(self, keys: Sequence[bytes], rows: Sequence[int], vectors: np.ndarray) -> list[int]:
        """Set ``vectors[i]`` for each of ``rows`` whose key (``keys[i]``) the cache holds; returns the rows it lacks."""
        found = self.get([keys[i] for i in rows])
        lacking: list[int] = []
        for i in rows:
            vector = found.get(keys[i])
            if vector is None:
                lacking.append(int(i))
            else:
                vectors[i] = vector
        return lacking

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


@dataclass(frozen=True)
class CachedKeys:
    """Which texts an embedding cache holds, for a worker that cannot open it (another node):
    the cache's key salt and the sorted first 8 bytes of each key it holds (8 bytes a vector).

    :meth:`holds` may say yes for a text the cache lacks (two keys sharing 8 bytes, about one
    chance in 10^19 a pair; or a cache changed since); the build then embeds that text itself,
    never the other way round.
    """

    salt: bytes
    heads: np.ndarray  # sorted uint64

    def holds(self, texts: Sequence[str]) -> np.ndarray:
        """Whether the cache holds a vector for each text (bool array)."""
        if not len(self.heads) or not len(texts):
            return np.zeros(len(texts), dtype=bool)
        wanted = np.frombuffer(b"".join(k[:8] for k in _keys(self.salt, texts)), dtype="<u8")
        at = np.minimum(np.searchsorted(self.heads, wanted), len(self.heads) - 1)
        return self.heads[at] == wanted


def _keys(salt: bytes, texts: Sequence[str]) -> list[bytes]:
    return [hashlib.sha256(salt + t.encode("utf-8", "surrogatepass")).digest() for t in texts]
