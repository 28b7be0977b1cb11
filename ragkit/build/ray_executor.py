"""The build on a Ray cluster (Ray Data): ``build_index(..., executor=RayExecutor(...))``.

Chunking (with BM25 term counting) and embedding run in ``map_batches`` over a stateful pool
of ``workers`` actors, each holding one encoder rebuilt from the picklable encoder spec
(:func:`ragkit.build.batches.worker_embedder`). Work goes out in numbered units (a batch of
documents, or of passage texts) and comes back as partial results that the driver puts in
unit order and merges (:mod:`ragkit.build.batches`): passage ids follow the corpus order,
never the order workers finish in, and the merged BM25 is bit-identical to a local build.

The driver keeps the embedding cache (only texts it lacks go to the workers) and builds the
FAISS index from the merged vectors, then tunes it and commits the generation as any build.

Resources: each actor asks for at most one CPU, and the pool together for at most the
cluster's CPUs less half a CPU (:meth:`RayExecutor.cpus_per_worker`), so Ray Data's own tasks
always find one: on a 2-CPU instance, two actors of one CPU each starved them and the run hung. Ray's logs and progress
bars stay off unless ``verbose``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.build import batches, stages
from ragkit.build.options import BuildOptions
from ragkit.build.reuse import Kept
from ragkit.documents import Document
from ragkit.encoders.embedder import Embedder
from ragkit.errors import InvalidArgumentError, RagkitError
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.progress import NoProgress, Progress

_RETRIES = 3  # restarts of a dead actor, and retries of the unit it was running


class RayBuildError(RagkitError):
    """The Ray cluster could not finish a build stage (the current index is untouched)."""


def _ray() -> Any:  # noqa: ANN401 - the module
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InvalidArgumentError("the ray engine needs Ray: pip install 'ragkit[ray]'") from None
    return ray


def _quiet_worker() -> None:
    """Keep a worker's libraries from printing (transformers, tokenizers)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _threads(cpus: float) -> None:
    """Run the encoder on as many threads as the actor has CPUs (at least one)."""
    n = max(1, int(cpus))
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


class _ChunkActor:
    """A Ray Data actor: cuts passages and counts BM25 terms of batches of documents."""

    def __init__(self, spec: dict[str, Any], options: BuildOptions, cpus: float) -> None:
        _quiet_worker()
        _threads(cpus)
        self.embedder = batches.worker_embedder(spec)
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [batches.pack_part(batches.chunk_batch(batches.unpack_documents(u), self.embedder, self.options))
               for u in batch["unit"]]
        return {"seq": batch["seq"], "result": np.array(out, dtype=object)}


class _EmbedActor:
    """A Ray Data actor: embeds batches of passage texts."""

    def __init__(self, spec: dict[str, Any], cpus: float) -> None:
        _quiet_worker()
        _threads(cpus)
        self.embedder = batches.worker_embedder(spec)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for unit in batch["unit"]:
            texts = json.loads(bytes(unit).decode("utf-8"))
            out.append(np.ascontiguousarray(batches.embed_batch(texts, self.embedder), dtype=np.float32).tobytes())
        return {"seq": batch["seq"], "result": np.array(out, dtype=object)}


