"""Ray itself for a build: joining or starting a cluster without its noise, worker set-up (an
actor's encoder and threads), and one clear error for whatever fails inside it
(:mod:`ragkit.build.ray_executor` runs the stages)."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ragkit.errors import InvalidArgumentError, RagkitError

if TYPE_CHECKING:
    from ragkit.encoders.embedder import Embedder, EncoderSpec

POOL_START_S = 600  # an actor pool that cannot start in this time fails the build


class RayBuildError(RagkitError):
    """The Ray cluster could not finish a build stage (the current index is untouched)."""


def ray_module() -> Any:  # noqa: ANN401 - the module
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InvalidArgumentError("the ray engine needs Ray: pip install 'ragkit[ray]'") from None
    return ray


def quiet_worker() -> None:
    """Keep a worker's libraries from printing (transformers, tokenizers)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def worker_threads(cpus: float) -> None:
    """Run the encoder on as many threads as the actor has CPUs (at least one).

    torch reads ``OMP_NUM_THREADS`` when it is first imported; one already imported is set
    directly. torch is never imported for this: an encoder without it (navec-ru) would pay
    some 1.7 s an actor for nothing.
    """
    n = max(1, int(cpus))
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def worker_encoder(spec: EncoderSpec, cpus: float, load: Callable[[Embedder], object]) -> Embedder:
    """An actor's encoder with what its stage uses (``load``) loaded now, in the constructor, so an
    actor's "ready" time is when it can work and a model load counts as the pool's start."""
    from ragkit.build.batches import worker_embedder

    quiet_worker()
    worker_threads(cpus)
    embedder = worker_embedder(spec)
    load(embedder)
    worker_threads(cpus)  # loading may have imported torch
    return embedder


def start_ray(address: str | None = None, *, num_cpus: int | None = None, verbose: bool = False) -> None:
    """``ray.init`` without Ray's noise unless ``verbose``: no driver logs, no dashboard, errors only."""
    ray = ray_module()
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the core's C++ log lines on stderr
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {"num_cpus": num_cpus} if address is None and num_cpus is not None else {}
    try:
        with _stderr_muted(not verbose):  # the core's one line saying it took the log level
            ray.init(address=address, log_to_driver=verbose, include_dashboard=False,
                     logging_level=logging.INFO if verbose else logging.ERROR, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayBuildError(f"cannot reach the Ray cluster at {address or 'a new local instance'}: {first}") from exc


@contextmanager
def _stderr_muted(mute: bool) -> Iterator[None]:
    """File descriptor 2 to /dev/null meanwhile (C++ code writes there, not to ``sys.stderr``)."""
    if not mute:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_ray_data(verbose: bool = False) -> None:
    """Ray Data's progress bars and execution banners only when ``verbose``; each actor pool
    starts whole before work goes out (else the first actor up takes every unit of a small
    stage), and a pool the cluster cannot place fails after 10 minutes instead of waiting."""
    with warnings.catch_warnings():  # its first context sets fields Ray 2.60 itself deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ray_module().data.DataContext.get_current()
    ctx.wait_for_min_actors_s = POOL_START_S
    ctx.enable_progress_bars = verbose
    ctx.enable_operator_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    ctx.verbose_stats_logs = False
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.ERROR)


def clear_error(exc: BaseException) -> RagkitError:
    """One clear error for a failure inside Ray: a ragkit error a worker raised, or Ray's own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RagkitError):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else (current.__cause__ or current.__context__)
    import re

    import ragkit.errors as errors

    # A worker's exception often reaches the driver only as text (Ray's remote traceback).
    for name, message in re.findall(r"ragkit\.errors\.(\w+): (.+)", str(exc)):
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, RagkitError):
            return kind(message.split("Traceback (most recent call last)")[0].strip())
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    plain = re.sub("\x1b\\[[0-9;]*m", "", first)  # Ray colours its task names
    return RayBuildError(f"the Ray build failed: {type(exc).__name__}: {plain[:300]}")
