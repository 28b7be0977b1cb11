"""Figures for the 100M-passage plan: IVF training time by sample size, shard add and merge time.

    .venv/bin/python benchmarks/ray_plan_bench.py [--n 200000] [--dim 384]

Random unit vectors clustered around 4,096 centres (noise like real embeddings' spread), so
k-means does real work. Measures, with ragkit's own ``VectorIndex`` (10 k-means rounds):

- training ``IVF{nlist},SQ8`` on ``64 * nlist`` vectors for nlist 256, 1024 (and 4096 with
  ``--big``): k-means costs O(sample * nlist * d) a round, so the 100M plan's 16,384 lists on
  1,048,576 vectors follow from these by that product;
- adding the vectors to the trained index in 4 shards (as Ray workers do), serialising each
  shard (``to_bytes``, what travels back to the driver), and merging them into one index
  (``merge_from``) on the driver, per million vectors.

Writes benchmarks/results/ray_plan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import RESULTS, environment  # noqa: E402

from ragkit.vectors.exact import l2_normalize  # noqa: E402
from ragkit.vectors.faiss_index import VectorIndex  # noqa: E402


def vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4096, d)).astype(np.float32)
    x = centres[rng.integers(0, 4096, n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    return l2_normalize(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--big", action="store_true", help="also train 4096 lists on 262,144 vectors")
    args = parser.parse_args()
    load_before = [round(v, 2) for v in os.getloadavg()]
    x = vectors(args.n, args.dim)
    training = []
    for nlist in (256, 1024) + ((4096,) if args.big else ()):
        sample = vectors(64 * nlist, args.dim, seed=1)
        index = VectorIndex.create(args.dim, f"IVF{nlist},SQ8")
        t = time.perf_counter()
        index.train(sample)
        seconds = time.perf_counter() - t
        training.append({"nlist": nlist, "sample": len(sample), "seconds": round(seconds, 2),
                         "ns_per_sample_list_dim": round(seconds * 1e9 / (len(sample) * nlist * args.dim), 4)})
        print(training[-1], flush=True)
    nlist = 1024
    trained = VectorIndex.create(args.dim, f"IVF{nlist},SQ8")
    trained.train(vectors(64 * nlist, args.dim, seed=1))
    empty = trained.to_bytes()
    ids = np.arange(args.n, dtype=np.int64)
    bounds = np.linspace(0, args.n, 5).astype(np.int64)
    add_s = serialise_s = merge_s = 0.0
    shards = []
    for a, b in zip(bounds, bounds[1:]):
        shard = VectorIndex.from_bytes(empty, f"IVF{nlist},SQ8")
        t = time.perf_counter()
        shard.add(ids[a:b], x[a:b])
        add_s += time.perf_counter() - t
        t = time.perf_counter()
        shards.append(shard.to_bytes())
        serialise_s += time.perf_counter() - t
    merged = VectorIndex.from_bytes(empty, f"IVF{nlist},SQ8")
    t = time.perf_counter()
    for data in shards:
        merged.merge_from(VectorIndex.from_bytes(data, f"IVF{nlist},SQ8"))
    merge_s = time.perf_counter() - t
    whole = VectorIndex.from_bytes(empty, f"IVF{nlist},SQ8")
    whole.add(ids, x)
    same = bool(np.array_equal(merged.to_bytes(), whole.to_bytes()))
    per_million = 1e6 / args.n
    shard = {"vectors": args.n, "shards": 4, "factory": f"IVF{nlist},SQ8",
             "add_s_per_million": round(add_s * per_million, 2),
             "serialise_s_per_million": round(serialise_s * per_million, 2),
             "merge_s_per_million": round(merge_s * per_million, 2),
             "shard_bytes_per_vector": round(sum(len(s) for s in shards) / args.n, 1),
             "merged_equals_one_add": same}
    print(shard, flush=True)
    out = {"benchmark": "ray_plan_bench", "env": environment(("ragkit", "numpy", "faiss-cpu")), "args": vars(args),
           "load_before": load_before, "load_after": [round(v, 2) for v in os.getloadavg()],
           "training": training, "shards": shard}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ray_plan.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