class RayExecutor:
    """Runs a build's chunking, BM25 counting and embedding on Ray (see the module doc).

    ``address``: None starts a local Ray instance (or uses the one this process already
    started), ``"auto"`` or ``"ray://host:port"`` joins a running cluster. ``workers``: actors
    in each stage's pool. ``cpus_per_worker`` / ``gpus_per_worker``: what each actor asks for
    (default: see :meth:`cpus_per_worker`; no GPU).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, *, cpus_per_worker: float | None = None,
                 gpus_per_worker: float = 0.0, documents_per_unit: int = 64, texts_per_unit: int = 256,
                 verbose: bool = False) -> None:
        if workers < 1:
            raise InvalidArgumentError(f"--workers must be at least 1, got {workers}")
        if cpus_per_worker is not None and cpus_per_worker <= 0:
            raise InvalidArgumentError("CPUs per worker must be > 0")
        self.address = address
        self.workers = int(workers)
        self._cpus = cpus_per_worker
        self.gpus_per_worker = float(gpus_per_worker)
        self.documents_per_unit = int(documents_per_unit)
        self.texts_per_unit = int(texts_per_unit)
        self.verbose = verbose
        self._started = False
        self._ready = False
        self._parts: list[batches.ChunkPart] = []  # the last chunk call's parts, for lexical()
        self.timings: dict[str, float] = {}

    # -- cluster ------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to (or start) Ray and silence it; done on first use."""
        if self._ready:
            return
        ray = _ray()
        if not self.verbose:
            os.environ.setdefault("RAY_DEDUP_LOGS", "1")
            os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
            for name in ("ray", "ray.data", "ray.train", "ray.tune"):
                logging.getLogger(name).setLevel(logging.ERROR)
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=self.verbose, include_dashboard=False,
                         logging_level=logging.INFO if self.verbose else logging.ERROR,
                         configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayBuildError(f"cannot reach the Ray cluster at {self.address or 'a new local instance'}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
            self._started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = self.verbose
        ctx.enable_operator_progress_bars = self.verbose
        ctx.print_on_execution_start = self.verbose
        ctx.verbose_stats_logs = False
        self._ready = True

    def close(self) -> None:
        """Shut down the Ray instance this executor started (one it joined stays)."""
        if self._started:
            _ray().shutdown()
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
        total = float(_ray().cluster_resources().get("CPU", 1.0))
        return round(max(0.05, min(1.0, (total - 0.5) / self.workers)), 2)

    # -- the stages -----------------------------------------------------------------------
    def _map(self, actor: type, units: list[bytes], constructor: dict[str, Any],
             advance: Callable[[int, bytes], None]) -> list[bytes]:
        """Results of ``actor`` over ``units`` (a Ray Data actor pool), in unit order."""
        if not units:
            return []
        self.start()
        ray = _ray()
        cpus = self.cpus_per_worker()
        remote: dict[str, Any] = {"max_restarts": _RETRIES, "max_task_retries": _RETRIES}
        if self.gpus_per_worker:
            remote["num_gpus"] = self.gpus_per_worker
        ds = ray.data.from_items([{"seq": i, "unit": u} for i, u in enumerate(units)],
                                 override_num_blocks=min(len(units), 4 * self.workers))
        ds = ds.map_batches(actor, fn_constructor_kwargs={**constructor, "cpus": cpus}, batch_size=1,
                            batch_format="numpy", concurrency=self.workers, num_cpus=cpus, **remote)
        results: dict[int, bytes] = {}
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for seq, result in zip(batch["seq"].tolist(), batch["result"]):
                    results[int(seq)] = bytes(result)
                    advance(int(seq), results[int(seq)])
        except RagkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray wraps worker errors in its own types
            raise _clear_error(exc) from exc
        if len(results) != len(units):
            raise RayBuildError(f"the Ray cluster returned {len(results)} of {len(units)} work units")
        return [results[i] for i in range(len(units))]

    def chunk(self, docs: list[Document], embedder: Embedder, options: BuildOptions, progress: Progress,
              kept: Kept | None) -> stages.Chunked:
        """Cut the passages of the documents ``kept`` lacks on the workers, then assemble all."""
        todo = [d for d in docs if kept is None or d.id not in kept.documents]
        step = self.documents_per_unit
        units = [batches.pack_documents(todo[lo:lo + step]) for lo in range(0, len(todo), step)]
        progress.start("Chunking", len(todo))
        spec = batches.encoder_spec(embedder)
        packed = self._map(_ChunkActor, units, {"spec": spec, "options": options},
                           lambda seq, _: progress.advance(min(step, len(todo) - seq * step)))
        progress.finish()
        self._parts = [batches.unpack_part(p) for p in packed]
        return stages.chunk(docs, embedder, options, NoProgress(), batches.chunked_kept(docs, self._parts, kept))

    def embed_passages(self, texts: Sequence[str], embedder: Embedder,
                       progress: Callable[[int], None] | None = None) -> np.ndarray:
        step = self.texts_per_unit
        units = [json.dumps(list(texts[lo:lo + step]), ensure_ascii=False).encode("utf-8")
                 for lo in range(0, len(texts), step)]
        spec = batches.encoder_spec(embedder)
        dimension = int(embedder.dimension)

        def advance(seq: int, _: bytes) -> None:
            if progress is not None:
                progress(min(step, len(texts) - seq * step))

        packed = self._map(_EmbedActor, units, {"spec": spec}, advance)
        if not packed:
            return np.zeros((0, dimension), dtype=np.float32)
        return np.concatenate([np.frombuffer(p, dtype=np.float32).reshape(-1, dimension) for p in packed])

    def lexical(self, docs: list[Document], texts: list[str], doc_rows: list[int], kept: Kept | None,
                reused: np.ndarray | None) -> tuple[LexicalIndex, LexicalIndex]:
        """BM25 merged from the workers' term counts (of the last :meth:`chunk` call)."""
        return batches.merged_lexical(docs, texts, doc_rows, kept, reused, self._parts)

    def write_vectors(self, path: Path, ids: np.ndarray, vectors: np.ndarray, options: BuildOptions,
                      progress: Progress, texts: Sequence[str], embedder: Embedder) -> dict[str, Any]:
        """The vector index, built on the driver from the merged vectors (see the docs)."""
        return stages.write_vectors(path, ids, vectors, options, progress, texts, embedder)


def _clear_error(exc: BaseException) -> RagkitError:
    """One clear error for a failure inside Ray: a ragkit error a worker raised, or Ray's own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RagkitError):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else (current.__cause__ or current.__context__)
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return RayBuildError(f"the Ray build failed: {type(exc).__name__}: {first[:300]}")
