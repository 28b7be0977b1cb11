"""The one encoder interface, and what is written once above it: batching and normalisation.

Every backend (sentence-transformers, an exported ONNX folder in float32 or int8, the static
navec-ru model) is an :class:`Encoder`: it embeds one batch of already prompted texts into
float32 rows. :func:`embed` cuts texts into length-sorted batches (less padding), runs as many
batches at once as the backend has workers, and L2-normalises: every vector ragkit stores or
searches is unit length (:func:`ragkit.vectors.faiss_index.l2_normalize`), so inner product
is cosine similarity.

:class:`TextEmbedder` is what the build and the search use: an encoder pair for queries and
passages with their prompts (:class:`ragkit.encoders.embedder.Embedder`, or the test double
:class:`ragkit.testing.FakeHashEmbedder`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ragkit.vectors.exact import l2_normalize

if TYPE_CHECKING:
    from ragkit.ingest.tokens import TokenCounter

ProgressFn = Callable[[int], None]


def usable_cores() -> int:
    """The cores a backend may keep busy: ``OMP_NUM_THREADS`` where set to a positive number
    (a Ray actor's CPUs, a user's cap), else the CPUs this process may run on."""
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        cap = 0
    if cap > 0:
        return cap
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity call (macOS, Windows)
        return max(1, os.cpu_count() or 1)


@runtime_checkable
class Encoder(Protocol):
    """A backend that embeds batches of texts (prompts already prepended)."""

    name: str

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """The model's window in tokens, special tokens included; longer texts are truncated."""
        ...

    @property
    def workers(self) -> int:
        """How many batches :meth:`encode_batch` may run at once, on threads."""
        ...

    @property
    def cache_tag(self) -> str:
        """Extra embedding-cache key: vectors of backends with different tags never mix."""
        ...

    def token_counter(self) -> TokenCounter: ...

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """float32 rows of one batch, in order, not normalised."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this backend."""
        ...


class TextEmbedder(Protocol):
    """What building and searching an index need from a model."""

    name: str
    dimension: int
    max_tokens: int
    query_prompt: str
    passage_prompt: str

    def token_counter(self) -> TokenCounter: ...

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, passages: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray: ...

    @property
    def passage_cache_tag(self) -> str:
        """Extra embedding-cache key of the passage vectors ("" for float32; optional, "" when absent)."""
        ...

    def describe(self) -> dict[str, Any]: ...


def embed(encoder: Encoder, texts: Sequence[str], prompt: str = "", **batching: Any) -> np.ndarray:
    """Unit-length float32 vectors of ``prompt + text`` for each text, in input order.

    ``batching``: ``batch_size``, ``progress`` and ``workers`` of :func:`encode_sorted`.
    """
    return l2_normalize(encode_sorted(encoder, texts, prompt, **batching))


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Positions of ``texts``, longest first, ties in input order: the order :func:`encode_sorted`
    cuts its batches from (an executor that spreads them must cut the same ones)."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return np.argsort(-lengths, kind="stable")


def encode_sorted(
    encoder: Encoder,
    texts: Sequence[str],
    prompt: str = "",
    *,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Raw rows of ``prompt + text``, embedded in length-sorted batches, ``workers`` at once.

    A backend with a ``batch_limit`` (the int8 encoder: 1) never gets larger batches.
    """
    out = np.empty((len(texts), encoder.dimension), dtype=np.float32)
    order = length_order(texts).tolist()
    step = max(1, min(int(batch_size), int(getattr(encoder, "batch_limit", None) or batch_size)))
    batches = [order[lo : lo + step] for lo in range(0, len(order), step)]

    def run(batch: list[int]) -> np.ndarray:
        return encoder.encode_batch([prompt + texts[i] for i in batch])

    workers = encoder.workers if workers is None else workers
    pool = ThreadPoolExecutor(workers) if workers > 1 and len(batches) > 1 else None
    try:
        for batch, vectors in zip(batches, pool.map(run, batches) if pool else map(run, batches)):
            out[batch] = vectors
            if progress is not None:
                progress(len(batch))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out
