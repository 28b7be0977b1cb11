"""The build on a Ray cluster (Ray Data): ``build_index(..., executor=RayExecutor(...))``.

Reading the files, chunking (with BM25 term counting) and embedding run in ``map_batches``
over stateful pools of ``workers`` actors; the chunking and embedding actors each hold one
encoder rebuilt from the picklable encoder spec (:func:`ragkit.build.batches.worker_embedder`).
Work goes out in numbered units (a batch of files, of documents, or of passage texts; one
Ray block each, and passage units shrink toward the stage's end so the workers finish
together) and comes back as partial results that the driver puts in unit order and merges
(:mod:`ragkit.build.batches`): documents, skips and passage ids follow the corpus order, never
the order workers finish in, and the merged BM25 is bit-identical to a local build. Workers
read the files at the driver's paths; a file a worker's machine does not see (no shared
filesystem) is read by the driver instead.

The driver keeps the embedding cache (only texts it lacks go to the workers) and trains the
FAISS quantisers on one sample; Ray tasks add shards of the vectors to copies of the trained
index and the driver merges them in order (flat and IVF types; FAISS cannot merge HNSW or
refine types, which the driver builds itself), tunes the result and commits the generation
as any build. The driver takes each unit's result as it arrives (unpacked, or its vectors
written to their rows) and drops the units once Ray holds them, but it still holds the
documents, passage texts and vectors of the whole corpus meanwhile, as the local build does.

Resources: each actor asks for at most one CPU, and the pool together for at most the
cluster's CPUs less half a CPU (:meth:`RayExecutor.cpus_per_worker`), so Ray Data's own tasks
always find one: on a 2-CPU instance, two actors of one CPU each starved them and the run
hung. Ray's logs and progress bars stay off unless ``verbose``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.build import batches, stages
from ragkit.build.options import BuildOptions
from ragkit.build.reuse import Kept
from ragkit.documents import Document
from ragkit.encoders.base import length_order
from ragkit.encoders.embedder import Embedder, EncoderSpec
from ragkit.build.ray_runtime import (RayBuildError, clear_error, quiet_ray_data, quiet_worker, ray_module,
                                     start_ray, worker_encoder)
from ragkit.errors import InvalidArgumentError, RagkitError
from ragkit.ingest.loaders import FileLoad, load_file, merged_documents, planned_files
from ragkit.ingest.report import LoadReport
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.progress import NoProgress, Progress
from ragkit.vectors.faiss_index import VectorIndex

_RETRIES = 3  # restarts of a dead actor, and retries of the unit it was running
_TAIL = 2  # units shrink once fewer than this many per worker of the largest size are left
_UNIT_BYTES = 16 << 20  # a unit of files to read stops at the first file past this many bytes


def guided_bounds(n: int, largest: int, multiple: int, workers: int) -> list[tuple[int, int]]:
    """``n`` items cut into units of at most ``largest``, each starting at a multiple of ``multiple``,
    that shrink toward the end (guided scheduling): a unit is at most the work left over
    ``_TAIL`` times the workers, so no worker is left with a big unit while the others idle.

    With units of one size the last ones run on a single worker while the others idle: 4,446
    MiniLM passages in units of 512 are 8 full units and one of 350; two workers take 4 full
    units each and one of them the last, so the stage lasts 2,398 passages' work where an
    even split is 2,223: two workers could not run more than 1.85x as fast as one.
    """
    bounds: list[tuple[int, int]] = []
    lo = 0
    while lo < n:
        share = -(-(n - lo) // (_TAIL * workers))
        size = min(largest, max(multiple, -(-share // multiple) * multiple))
        bounds.append((lo, min(n, lo + size)))
        lo += size
    return bounds


class _LoadActor:
    """A Ray Data actor: reads batches of files (the document loaders)."""

    def __init__(self, cpus: float) -> None:
        quiet_worker()  # no encoder here: torch is never imported
        self.ready = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [batches.pack_loads(batches.load_batch(batches.unpack_files(u))) for u in batch["unit"]]
        return _output(batch, out, self.ready)


class _ChunkActor:
    """A Ray Data actor: cuts passages and counts BM25 terms of batches of documents."""

    def __init__(self, spec: EncoderSpec, options: BuildOptions, cpus: float) -> None:
        self.embedder = worker_encoder(spec, cpus, lambda e: e.token_counter())
        self.options = options
        self.ready = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [batches.pack_part(batches.chunk_batch(batches.unpack_documents(u), self.embedder, self.options))
               for u in batch["unit"]]
        return _output(batch, out, self.ready)


class _EmbedActor:
    """A Ray Data actor: embeds batches of passage texts."""

    def __init__(self, spec: EncoderSpec, cpus: float) -> None:
        self.embedder = worker_encoder(spec, cpus, lambda e: e.passage_encoder())
        self.ready = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for unit in batch["unit"]:
            texts = json.loads(bytes(unit).decode("utf-8"))
            out.append(np.ascontiguousarray(batches.embed_batch(texts, self.embedder), dtype=np.float32).tobytes())
        return _output(batch, out, self.ready)


def _output(batch: dict[str, np.ndarray], results: list[bytes], ready: float) -> dict[str, np.ndarray]:
    """An actor's output rows: unit number, result bytes, the node that made them, the
    actor's peak resident memory (KiB) and when it was ready (its constructor's end, epoch s)."""
    import resource

    import ray

    node = ray.get_runtime_context().get_node_id()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seq": batch["seq"], "result": np.array(results, dtype=object),
            "node": np.array([node] * len(results), dtype=object), "rss_kib": np.full(len(results), rss, np.int64),
            "ready": np.full(len(results), ready, np.float64)}


class RayExecutor:
    """Runs a build's chunking, BM25 counting and embedding on Ray (see the module doc).

    ``address``: None starts a local Ray instance (or uses the one this process already
    started), ``"auto"`` or ``"ray://host:port"`` joins a running cluster. ``workers``: actors
    in each stage's pool. ``cpus_per_worker`` / ``gpus_per_worker``: what each actor asks for
    (default: see :meth:`cpus_per_worker`; no GPU). A work unit holds up to ``files_per_unit``
    files to read (and stops past 16 MiB), ``documents_per_unit`` documents or ``texts_per_unit``
    texts; vector shards hold at least ``shard_vectors``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, *, cpus_per_worker: float | None = None,
                 gpus_per_worker: float = 0.0, files_per_unit: int = 64, documents_per_unit: int = 64,
                 texts_per_unit: int = 256, shard_vectors: int = 100_000, verbose: bool = False) -> None:
        if workers < 1:
            raise InvalidArgumentError(f"--workers must be at least 1, got {workers}")
        if cpus_per_worker is not None and cpus_per_worker <= 0:
            raise InvalidArgumentError("CPUs per worker must be > 0")
        self.address = address
        self.workers = int(workers)
        self._cpus = cpus_per_worker
        self.gpus_per_worker = float(gpus_per_worker)
        self.files_per_unit = max(1, int(files_per_unit))
        self.documents_per_unit = int(documents_per_unit)
        self.texts_per_unit = int(texts_per_unit)
        self.shard_vectors = max(1, int(shard_vectors))
        self.verbose = verbose
        self._started = False
        self._ready = False
        self._parts: list[batches.ChunkPart] = []  # the last chunk call's parts, for lexical()
        self.nodes: dict[str, dict[str, int]] = {}  # stage -> node id -> work units it ran
        self.worker_peak_rss_kib: dict[str, int] = {}  # stage -> the largest actor's peak RSS
        # stage -> seconds from handing its work to Ray until the last actor that ran a unit was
        # built (a fixed cost: a process and, for chunking and embedding, a model load an actor),
        # so benchmarks can report it apart
        self.pool_start_s: dict[str, float] = {}

    # -- cluster ------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to (or start) Ray and silence it; done on first use."""
        if self._ready:
            return
        ray = ray_module()
        if not ray.is_initialized():
            start_ray(self.address, verbose=self.verbose)
            self._started = True
        quiet_ray_data(self.verbose)
        self._ready = True

    def close(self) -> None:
        """Shut down the Ray instance this executor started (one it joined stays)."""
        if self._started:
            ray_module().shutdown()
            self._started = False
        self._ready = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cpus_per_worker(self) -> float:
        """CPUs each actor asks for: at most one, and the pool leaves half a CPU free.

        With one actor of one CPU per CPU, Ray Data's own tasks (splitting, moving blocks)
        could not be scheduled and the run hung; half a CPU spare is enough for them.
        """
        if self._cpus is not None:
            return self._cpus
        total = float(ray_module().cluster_resources().get("CPU", 1.0))
        return round(max(0.05, min(1.0, (total - 0.5) / self.workers)), 2)

    # -- the stages -----------------------------------------------------------------------
    def _map(self, stage: str, actor: type, units: list[bytes], constructor: dict[str, Any],
             take: Callable[[int, bytes], None]) -> None:
        """Run ``actor`` over ``units`` (a Ray Data actor pool); ``take(seq, result)`` gets each
        unit's result as it comes back, in any order, and the driver keeps none of them itself.

        ``units`` is emptied once Ray holds the work (its blocks are in the object store), so
        the driver does not keep a second copy of what it sent out.
        """
        if not units:
            return
        self.start()
        ray = ray_module()
        cpus = self.cpus_per_worker()
        count = len(units)
        remote: dict[str, Any] = {"max_restarts": _RETRIES, "max_task_retries": _RETRIES}
        handed = time.time()
        # one block a unit: an actor takes a whole block, so blocks of several units would
        # undo the small units that let the workers finish together (see guided_bounds)
        ds = ray.data.from_items([{"seq": i, "unit": u} for i, u in enumerate(units)], override_num_blocks=count)
        units.clear()
        with warnings.catch_warnings():  # bounded retries have no named parameter yet (Ray 2.60)
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(actor, fn_constructor_kwargs={**constructor, "cpus": cpus}, batch_size=1,
                                batch_format="numpy", concurrency=min(self.workers, count), num_cpus=cpus,
                                num_gpus=self.gpus_per_worker or None, **remote)
        seen: set[int] = set()
        nodes = self.nodes.setdefault(stage, {})
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for seq, result, node in zip(batch["seq"].tolist(), batch["result"], batch["node"]):
                    if int(seq) in seen:  # each unit is taken once, whatever Ray hands back
                        continue
                    seen.add(int(seq))
                    nodes[str(node)] = nodes.get(str(node), 0) + 1
                    take(int(seq), bytes(result))
                self.worker_peak_rss_kib[stage] = max(self.worker_peak_rss_kib.get(stage, 0),
                                                      int(batch["rss_kib"].max()))
                self.pool_start_s[stage] = max(self.pool_start_s.get(stage, 0.0),
                                               float(batch["ready"].max()) - handed)
        except RagkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray wraps worker errors in its own types
            raise clear_error(exc) from exc
        if len(seen) != count:
            raise RayBuildError(f"the Ray cluster returned {len(seen)} of {count} work units")

    def load(self, paths: list[str], report: LoadReport, progress: Progress) -> list[Document]:
        """The documents of ``paths``, read on the workers in units of files and merged in file order:
        the documents, ids and report of a local read. A file a worker does not see is read here."""
        planned = planned_files(paths, report)
        step = max(1, min(self.files_per_unit, -(-len(planned) // (4 * self.workers))))
        groups: list[list[tuple[Path, str, int]]] = []
        size = 0
        for entry in planned:  # at most ``step`` files, or one file past _UNIT_BYTES, a unit
            if not groups or len(groups[-1]) >= step or size >= _UNIT_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(entry)
            size += _size(entry[0])
        units = [batches.pack_files([(str(path), doc_id) for path, doc_id, _ in g]) for g in groups]
        progress.start("Loading", len(planned))
        if len(units) < 2:  # nothing to spread: no actor pool to start
            loads = [load_file(path, doc_id) for path, doc_id, _ in planned]
        else:
            read: dict[int, list[FileLoad | None]] = {}

            def take(seq: int, result: bytes) -> None:
                read[seq] = batches.unpack_loads(result)
                progress.advance(len(groups[seq]))

            self._map("load", _LoadActor, units, {}, take)
            loads = []
            for i, group in enumerate(groups):
                loads.extend(load if load is not None else load_file(path, doc_id)  # not seen there: read here
                             for (path, doc_id, _), load in zip(group, read.pop(i), strict=True))
        docs = list(merged_documents(planned, loads, report))
        progress.finish()
        return docs

    def chunk(self, docs: list[Document], embedder: Embedder, options: BuildOptions, progress: Progress,
              kept: Kept | None) -> stages.Chunked:
        """Cut the passages of the documents ``kept`` lacks on the workers, then assemble all."""
        todo = [d for d in docs if kept is None or d.id not in kept.documents]
        step = self.documents_per_unit
        units = [batches.pack_documents(todo[lo:lo + step]) for lo in range(0, len(todo), step)]
        progress.start("Chunking", len(todo))
        spec = batches.encoder_spec(embedder)
        parts: dict[int, batches.ChunkPart] = {}

        def take(seq: int, result: bytes) -> None:
            parts[seq] = batches.unpack_part(result)
            progress.advance(min(step, len(todo) - seq * step))

        self._map("chunk", _ChunkActor, units, {"spec": spec, "options": options}, take)
        progress.finish()
        self._parts = [parts[i] for i in range(len(parts))]
        return stages.chunk(docs, embedder, options, NoProgress(), batches.chunked_kept(docs, self._parts, kept))

    def embed_passages(self, texts: Sequence[str], embedder: Embedder,
                       progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors of ``texts``, embedded on the workers in the very batches the local path makes.

        The local encoder sorts all texts by length and cuts batches of ``batch_size``
        (:func:`ragkit.encoders.base.encode_sorted`); int8 vectors depend on their batch-mates
        (one activation scale a batch), so units are cut from that same order at a multiple of
        the batch size: each unit's batches are the local build's, and so are the vectors.
        """
        spec = batches.encoder_spec(embedder)
        batch = max(1, int(spec.batch_size))
        step = max(batch, self.texts_per_unit // batch * batch)
        order = length_order(texts)
        bounds = guided_bounds(len(texts), step, batch, self.workers)
        units = [json.dumps([texts[i] for i in order[lo:hi].tolist()], ensure_ascii=False).encode("utf-8")
                 for lo, hi in bounds]
        dimension = int(embedder.dimension)
        out = np.zeros((len(texts), dimension), dtype=np.float32)

        def take(seq: int, result: bytes) -> None:  # each unit's vectors go straight to their rows
            rows = order[slice(*bounds[seq])]
            out[rows] = np.frombuffer(result, dtype=np.float32).reshape(len(rows), dimension)
            if progress is not None:
                progress(len(rows))

        self._map("embed", _EmbedActor, units, {"spec": spec}, take)
        return out

    def lexical(self, docs: list[Document], texts: list[str], ids: np.ndarray, doc_rows: list[int], kept: Kept | None,
                reused: np.ndarray | None) -> tuple[LexicalIndex, LexicalIndex]:
        """BM25 merged from the workers' term counts (of the last :meth:`chunk` call)."""
        return batches.merged_lexical(docs, texts, ids, doc_rows, kept, reused, self._parts)

    def write_vectors(self, path: Path, ids: np.ndarray, vectors: np.ndarray, options: BuildOptions,
                      progress: Progress, texts: Sequence[str], embedder: Embedder) -> dict[str, Any]:
        """The vector index: trained on the driver, filled in shards on the workers (:meth:`fill`),
        tuned after the merge, saved by the driver."""
        return stages.write_vectors(path, ids, vectors, options, progress, texts, embedder, fill=self.fill)

    def fill(self, index: VectorIndex, ids: np.ndarray, vectors: np.ndarray, progress: Progress) -> VectorIndex | None:
        """The trained ``index`` with the vectors added in shards on the workers, merged in id order.

        Only flat and inverted-list types merge (FAISS has no ``merge_from`` for HNSW or refine
        types), and only collections of at least two shards are worth shipping: otherwise
        None, and the driver adds the vectors itself.
        """
        mergeable = index.exact or (index.nlist is not None and "k_factor" not in index.tunable)
        shards = min(4 * self.workers, len(ids) // self.shard_vectors)
        if not mergeable or shards < 2:
            return None
        self.start()
        ray = ray_module()
        empty_bytes = index.to_bytes()
        empty = ray.put(empty_bytes)
        merged = VectorIndex.from_bytes(empty_bytes, index.factory)  # the shards' own types, as FAISS reads them
        task = ray.remote(_add_shard).options(num_cpus=self.cpus_per_worker(), max_retries=_RETRIES)
        bounds = np.linspace(0, len(ids), shards + 1).astype(np.int64)
        refs = [task.remote(empty, index.factory, ids[a:b], vectors[a:b]) for a, b in zip(bounds, bounds[1:])]
        nodes = self.nodes.setdefault("vectors", {})
        try:
            for ref, a, b in zip(refs, bounds, bounds[1:]):  # in shard order: the ids stay in build order
                data, node = ray.get(ref)
                merged.merge_from(VectorIndex.from_bytes(data, index.factory))
                nodes[node] = nodes.get(node, 0) + 1
                progress.advance(int(b - a))
        except RagkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray wraps worker errors in its own types
            raise clear_error(exc) from exc
        return merged


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _add_shard(empty: np.ndarray, factory: str, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, str]:
    """A Ray task: the trained, empty index with one shard of vectors added."""
    import ray

    shard = VectorIndex.from_bytes(empty, factory)
    shard.add(ids, vectors)
    return shard.to_bytes(), ray.get_runtime_context().get_node_id()
