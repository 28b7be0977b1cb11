"""Index types for the dense vectors, chosen by collection size and tuned to a recall target.

``--index-type`` names a type (``flat``, ``hnsw``, ``hnsw-sq8``, ``ivf-sq8``, ``ivfpq``), ``auto``
(the default: exact search up to 100k vectors; beyond, the cheapest of exact search, 8-bit
inverted lists and an HNSW graph as measured on the model's own vectors, see
:mod:`ragkit.vectors.select`; 8-bit lists when the raw vectors exceed the memory budget, 4-bit
product codes when even those do), or any FAISS factory string. An approximate
type is then tuned: recall@10 against exact search is measured on query-like vectors (passage
snippets embedded as queries; without them, collection vectors leave-one-out), and the
cheapest search parameters (``efSearch``, ``nprobe``, ``k_factor``) that reach the target are
stored in the manifest, with the recall measured on a second, disjoint set of queries that
took no part in the choice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragkit.errors import InvalidArgumentError
from ragkit.vectors.exact import exact_search
from ragkit.vectors.faiss_index import VectorIndex

INDEX_TYPES = ("auto", "flat", "hnsw", "hnsw-sq8", "ivf-sq8", "ivfpq")
DEFAULT_RECALL = 0.95
STATIC_SNIPPET_WORDS = (2, 5)  # tuning snippets for static (word-averaging) models: see query_snippets
# auto: exact search up to here. A query scans n * d * 4 bytes: 154 MB at 100k and d = 384,
# about 6 ms here, and exact needs no tuning and no build time.
EXACT_MAX = 100_000
# auto beyond EXACT_MAX: 8-bit inverted lists, not a graph. Measured at 1M realistic MiniLM-like
# vectors on 2 cores (benchmarks/ann_bench.py): ivf-sq8 built in 27 s, 0.27x the raw bytes,
# 566 queries/s at recall@10 0.956; HNSW32 took 268 s, 1.18x, 337 queries/s at 0.952.
HNSW_M = 32
_GRID = {
    "efSearch": (10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024, 1536, 2048),
    "nprobe": (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096),
    "k_factor": (2, 4, 8, 16),  # one series of the main knob per value
}


def memory_budget() -> int:
    """Bytes the vector index may use: half of physical memory (``RAGKIT_MEMORY_BUDGET`` overrides, in GB)."""
    override = os.environ.get("RAGKIT_MEMORY_BUDGET")
    if override:
        try:
            return int(float(override) * 1e9)
        except ValueError:
            raise InvalidArgumentError(f"RAGKIT_MEMORY_BUDGET must be a number of GB, got {override!r}") from None
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 10**9


def nlist_for(n: int) -> int:
    """Inverted lists for n vectors: about 2 sqrt(n), a power of two, at least 39 training points each."""
    target = 2 * np.sqrt(max(n, 1))
    nlist = 1 << int(np.round(np.log2(max(target, 1))))
    return int(max(1, min(nlist, n // 39 or 1, 65536)))


def factory_for(index_type: str, n: int, dimension: int, budget: int | None = None) -> str:
    """The FAISS factory string of ``index_type`` for ``n`` vectors of ``dimension``."""
    kind = index_type.strip()
    lowered = kind.lower()
    if lowered not in INDEX_TYPES:
        return kind  # a FAISS factory string, validated when the index is made
    if lowered == "auto":
        budget = memory_budget() if budget is None else budget
        raw = n * dimension * 4
        if n <= EXACT_MAX and raw <= budget:
            lowered = "flat"
        elif n * (dimension + 24) <= budget:
            lowered = "ivf-sq8"
        else:  # not even 8-bit codes fit: 4-bit product codes alone, tuned as far as they go
            return f"{_quantizer(n)},PQ{_pq_subspaces(dimension)}x4fs"
    quantizer = _quantizer(n)
    if lowered == "flat":
        return "Flat"
    if lowered == "hnsw":
        return f"HNSW{HNSW_M}"
    if lowered == "hnsw-sq8":
        return f"HNSW{HNSW_M},SQ8"
    if lowered == "ivf-sq8":
        return f"{quantizer},SQ8"
    # ivfpq: 4-bit product-quantised codes of d/8 bytes, scanned with SIMD ("fast scan"), the
    # candidates re-ranked with 8-bit scalar codes (k_factor x k of them). 8-bit PQ codebooks
    # took 45-100 s to train here for no recall gain after re-ranking.
    m = _pq_subspaces(dimension)
    return f"{quantizer},PQ{m}x4fs,Refine(SQ8)"


def _quantizer(n: int) -> str:
    """The coarse quantiser: flat centroids, or an HNSW graph over them when there are many."""
    nlist = nlist_for(n)
    return f"IVF{nlist}_HNSW32" if nlist >= 8192 else f"IVF{nlist}"


def _pq_subspaces(dimension: int) -> int:
    """Sub-spaces of 4 dimensions (d/8 bytes of 4-bit codes), or the nearest divisor that exists."""
    for m in (dimension // 4, dimension // 2, dimension // 8, dimension):
        if m and dimension % m == 0:
            return m
    return dimension


def training_sample(vectors: np.ndarray, factory: str, seed: int = 0) -> np.ndarray:
    """The vectors to train quantisers on: 64 per inverted list, and at least 16,384 (codebooks)."""
    need = 16_384
    for part in factory.replace("_", ",").split(","):
        if part.upper().startswith("IVF") and part[3:].isdigit():
            need = max(need, 64 * int(part[3:]))
    if vectors.shape[0] <= need:
        return vectors
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(vectors.shape[0], need, replace=False))
    return vectors[rows]


@dataclass(frozen=True)
class Tuning:
    """Search parameters chosen for a recall target, and the recall they gave."""

    params: dict[str, float]
    target: float
    recall: float  # recall@10 on the tuning queries
    held_out: float  # recall@10 on queries not used to choose
    queries: int  # per query set
    reached: bool
    seconds: float
    query_kind: str = "none"  # "snippets" (query-like vectors given), "collection" (leave-one-out), "none" (exact)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "params": self.params, "recall@10": round(self.recall, 4),
                "held_out_recall@10": round(self.held_out, 4), "queries": self.queries,
                "query_kind": self.query_kind, "reached": self.reached, "seconds": round(self.seconds, 2)}


def query_snippets(texts: Sequence[str], n: int = 2000, seed: int = 0, words: tuple[int, int] = (4, 12)) -> list[str]:
    """Query-like texts for tuning: a random run of 4-12 words (``words``) from each of n random passages.

    Embedded as queries they sit about as far from the passages as real questions do, or a
    little farther (SciFact, MiniLM: median top-1 cosine 0.52 for snippets, 0.64 for the real
    queries, 0.82 between passages), so parameters tuned on them hold for real queries. A
    static model averages word vectors, and 4-12 words of a passage stay close to it: on 50k
    navec-ru passages the median top-1 cosine was 0.54 for such snippets and 0.39 for real NG
    headlines, and HNSW32 at efSearch 128 gave recall@10 0.946 against 0.936; 2-5 words gave
    0.44 and 0.933, the headlines' curve (:data:`STATIC_SNIPPET_WORDS`).
    """
    import random

    rng = random.Random(seed)
    shortest, longest = words
    rows = rng.sample(range(len(texts)), min(n, len(texts)))
    out = []
    for row in rows:
        tokens = texts[row].split()
        if not tokens:
            continue
        length = rng.randint(shortest, longest)
        start = rng.randint(0, max(0, len(tokens) - length))
        out.append(" ".join(tokens[start : start + length]))
    return out


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean share of the true top-k ids found in the returned top-k."""
    hits = 0
    for f, t in zip(found[:, :k], truth[:, :k]):
        hits += len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist()))
    return hits / max(1, truth[:, :k].shape[0] * min(k, truth.shape[1]))


