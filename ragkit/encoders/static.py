"""``navec-ru`` at run time: find or build the model folder, and encode with numpy + tokenizers.

The folder is built offline from natasha's navec news vectors by
:func:`ragkit.encoders.static_build.build_static_model` (the recipe is described there).
:class:`StaticEncoder` encodes a built folder with numpy and ``tokenizers`` alone: the vectors
sentence-transformers gives, no torch import, twice its speed.

The folder is versioned: :data:`VERSION` changes whenever the recipe or its defaults change,
the cache folder is ``<name>-v<VERSION>``, and ragkit records ``navec-ru-v<VERSION>`` in index
manifests, so an index is never searched with vectors of another recipe.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import struct
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.errors import ModelLoadError

__all__ = ["NAME", "VERSION", "StaticEncoder", "cache_dir", "is_static_model", "navec_archive"]

logger = logging.getLogger(__name__)

NAME = "navec-ru"

VERSION = 1

NAVEC_FILE = ("data", "emb", "navec_news_v1_1B_250K_300d_100q.tar")

BUILD_INFO = "ragkit_static_model.json"

DEFAULT_WINDOW = 256


def navec_archive() -> Path:
    """The navec news vectors inside the installed ``natasha`` package (not imported)."""
    spec = importlib.util.find_spec("natasha")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model {NAME!r} is built from the word vectors of the 'natasha' package, which is "
            "not installed (pip install natasha navec)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*NAVEC_FILE)
    if not path.is_file():
        raise ModelLoadError(f"model {NAME!r}: the natasha package has no {path.name} ({path})")
    return path


def cache_dir() -> Path:
    """Folder of built models: ``$RAGKIT_CACHE/models``, else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    root = os.environ.get("RAGKIT_CACHE")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ragkit" / "models"


def _is_built(folder: Path) -> bool:
    info = _read_info(folder)
    return info.get("name") == NAME and info.get("version") == VERSION


def _read_info(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The build record of a model folder; empty when there is none (or it is unreadable)."""
    try:
        info = json.loads((Path(folder) / BUILD_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def is_static_model(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a model built by :func:`build_static_model` (any version)."""
    return _read_info(folder).get("name") == NAME


# Tokens gathered before the whole embedding matrix is widened to float32 once (about the
# tokens of 2,000 passages).
_WIDEN_AFTER = 250_000


_SAFETENSORS_DTYPES = {"F16": "<f2", "F32": "<f4"}


def _mapped_tensor(path: Path, name: str) -> np.ndarray:
    """Tensor ``name`` of a safetensors file, memory-mapped (read-only) rather than read.

    A query gathers a few rows of the 75 MB matrix; mapping it costs what they touch, where
    ``safetensors.numpy.load_file`` read all of it (0.09 s of every cold search). The format is
    an 8-byte header length, a JSON header of dtype, shape and data offsets, then the data.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if not 0 < length <= min(size - 8, 1 << 24):
            raise ValueError(f"{path.name} has a header of {length} bytes")
        header = json.loads(fh.read(length))
    entry = header.get(name) if isinstance(header, dict) else None
    try:
        dtype = np.dtype(_SAFETENSORS_DTYPES[entry["dtype"]])
        shape = tuple(int(n) for n in entry["shape"])
        begin, end = (int(n) for n in entry["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path.name} holds no usable tensor {name!r}") from exc
    start = 8 + length + begin
    if len(shape) != 2 or min(shape) <= 0 or end - begin != shape[0] * shape[1] * dtype.itemsize or start + end - begin > size:
        raise ValueError(f"{path.name}: tensor {name!r} does not fit its file")
    return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape)


class StaticEncoder:
    """A built model folder encoded with ``tokenizers`` and numpy: no torch, no sentence-transformers.

    Gives the vectors ``SentenceTransformer(folder).encode`` gives (the mean of the token rows,
    in float32 where torch's float16 embedding bag rounds to float16: cosine 0.99999 between
    the two), loads in under a second where ``import torch`` alone takes seconds, and encodes
    about twice as fast as sentence-transformers (no per-text overhead, no offsets). It offers
    the part of the ``SentenceTransformer`` interface that ragkit's ``Embedder`` uses:
    ``encode``, ``tokenizer``, ``max_seq_length``, ``get_embedding_dimension`` and ``prompts``.
    """

    workers = 1
    cache_tag = ""

    def __init__(self, folder: str | os.PathLike[str], name: str = NAME) -> None:
        self.name = name
        from tokenizers import Tokenizer

        root = Path(folder)
        try:
            # Kept as stored (float16); rows are widened to float32 as they are gathered, until a
            # bulk job has gathered enough of them that widening the whole matrix once (0.3 s,
            # twice the memory) is cheaper. Queries and small updates never pay for it.
            self._weights = _mapped_tensor(root / "model.safetensors", "embedding.weight")
            self._wide: np.ndarray | None = None
            self._gathered = 0
            self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the static model in {root}: {exc}") from exc
        if self._weights.ndim != 2 or self._weights.shape[0] < self.tokenizer.get_vocab_size():
            raise ModelLoadError(f"{root}: the embedding matrix does not match the tokenizer")
        self.tokenizer.no_padding()
        truncation = self.tokenizer.truncation or {}
        self.max_seq_length: int = int(truncation.get("max_length", DEFAULT_WINDOW))
        # encode truncates itself, so the tokenizer counts whole texts and the chunker can use
        # it as it is (copying a 100k-word tokenizer to switch truncation off costs 0.2 s).
        self.tokenizer.no_truncation()
        self.prompts: dict[str, str] = {}

    def get_embedding_dimension(self) -> int:
        return int(self._weights.shape[1])

    # -- the Encoder interface (ragkit.encoders.base) ----------------------------------------
    @property
    def dimension(self) -> int:
        return self.get_embedding_dimension()

    @property
    def max_tokens(self) -> int:
        return self.max_seq_length

    def token_counter(self) -> Any:  # noqa: ANN401 - an HFTokenCounter
        from ragkit.ingest.tokens import HFTokenCounter

        return HFTokenCounter(self.tokenizer)

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts, batch_size=max(1, len(texts)))

    def describe(self) -> dict[str, Any]:
        return {"name": "static", "precision": str(self._weights.dtype)}

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows of these token ids (widening float16 is exact)."""
        if self._wide is None:
            self._gathered += ids.shape[0]
            if self._gathered <= _WIDEN_AFTER or self._weights.dtype == np.float32:
                return self._weights[ids].astype(np.float32)
            self._wide = self._weights.astype(np.float32)
        return self._wide[ids]

    def encode(self, texts: str | Sequence[str], batch_size: int = 1024, **_: Any) -> np.ndarray:
        """Mean token vector of each text (float32, not normalised); zeros for a text with no token.

        Other keyword arguments of ``SentenceTransformer.encode`` are accepted and ignored.
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        out = np.zeros((len(batch), self.get_embedding_dimension()), dtype=np.float32)
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        step = max(1, int(batch_size))
        for lo in range(0, len(batch), step):
            encodings = encode(batch[lo : lo + step], add_special_tokens=False)
            token_ids = [e.ids[: self.max_seq_length] for e in encodings]  # truncation, as the model's
            lengths = np.array([len(t) for t in token_ids], dtype=np.int64)
            filled = np.flatnonzero(lengths)
            if len(filled) == 0:
                continue
            ids = np.fromiter(chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum()))
            rows = self._rows(ids)
            starts = np.concatenate(([0], np.cumsum(lengths[filled])[:-1]))
            out[lo + filled] = np.add.reduceat(rows, starts, axis=0) / lengths[filled, None]
        return out[0] if single else out
