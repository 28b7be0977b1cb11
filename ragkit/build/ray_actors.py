"""What runs inside a Ray worker of a build: the actor classes of each stage and the shard task.

Each actor is built once per worker (:func:`ragkit.build.ray_runtime.worker_encoder` loads its
encoder in the constructor, so an actor that reports ready can work) and then runs units:
one Ray block a unit, its result as bytes (:mod:`ragkit.build.batches`'s transport, no pickle)
with the node that made it, the actor's peak memory and when it was ready
(:meth:`ragkit.build.ray_executor.RayExecutor._map` reads them).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from ragkit.build import batches
from ragkit.build.options import BuildOptions
from ragkit.build.ray_runtime import quiet_worker, worker_encoder
from ragkit.build.units import unpack_unit
from ragkit.encoders.embedder import EncoderSpec
from ragkit.vectors.faiss_index import VectorIndex


class LoadActor:
    """A Ray Data actor: reads units of file pieces (the document loaders)."""

    def __init__(self, cpus: float) -> None:
        quiet_worker()  # no encoder here: torch is never imported
        self.ready = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [batches.pack_loads(batches.load_pieces(unpack_unit(u))) for u in batch["unit"]]
        return output(batch, out, self.ready)


class UnitActor:
    """A Ray Data actor: a streamed build's units (:func:`ragkit.build.batches.run_unit`)."""

    def __init__(self, spec: EncoderSpec, work: list[Any], documents: bool, cpus: float) -> None:
        import ray

        self.embedder = worker_encoder(spec, cpus, lambda e: (e.token_counter(), e.passage_encoder()))
        self.work: batches.UnitWork = ray.get(work[0])  # one copy in the object store, shared by the actors
        self.unpack = batches.unpack_documents if documents else unpack_unit
        self.ready = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [batches.pack_result(batches.run_unit(self.unpack(u), self.embedder, self.work)) for u in batch["unit"]]
        return output(batch, out, self.ready)


class ChunkActor:
    """A Ray Data actor: cuts passages and counts BM25 terms of batches of documents."""

    def __init__(self, spec: EncoderSpec, options: BuildOptions, cpus: float) -> None:
        self.embedder = worker_encoder(spec, cpus, lambda e: e.token_counter())
        self.options = options
        self.ready = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [batches.pack_part(batches.chunk_batch(batches.unpack_documents(u), self.embedder, self.options))
               for u in batch["unit"]]
        return output(batch, out, self.ready)


class EmbedActor:
    """A Ray Data actor: embeds batches of passage texts."""

    def __init__(self, spec: EncoderSpec, cpus: float) -> None:
        self.embedder = worker_encoder(spec, cpus, lambda e: e.passage_encoder())
        self.ready = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for unit in batch["unit"]:
            texts = json.loads(bytes(unit).decode("utf-8"))
            out.append(np.ascontiguousarray(batches.embed_batch(texts, self.embedder), dtype=np.float32).tobytes())
        return output(batch, out, self.ready)


def output(batch: dict[str, np.ndarray], results: list[bytes], ready: float) -> dict[str, np.ndarray]:
    """An actor's output rows: unit number, result bytes, the node that made them, the
    actor's peak resident memory (KiB) and when it was ready (its constructor's end, epoch s)."""
    import resource

    import ray

    node = ray.get_runtime_context().get_node_id()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seq": batch["seq"], "result": np.array(results, dtype=object),
            "node": np.array([node] * len(results), dtype=object), "rss_kib": np.full(len(results), rss, np.int64),
            "ready": np.full(len(results), ready, np.float64)}


def add_shard(empty: np.ndarray, factory: str, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, str]:
    """A Ray task: the trained, empty index with one shard of vectors added."""
    import ray

    shard = VectorIndex.from_bytes(empty, factory)
    shard.add(ids, vectors)
    return shard.to_bytes(), ray.get_runtime_context().get_node_id()