def tune(index: VectorIndex, vectors: np.ndarray, ids: np.ndarray, target: float = DEFAULT_RECALL, *,
         query_vectors: np.ndarray | None = None, queries: int = 1000, k: int = 10, seed: int = 0,
         cost_limit: float | None = None) -> Tuning:
    """Choose the cheapest search parameters of ``index`` reaching recall@``k`` >= ``target``.

    ``query_vectors`` (query-like vectors, e.g. passage snippets embedded as queries) are split
    into two halves: one to choose, one to check. Without them the queries are collection
    vectors (``vectors`` with their ``ids``), two disjoint random samples, each searched
    leave-one-out (its own id dropped from the truth and from the answer) so that it stands for
    a query that is not in the collection. Collection vectors still flatter the recall: a real
    query sits farther from every passage than passages sit from each other (measured on
    SciFact with MiniLM: real queries needed efSearch 24 where collection vectors said 10), so
    ragkit tunes on embedded snippets where it has text and a model.

    Exact search gives the truth; an answer counts as found when its exact score reaches the
    k-th true score, so ties between equal vectors do not count as misses. An exact index
    needs no tuning (recall 1.0).

    ``cost_limit`` (seconds per query, e.g. what an exact query costs) ends a series of
    settings once a query costs more than that on one thread (the batch time times the
    threads, over the queries): such settings are not worth having, and the widest of them
    cost the most tuning time (IVF2048,SQ8 over 1M navec vectors took 697 s to reach nprobe 1536).
    """
    if not 0.0 < target <= 1.0:
        raise InvalidArgumentError(f"recall must be in (0, 1], got {target!r}", param="recall")
    start = time.perf_counter()
    n = vectors.shape[0]
    if index.exact or not index.tunable or n == 0:
        return Tuning({}, target, 1.0, 1.0, 0, True, time.perf_counter() - start)
    rng = np.random.default_rng(seed)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    sets: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []  # (queries, own id or None, k-th true score)
    if query_vectors is not None and len(query_vectors) >= 2:
        q_all = np.ascontiguousarray(query_vectors, dtype=np.float32)[rng.permutation(len(query_vectors))]
        half = len(q_all) // 2
        for q in (q_all[:half], q_all[half:]):
            true_scores, _ = exact_search(vectors, q, k)
            sets.append((q, None, true_scores[:, min(k, n) - 1]))
    else:
        m = min(queries, max(1, n // 2))
        picked = rng.choice(n, 2 * m, replace=False) if 2 * m <= n else rng.permutation(n)
        for rows in (np.sort(picked[:m]), np.sort(picked[m:])):
            true_scores, true_rows = exact_search(vectors, vectors[rows], k + 1)
            others = np.where(true_rows == rows[:, None], -np.inf, true_scores)
            sets.append((vectors[rows], ids[rows], np.sort(others, axis=1)[:, 1]))  # k-th best among the others
    kk = min(k, n - 1) if sets[0][1] is not None else min(k, n)

    def measure(params: dict[str, float], which: int) -> tuple[float, float]:
        q, own, threshold = sets[which]
        if len(q) == 0:
            return 1.0, 0.0
        t0 = time.perf_counter()
        _, found = index.search(q, k + (own is not None), params=params)
        seconds = time.perf_counter() - t0
        found = _without(found, own, k) if own is not None else found[:, :k]
        valid = found >= 0
        found_rows = order[np.searchsorted(sorted_ids, np.where(valid, found, sorted_ids[0]))]
        scores = np.einsum("qkd,qd->qk", vectors[found_rows], q)
        # A hit is any answer scoring at least the k-th true score: ties count, whichever id wins them.
        hits = valid & (scores >= threshold[:, None] - 1e-5)
        return float(hits.sum() / (max(kk, 1) * len(q))), seconds

    best: tuple[float, dict[str, float], float] | None = None  # (seconds, params, recall)
    fallback: tuple[float, dict[str, float]] = (-1.0, {})
    threads = _threads()
    for series in _series(index):
        for params in series:  # ascending cost: the first that reaches the target is this series' best
            recall, seconds = measure(params, 0)
            if recall > fallback[0]:
                fallback = (recall, params)
            if cost_limit is not None and seconds * threads / max(1, len(sets[0][0])) > cost_limit:
                break  # dearer than the limit: neither this setting nor wider ones count
            if recall >= target:
                if best is None or seconds < best[0]:
                    best = (seconds, params, recall)
                break
    chosen, recall = (best[1], best[2]) if best else (fallback[1], fallback[0])
    held_out = measure(chosen, 1)[0]
    return Tuning(chosen, target, recall, held_out, len(sets[0][0]), best is not None, time.perf_counter() - start,
                  "snippets" if sets[0][1] is None else "collection")


def _threads() -> int:
    from ragkit.vectors.exact import faiss_module

    return max(1, int(faiss_module().omp_get_max_threads()))


def _series(index: VectorIndex) -> list[list[dict[str, float]]]:
    """Parameter settings in ascending cost: one series per k_factor (a refine stage), else one."""
    names = index.tunable
    main = names[0]
    limit = (index.nlist or 1) if main == "nprobe" else max(_GRID[main])
    values = [v for v in _GRID[main] if v <= limit] or [_GRID[main][0]]
    factors: tuple[float | None, ...] = _GRID["k_factor"] if "k_factor" in names else (None,)
    return [[{main: v} if f is None else {main: v, "k_factor": f} for v in values] for f in factors]


def _without(found: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Each row's first ``k`` ids other than the query's own id."""
    out = np.full((found.shape[0], k), -1, dtype=np.int64)
    for j, (row, self_id) in enumerate(zip(found, own)):
        kept = row[row != self_id][:k]
        out[j, : kept.shape[0]] = kept
    return out
