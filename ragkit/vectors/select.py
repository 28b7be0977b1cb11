"""What ``--index-type auto`` builds beyond exact search: candidates measured on the model's own vectors.

Whether an approximate index beats exact search depends on the vectors. MiniLM passage
vectors are clustered: 8-bit inverted lists reach recall@10 0.95 at 1M while scanning 2 % of
the lists. navec-ru's whitened word averages are close to isotropic (100k of them: 90 % of the
variance takes 250 of 300 principal axes; a query's 10th neighbour scores 0.32 where random
passages score 0.01 +- 0.06), and inverted lists then need most of the lists: IVF2048,SQ8
needed nprobe 1536 at 1M, 7x slower than exact search.

So ``auto`` measures. On two nested random samples of the collection (12.5k and 50k vectors)
each candidate type is built, tuned to the recall target on the query-like vectors, and timed
one query at a time, as searches run; its per-query cost is extrapolated to the collection
size with the growth measured between the two samples (a candidate already 4x dearer than
another on the smaller sample skips the larger one). Exact search is timed on the whole
collection before and after the trials, and the lower median stands; a collection no larger
than the samples is measured whole, against exact search timed in alternation. The cheapest
candidate that reached the target at both sizes is built, unless its projected cost is not
below exact search's by :data:`WIN`; after the full build and tuning the two are timed
again, query by query in alternation, and the index falls back to exact search unless it is
faster there too. The trials are bounded (sample sizes, query counts, and every tuning series
stops once a query costs more than an exact one); their time and share are in the manifest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ragkit.vectors.exact import exact_search
from ragkit.vectors.faiss_index import VectorIndex

CANDIDATES = ("ivf-sq8", "hnsw")
TRIAL_SIZES = (12_500, 50_000)
TRIAL_QUERIES = 400  # query-like vectors per trial (half choose, half check)
TIMED_QUERIES = 30  # queries timed one at a time per comparison
# A type this many times dearer than another on the smaller sample is not tried on the larger one
# (300k navec-ru: ivf-sq8 3.7 ms against HNSW's 0.44 at 12.5k; its 50k trial took most of the 43 s).
DOMINATED = 4.0


@dataclass(frozen=True)
class Trial:
    """One candidate type on one sample: its tuned parameters, recall and per-query cost."""

    kind: str
    factory: str
    vectors: int
    params: dict[str, float]
    recall: float
    reached: bool
    ms: float  # median milliseconds per query, one at a time
    exact_ms: float  # exact search on the same sample, timed in alternation


def build(kind_or_factory: str, vectors: np.ndarray, ids: np.ndarray, factory: str | None = None) -> VectorIndex:
    """A trained index of ``factory`` (default: the type's factory for this size) holding ``vectors``."""
    from ragkit.vectors.ann import factory_for, training_sample

    factory = factory or factory_for(kind_or_factory, len(vectors), vectors.shape[1])
    index = VectorIndex.create(vectors.shape[1], factory)
    if not index.exact:
        index.train(training_sample(vectors, factory))
    step = 65_536
    for lo in range(0, len(ids), step):
        index.add(ids[lo:lo + step], vectors[lo:lo + step])
    return index


def timed_pair(first: Callable[[np.ndarray], Any], second: Callable[[np.ndarray], Any],
               queries: np.ndarray) -> tuple[float, float]:
    """Median milliseconds per query of two searches, run one query at a time in alternation
    (so that a busy machine slows both alike)."""
    a: list[float] = []
    b: list[float] = []
    for j, q in enumerate(queries):
        order = ((first, a), (second, b)) if j % 2 == 0 else ((second, b), (first, a))
        for fn, out in order:
            t0 = time.perf_counter()
            fn(q[None, :])
            out.append(time.perf_counter() - t0)
    return 1000 * float(np.median(a)), 1000 * float(np.median(b))


def exact_ms(vectors: np.ndarray, queries: np.ndarray) -> float:
    """Median milliseconds of one exact query over ``vectors``."""
    return timed_pair(lambda q: exact_search(vectors, q, 10), lambda q: None, queries)[0]


def trial(kind: str, vectors: np.ndarray, queries: np.ndarray, target: float, limit_ms: float) -> Trial:
    """Build ``kind`` on ``vectors`` (a sample), tune it and time it against exact search there.

    ``limit_ms``: what an exact query over the whole collection costs; settings dearer than
    that on the sample are not tried (they only grow with the collection)."""
    from ragkit.vectors.ann import tune

    ids = np.arange(len(vectors), dtype=np.int64)
    timed = queries[:TIMED_QUERIES]
    limit = limit_ms / 1000
    index = build(kind, vectors, ids)
    tuning = tune(index, vectors, ids, target, query_vectors=queries, cost_limit=limit)
    index.params = tuning.params
    ms, exact = timed_pair(lambda q: index.search(q, 10), lambda q: exact_search(vectors, q, 10), timed)
    return Trial(kind, index.factory, len(vectors), tuning.params, round(tuning.recall, 4), tuning.reached,
                 round(ms, 3), round(exact, 3))


def projected_ms(small: Trial, large: Trial, n: int) -> float | None:
    """A candidate's per-query cost at ``n`` vectors: its cost at the larger sample, grown as
    measured between the samples (a power of n, between 0 and 1: never faster than constant,
    never slower than exact search); None when it missed the target at either size."""
    if not (small.reached and large.reached) or small.ms <= 0:
        return None
    growth = np.log(large.ms / small.ms) / np.log(large.vectors / small.vectors)
    growth = float(np.clip(growth, 0.0, 1.0))
    return large.ms * (n / large.vectors) ** growth


# An approximate type must beat exact search by this factor: one only a little faster trades
# recall for a gain inside timing noise (3,000 vectors: HNSW 0.070 against exact 0.091 ms, and
# the reverse in another run).
WIN = 1.5


def choose(vectors: np.ndarray, queries: np.ndarray, target: float,
           candidates: tuple[str, ...] = CANDIDATES, seed: int = 0) -> dict[str, Any]:
    """The type ``auto`` builds for these vectors: ``{"kind", "exact_ms", "trials", "projected_ms", "seconds"}``.

    ``kind`` is ``"flat"`` when no candidate reached the target at both sample sizes or none
    is projected to beat exact search at the collection's size by :data:`WIN`.
    """
    start = time.perf_counter()
    n = len(vectors)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)[: max(TRIAL_SIZES)]
    q = np.ascontiguousarray(queries[: TRIAL_QUERIES], dtype=np.float32)
    full_exact = exact_ms(vectors, q[:TIMED_QUERIES])
    trials: list[Trial] = []
    projected: dict[str, float | None] = {}
    against: dict[str, float] = {}  # the exact cost each candidate must beat by WIN
    sizes = [size for size in TRIAL_SIZES if size < n]
    if len(sizes) < 2:  # a collection no larger than the samples: measured whole
        for kind in candidates:
            whole = trial(kind, vectors, q, target, full_exact)
            trials.append(whole)
            projected[kind] = whole.ms if whole.reached else None
            against[kind] = whole.exact_ms  # timed in alternation with it: a busy moment slows both
    else:
        def sample(size: int) -> np.ndarray:
            return np.ascontiguousarray(vectors[np.sort(order[:size])])

        small = {kind: trial(kind, sample(sizes[-2]), q, target, full_exact) for kind in candidates}
        trials.extend(small.values())
        best = min((t.ms for t in small.values() if t.reached), default=None)
        for kind, first in small.items():
            if best is None or not first.reached or first.ms > DOMINATED * best:
                projected[kind] = None  # missed the target, or far behind another type already
                continue
            second = trial(kind, sample(sizes[-1]), q, target, full_exact)
            trials.append(second)
            projected[kind] = projected_ms(first, second, n)
        # Exact search over the whole collection cannot alternate with a sample's trial; timed
        # again after them, the lower median stands (a busy moment only ever slows a timing).
        full_exact = min(full_exact, exact_ms(vectors, q[:TIMED_QUERIES]))
        against = dict.fromkeys(projected, full_exact)
    usable = {k: v for k, v in projected.items() if v is not None and WIN * v < against[k]}
    kind = min(usable, key=lambda k: usable[k]) if usable else "flat"
    return {"kind": kind, "exact_ms": round(full_exact, 3),
            "projected_ms": {k: (None if v is None else round(v, 3)) for k, v in projected.items()},
            "trials": [asdict(t) for t in trials], "seconds": round(time.perf_counter() - start, 2)}


