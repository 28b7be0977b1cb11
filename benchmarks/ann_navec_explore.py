"""Exploration behind issue #17 (raw FAISS, no ragkit index): index types on navec-ru vectors, real headlines.

    .venv/bin/python benchmarks/ann_navec_explore.py N FACTORY[@efConstruction]...

Reads benchmarks/.cache/navec-1000000.npy (its first N rows) and navec-ng-queries.npy (the 1,200
NG headlines embedded as queries), both written by ``ann_navec_bench.py``'s encoding step
(``passages``; save the headline vectors with ``headline_queries``). Truth: exact top-10.
Per setting: recall@10 on all headlines and the median of 60 single queries on one FAISS
thread; exact: ragkit's ``exact_search``, 40 single queries. Output: printed (the log of the
runs behind the issue is benchmarks/results/ann_navec_explore.log).
"""
import sys, time, json
from pathlib import Path
import numpy as np, faiss
from ragkit.vectors.exact import exact_search
cache = str(Path(__file__).resolve().parent / ".cache") + "/"
n = int(sys.argv[1]); which = sys.argv[2:]
x = np.load(cache + "navec-1000000.npy", mmap_mode="r")[:n]
x = np.ascontiguousarray(x)
q = np.load(cache + "navec-ng-queries.npy").astype(np.float32)
nq = len(q)
t = time.perf_counter(); ts, tr = exact_search(x, q, 10); print("exact batch", nq, time.perf_counter() - t, flush=True)
lat = []
for i in range(40):
    t0 = time.perf_counter(); exact_search(x, q[i:i+1], 10); lat.append(time.perf_counter() - t0)
print("exact b1 p50 ms", 1000*np.median(lat), flush=True)
def recall(I):
    return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, tr)])
def b1(index, k=10):
    faiss.omp_set_num_threads(1)
    lat = []
    for i in range(60):
        t0 = time.perf_counter(); index.search(q[i:i+1], k); lat.append(time.perf_counter() - t0)
    faiss.omp_set_num_threads(2)
    return 1000 * float(np.median(lat))
res = {}
for fac in which:
    efc = None
    if "@" in fac:
        fac, efc = fac.split("@"); efc = int(efc)
    index = faiss.index_factory(x.shape[1], fac, faiss.METRIC_INNER_PRODUCT)
    if efc: index.hnsw.efConstruction = efc
    t = time.perf_counter()
    if not index.is_trained:
        tr_n = min(n, max(65536, 64 * 2048))
        index.train(x[np.random.default_rng(0).choice(n, tr_n, replace=False)])
    index.add(x); bt = time.perf_counter() - t
    print(fac, efc, "build s", round(bt, 1), flush=True)
    ps = faiss.ParameterSpace()
    if "HNSW" in fac and "IVF" not in fac:
        grid = [("efSearch", v) for v in (128, 256, 512, 768, 1024, 1536, 2048)]
    else:
        grid = [("nprobe", v) for v in (64, 128, 256, 512, 768, 1024, 1536)]
    for name, v in grid:
        ps.set_index_parameter(index, name, v)
        t = time.perf_counter(); _, I = index.search(q, 10); s = time.perf_counter() - t
        r = recall(I); p = b1(index)
        print(f"  {fac} {name}={v} recall {r:.3f} b1 p50 {p:.2f} ms  batch {s:.2f}s", flush=True)
        if r >= 0.97 or p > 60: break
