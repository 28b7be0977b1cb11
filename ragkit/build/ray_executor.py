"""The build on a Ray cluster (Ray Data): ``build_index(..., executor=RayExecutor(...))``.

A build streams (:mod:`ragkit.build.stream`): its corpus goes out as units (a few files, or a
line range of a big JSONL file; :mod:`ragkit.build.units`), one Ray block each, to one
``map_batches`` pool of ``workers`` stateful actors (:class:`ragkit.build.ray_actors.UnitActor`).
Each actor holds one encoder rebuilt from the picklable spec and does a unit's whole work:
reads its files at the driver's paths, cuts passages, counts BM25 terms, hashes documents for
reprints and embeds the passages the driver's embedding cache lacks (the actors share the
cache's key heads through the object store). Units shrink toward the corpus's end, so the
workers finish together. Ray Data hands the results back in unit order and the driver writes
each and lets it go: it never holds the corpus, and the index is the local build's (passage
ids are positions in corpus order; BM25 counts merge in that order, bit for bit). A file a
worker's machine does not see (no shared filesystem) is read by the driver instead.

Then the driver trains the FAISS quantisers on one sample of the vectors (a file it maps);
Ray tasks add shards of the vectors to copies of the trained index and the driver merges them
in order (flat and IVF types; FAISS cannot merge HNSW or refine types, which the driver builds
itself), tunes the result and commits the generation as any build.

An update (:func:`ragkit.build.pipeline.update_index`) asks for the stages one by one over
lists: :meth:`RayExecutor.load`, :meth:`~RayExecutor.chunk` (with BM25 counting) and
:meth:`~RayExecutor.embed_passages` each run their own pool.

Resources: each actor asks for at most one CPU, and the pool together for at most the
cluster's CPUs less half a CPU (:meth:`RayExecutor.cpus_per_worker`), so Ray Data's own tasks
always find one: on a 2-CPU instance, two actors of one CPU each starved them and the run
hung. Ray's logs and progress bars stay off unless ``verbose``.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.build import batches, ray_actors, stages
from ragkit.build.options import BuildOptions
from ragkit.build.reuse import Kept
from ragkit.documents import Document
from ragkit.encoders.base import length_order
from ragkit.encoders.embedder import Embedder
from ragkit.build.ray_runtime import RayBuildError, clear_error, quiet_ray_data, ray_module, start_ray
from ragkit.build.units import load_piece, pack_unit, plan_units
from ragkit.errors import InvalidArgumentError, RagkitError
from ragkit.ingest.loaders import FileLoad, MergedStream, planned_files
from ragkit.ingest.report import LoadReport
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.progress import NoProgress, Progress
from ragkit.vectors.faiss_index import VectorIndex

_RETRIES = 3  # restarts of a dead actor, and retries of the unit it was running
_TAIL = 2  # units shrink once fewer than this many per worker of the largest size are left
_UNIT_BYTES = 16 << 20  # an update's unit of files to read stops at the first file past this many bytes


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


class RayExecutor:
    """Runs a build's reading, chunking, BM25 counting and embedding on Ray (see the module doc).

    ``address``: None starts a local Ray instance (or uses the one this process already
    started), ``"auto"`` or ``"ray://host:port"`` joins a running cluster. ``workers``: actors
    in each stage's pool. ``cpus_per_worker`` / ``gpus_per_worker``: what each actor asks for
    (default: see :meth:`cpus_per_worker`; no GPU). A build's unit reads up to ``unit_bytes``
    of files (shrinking to ``smallest_unit`` toward the corpus's end) and at most
    ``files_per_unit`` files, or holds ``documents_per_unit`` Document objects; an update's
    units hold ``documents_per_unit`` documents to cut or ``texts_per_unit`` texts to embed.
    Vector shards hold at least ``shard_vectors``; at most ``ship_bytes`` of them are in the
    object store at once (see :meth:`fill`).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, *, cpus_per_worker: float | None = None,
                 gpus_per_worker: float = 0.0, unit_bytes: int = 4 << 20, smallest_unit: int = 16 << 10,
                 files_per_unit: int = 64, documents_per_unit: int = 64, texts_per_unit: int = 256,
                 shard_vectors: int = 100_000, ship_bytes: int = 128 << 20, verbose: bool = False) -> None:
        if workers < 1:
            raise InvalidArgumentError(f"--workers must be at least 1, got {workers}")
        if cpus_per_worker is not None and cpus_per_worker <= 0:
            raise InvalidArgumentError("CPUs per worker must be > 0")
        self.address = address
        self.workers = int(workers)
        self._cpus = cpus_per_worker
        self.gpus_per_worker = float(gpus_per_worker)
        self.unit_bytes = max(1, int(unit_bytes))
        self.smallest_unit = max(1, min(int(smallest_unit), self.unit_bytes))
        self.files_per_unit = max(1, int(files_per_unit))
        self.documents_per_unit = int(documents_per_unit)
        self.texts_per_unit = int(texts_per_unit)
        self.shard_vectors = max(1, int(shard_vectors))
        self.ship_bytes = max(1, int(ship_bytes))
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
             take: Callable[[int, bytes], None], *, ordered: bool = False) -> None:
        """Run ``actor`` over ``units`` (a Ray Data actor pool); ``take(seq, result)`` gets each
        unit's result as it comes back (in unit order if ``ordered``), and the driver keeps none
        of them itself.

        ``units`` is emptied once Ray holds the work (its blocks are in the object store), so
        the driver does not keep a second copy of what it sent out. ``ordered`` has Ray Data
        keep the results in order (results that finish early wait in the object store, not
        here); a result that still arrives early waits here for the ones before it.
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
        early: dict[int, bytes] = {}
        nodes = self.nodes.setdefault(stage, {})
        context = ray.data.DataContext.get_current()
        was = context.execution_options.preserve_order
        context.execution_options.preserve_order = ordered or was
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for seq, result, node in zip(batch["seq"].tolist(), batch["result"], batch["node"]):
                    if int(seq) in seen:  # each unit is taken once, whatever Ray hands back
                        continue
                    seen.add(int(seq))
                    nodes[str(node)] = nodes.get(str(node), 0) + 1
                    early[int(seq)] = bytes(result)
                    while early and (not ordered or min(early) == len(seen) - len(early)):
                        done = min(early) if ordered else next(iter(early))
                        take(done, early.pop(done))
                self.worker_peak_rss_kib[stage] = max(self.worker_peak_rss_kib.get(stage, 0),
                                                      int(batch["rss_kib"].max()))
                self.pool_start_s[stage] = max(self.pool_start_s.get(stage, 0.0),
                                               float(batch["ready"].max()) - handed)
        except RagkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray wraps worker errors in its own types
            raise clear_error(exc) from exc
        finally:
            context.execution_options.preserve_order = was
        if len(seen) != count:
            raise RayBuildError(f"the Ray cluster returned {len(seen)} of {count} work units")

    def unit_sizes(self) -> dict[str, int]:
        """Units of up to ``unit_bytes`` that shrink toward the corpus's end (guided by twice the workers)."""
        return {"largest": self.unit_bytes, "files": self.files_per_unit, "smallest": self.smallest_unit,
                "parts": _TAIL * self.workers, "documents": self.documents_per_unit}

    def stream(self, units: list[Any], embedder: Embedder, work: batches.UnitWork,
               take: Callable[[int, batches.UnitResult], None]) -> None:
        """A streamed build's units on one actor pool: each actor reads, cuts, counts and embeds
        whole units, and the results come back in unit order (see :meth:`_map`)."""
        if not units:
            return
        documents = isinstance(units[0][0], Document)
        packed = [batches.pack_documents(u) if documents else pack_unit(u) for u in units]
        self.start()
        shared = [ray_module().put(work)]  # a list: Ray hands the reference over, not the value
        self._map("build", ray_actors.UnitActor, packed, {"spec": batches.encoder_spec(embedder), "work": shared,
                                                "documents": documents},
                  lambda seq, data: take(seq, batches.unpack_result(data)), ordered=True)

    def load(self, paths: list[str], report: LoadReport, progress: Progress) -> list[Document]:
        """The documents of ``paths``, read on the workers in units of file pieces and merged in plan
        order: the documents, ids and report of a local read. A file a worker does not see is read here."""
        units = plan_units(planned_files(paths, report), _UNIT_BYTES, files=self.files_per_unit,
                           parts=_TAIL * self.workers)
        progress.start("Loading", sum(len(u) for u in units))
        merge = MergedStream(report)
        docs: list[Document] = []

        def take(seq: int, loads: list[FileLoad | None]) -> None:
            for piece, load in zip(units[seq], loads, strict=True):
                docs.extend(merge.take(piece.skips_before, load if load is not None else load_piece(piece)))
            progress.advance(len(units[seq]))

        if len(units) < 2:  # nothing to spread: no actor pool to start
            for i, unit in enumerate(units):
                take(i, [load_piece(p) for p in unit])
        else:
            self._map("load", ray_actors.LoadActor, [pack_unit(u) for u in units], {},
                      lambda seq, data: take(seq, batches.unpack_loads(data)), ordered=True)
        merge.finish()
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

        self._map("chunk", ray_actors.ChunkActor, units, {"spec": spec, "options": options}, take)
        progress.finish()
        self._parts = [parts[i] for i in range(len(parts))]
        return stages.chunk(docs, embedder, options, NoProgress(), batches.chunked_kept(docs, self._parts, kept))

    def embed_passages(self, texts: Sequence[str], embedder: Embedder,
                       progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors of ``texts`` (an update's new passages, a second language's), embedded on the workers.

        Units are cut from the local encoder's length order (:func:`ragkit.encoders.base.encode_sorted`)
        at a multiple of its batch size, so a worker's batches are the local path's: texts of
        like length, little padding. (The int8 encoder embeds one text a batch anyway: its
        vectors never depend on their batch-mates.)
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

        self._map("embed", ray_actors.EmbedActor, units, {"spec": spec}, take)
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
        None, and the driver adds the vectors itself. At most ``2 x workers`` shards (and 8) are
        out at once, together at most ``ship_bytes`` of vectors: the driver writes each shard
        into the object store, and that shared memory counts as the driver's (a memory cgroup
        charges it to the process that wrote it, and cannot reclaim it without swap).
        ``vectors`` may be a file the driver maps.
        """
        mergeable = index.exact or (index.nlist is not None and "k_factor" not in index.tunable)
        out = min(2 * self.workers, 8)
        largest = max(1_000, self.ship_bytes // (out * 4 * index.dimension))
        shards = max(min(4 * self.workers, len(ids) // self.shard_vectors), -(-len(ids) // largest))
        if not mergeable or len(ids) // self.shard_vectors < 2:
            return None
        self.start()
        ray = ray_module()
        empty_bytes = index.to_bytes()
        empty = ray.put(empty_bytes)
        merged = VectorIndex.from_bytes(empty_bytes, index.factory)  # the shards' own types, as FAISS reads them
        task = ray.remote(ray_actors.add_shard).options(num_cpus=self.cpus_per_worker(), max_retries=_RETRIES)
        bounds = np.linspace(0, len(ids), shards + 1).astype(np.int64)
        spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        refs: list[Any] = []
        nodes = self.nodes.setdefault("vectors", {})
        try:
            for i, (a, b) in enumerate(spans):  # in shard order: the ids stay in build order
                while len(refs) < min(len(spans), i + out):
                    lo, hi = spans[len(refs)]
                    refs.append(task.remote(empty, index.factory, ids[lo:hi], np.ascontiguousarray(vectors[lo:hi])))
                data, node = ray.get(refs[i])
                refs[i] = None
                merged.merge_from(VectorIndex.from_bytes(data, index.factory))
                nodes[node] = nodes.get(node, 0) + 1
                progress.advance(int(b - a))
        except RagkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray wraps worker errors in its own types
            raise clear_error(exc) from exc
        return merged