def applies(index_type: str, n: int, dimension: int) -> bool:
    """Whether ``auto`` measures candidates here: beyond exact search's size, with the raw vectors
    fitting the memory budget (else exact search is no option, and the size rule stands)."""
    from ragkit.vectors.ann import EXACT_MAX, memory_budget

    return index_type.strip().lower() == "auto" and n > EXACT_MAX and n * dimension * 4 <= memory_budget()


def trial_queries(vectors: np.ndarray, query_vectors: np.ndarray | None, seed: int = 0) -> np.ndarray:
    """The query-like vectors for the trials; without them, collection vectors outside every trial
    sample (:func:`choose` samples the same permutation's head)."""
    if query_vectors is not None and len(query_vectors) >= 2:
        return query_vectors
    order = np.random.default_rng(seed).permutation(len(vectors))
    tail = order[max(TRIAL_SIZES):][-TRIAL_QUERIES:]
    return vectors[np.sort(tail)]


def guard(index: VectorIndex, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray,
          reached: bool) -> tuple[VectorIndex, dict[str, Any]]:
    """The built, tuned ``index`` if it reached the target and beats exact search query by query
    on the whole collection; else an exact index of the same vectors. Returns (index, what was measured)."""
    ms, exact = timed_pair(lambda q: index.search(q, 10), lambda q: exact_search(vectors, q, 10),
                           np.ascontiguousarray(queries[:TIMED_QUERIES], dtype=np.float32))
    kept = reached and ms < exact
    facts = {"factory": index.factory, "ms": round(ms, 3), "exact_ms": round(exact, 3), "kept": kept}
    if kept:
        return index, facts
    return build("flat", vectors, ids), facts
