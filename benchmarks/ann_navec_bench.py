"""Index types on navec-ru vectors (issue #17): why 8-bit inverted lists lost to exact search, and what ``auto`` picks.

    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/ann_navec_bench.py --n 1000000 \
        --methods "exact;auto;HNSW32;IVF4096,Flat" [--stats]   (";" between methods when a factory has commas)

Passages: the synthetic Russian corpus of ``benchmarks/query_bench.make_corpus`` (2-3 random real
sentences of the NG articles per passage), embedded with navec-ru as passages and cached in
benchmarks/.cache/navec-<n>.npy (a smaller --n takes the prefix of a cached larger matrix).
Queries: the 1,200 real NG headlines (news-ru/ng-title2doc/queries.jsonl) embedded as queries;
truth: exact top-10. Per method: build seconds, then per search setting recall@10 on all
queries and the median latency of single queries (60 queries, one at a time, one FAISS thread
as ragkit searches them), interleaved with an exact query each so that a busy machine slows both
alike. A setting sweep stops at the first recall >= --stop or once a query costs 3x an exact one.
``auto``: :func:`ragkit.vectors.select.choose` on the matrix with embedded passage snippets (as a
build does), then that type built and tuned by :func:`ragkit.vectors.ann.tune` with the exact
cost as its limit. ``--stats``: PCA spectrum of a 20k sample (participation ratio, axes for 50 / 90
% of the variance) and neighbour contrast (median query top-1 / top-10 / top-100 cosine against
random passages). Results merge into benchmarks/results/ann_navec.json by n.

``--index DIR``: measure a built ragkit index instead (``ragkit index`` with the defaults): warm,
in process, ``Index.search`` p50 in dense and hybrid mode over the first 40 headlines, k = 10
(query embedding included), and recall@10 of its vector search on all 1,200 headlines against
exact search over its stored vectors (exact for HNSW and flat types); with the build's
manifest tuning record (type chosen, trials, tuning seconds and share).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, ROOT, environment  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
OUT = RESULTS / "ann_navec.json"
EF = (64, 128, 256, 512, 768, 1024, 1536, 2048)
NPROBE = (8, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536)


def passages(n: int) -> tuple[np.ndarray, list[str]]:
    """The first n navec-ru passage vectors (cached) and their texts."""
    from query_bench import make_corpus

    from ragkit.encoders.embedder import Embedder

    cached = sorted((p for p in CACHE.glob("navec-*.npy") if p.stem.split("-")[1].isdigit()
                     and int(p.stem.split("-")[1]) >= n), key=lambda p: int(p.stem.split("-")[1]))
    size = int(cached[0].stem.split("-")[1]) if cached else n
    corpus = CACHE / f"news-synthetic-{size}.jsonl.gz"
    if not corpus.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        make_corpus(size, corpus)
    with gzip.open(corpus, "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for _, line in zip(range(n), fh)]
    if not cached:
        path = CACHE / f"navec-{n}.npy"
        vectors = Embedder("navec-ru").embed_passages(texts)
        np.save(path.with_suffix(".tmp.npy"), vectors, allow_pickle=False)
        path.with_suffix(".tmp.npy").rename(path)
        return vectors, texts
    return np.ascontiguousarray(np.load(cached[0], mmap_mode="r")[:n]), texts


def headline_queries() -> np.ndarray:
    """The NG headlines embedded as queries (cached in benchmarks/.cache/navec-ng-queries.npy)."""
    from ragkit.encoders.embedder import Embedder

    path = CACHE / "navec-ng-queries.npy"
    if path.exists():
        return np.load(path)
    lines = (DATA / "news-ru" / "ng-title2doc" / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    vectors = Embedder("navec-ru").embed_queries([json.loads(line)["text"] for line in lines if line.strip()])
    np.save(path, vectors, allow_pickle=False)
    return vectors


def spectrum(x: np.ndarray) -> dict:
    """PCA spectrum of up to 20k of the vectors: participation ratio, axes for 50 / 90 % of the variance."""
    rng = np.random.default_rng(0)
    s = x[np.sort(rng.choice(len(x), min(len(x), 20_000), replace=False))]
    ev = np.linalg.svd(s - s.mean(0), compute_uv=False) ** 2
    ev /= ev.sum()
    cum = np.cumsum(ev)
    return {"vectors": int(len(s)), "dimension": int(x.shape[1]), "participation_ratio": round(float(1 / np.sum(ev ** 2)), 1),
            "axes_for_50%": int(np.searchsorted(cum, 0.5) + 1), "axes_for_90%": int(np.searchsorted(cum, 0.9) + 1),
            "norm_of_mean": round(float(np.linalg.norm(s.mean(0))), 4)}


def index_vectors(folder: Path) -> np.ndarray:
    """The stored vectors of an exact ragkit index (to compare another model's spectrum)."""
    import ragkit

    with ragkit.Index.open(folder) as index:
        return np.array(index.vectors.matrix())


def stats(x: np.ndarray, q: np.ndarray) -> dict:
    from ragkit.vectors.exact import exact_search

    s = x[np.sort(np.random.default_rng(0).choice(len(x), min(len(x), 2_000), replace=False))]
    top, _ = exact_search(x[: min(len(x), 100_000)], q[:500], 100)
    rand = q[:500] @ s.T
    return {**spectrum(x),
            "query_top1_cos": round(float(np.median(top[:, 0])), 3), "query_top10_cos": round(float(np.median(top[:, 9])), 3),
            "query_top100_cos": round(float(np.median(top[:, 99])), 3),
            "random_cos_mean": round(float(rand.mean()), 4), "random_cos_std": round(float(rand.std()), 4)}


def latency(index, x: np.ndarray, q: np.ndarray) -> tuple[float, float]:  # noqa: ANN001
    from ragkit.vectors.exact import exact_search
    from ragkit.vectors.select import timed_pair

    return timed_pair(lambda v: index.search(v, 10), lambda v: exact_search(x, v, 10), q[:60])


def sweep(index, x: np.ndarray, q: np.ndarray, truth: np.ndarray, stop: float) -> list[dict]:  # noqa: ANN001
    from ragkit.vectors.ann import recall_at

    name = index.tunable[0] if index.tunable else None
    grid = EF if name == "efSearch" else [v for v in NPROBE if v <= (index.nlist or 0)] if name else [None]
    rows = []
    for value in grid:
        params = {name: value} if name else {}
        index.params = params
        found = index.search(q, 10)[1]
        ms, exact_ms = latency(index, x, q)
        rows.append({"params": params, "recall@10": round(recall_at(found, truth, 10), 4),
                     "p50_ms": round(ms, 3), "exact_p50_ms": round(exact_ms, 3)})
        print(f"  {index.factory} {params} recall {rows[-1]['recall@10']:.3f} p50 {ms:.2f} ms (exact {exact_ms:.2f})", flush=True)
        if rows[-1]["recall@10"] >= stop or ms > 3 * exact_ms:
            break
    return rows


def run_method(method: str, x: np.ndarray, texts: list[str], q: np.ndarray, truth: np.ndarray, args) -> dict:  # noqa: ANN001
    from ragkit.vectors import select
    from ragkit.vectors.ann import STATIC_SNIPPET_WORDS, query_snippets, tune

    ids = np.arange(len(x), dtype=np.int64)
    if method == "exact":
        index = select.build("flat", x, ids)
        return {"method": method, "factory": "Flat", "build_s": 0.0, "settings": sweep(index, x, q, truth, 1.0)}
    if method != "auto":
        t = time.perf_counter()
        index = select.build(method, x, ids, factory=method)
        return {"method": method, "factory": method, "build_s": round(time.perf_counter() - t, 1),
                "settings": sweep(index, x, q, truth, args.stop)}
    from ragkit.encoders.embedder import Embedder

    snippets = Embedder("navec-ru").embed_queries(query_snippets(texts, words=STATIC_SNIPPET_WORDS))
    choice = select.choose(x, select.trial_queries(x, snippets), args.target)
    print("  auto trials:", json.dumps(choice), flush=True)
    factory_kind = choice["kind"]
    t = time.perf_counter()
    index = select.build(factory_kind, x, ids)
    build_s = time.perf_counter() - t
    tuning = tune(index, x, ids, args.target, query_vectors=snippets, cost_limit=choice["exact_ms"] / 1000)
    index.params = tuning.params
    from ragkit.vectors.ann import recall_at

    ms, exact_ms = latency(index, x, q)
    return {"method": "auto", "factory": index.factory, "choice": choice, "build_s": round(build_s, 1),
            "tuning": tuning.to_json(), "headline_recall@10": round(recall_at(index.search(q, 10)[1], truth, 10), 4),
            "p50_ms": round(ms, 3), "exact_p50_ms": round(exact_ms, 3)}


def measure_index(folder: Path) -> dict:
    import ragkit
    from ragkit.vectors.ann import recall_at
    from ragkit.vectors.exact import exact_search

    lines = (DATA / "news-ru" / "ng-title2doc" / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    with ragkit.Index.open(folder) as idx:
        vectors = idx.vectors
        q = idx.embed_queries(texts)
        matrix = vectors.reconstruct(np.sort(vectors.ids()))
        truth = np.sort(vectors.ids())[exact_search(matrix, q, 10)[1]]
        recall = recall_at(vectors.search(q, 10)[1], truth, 10)
        out = {"factory": vectors.factory, "params": vectors.params, "vectors": len(vectors),
               "headline_recall@10": round(recall, 4), "queries_timed": 40}
        for mode in ("dense", "hybrid"):
            for text in texts[:5]:
                idx.search(text, k=10, mode=mode)  # warm
            seconds = []
            for text in texts[:40]:
                t0 = time.perf_counter()
                idx.search(text, k=10, mode=mode)
                seconds.append(time.perf_counter() - t0)
            out[f"{mode}_p50_ms"] = round(1000 * float(np.median(seconds)), 3)
        seconds = []
        for row in q[:40]:
            t0 = time.perf_counter()
            exact_search(matrix, row[None, :], 10)
            seconds.append(time.perf_counter() - t0)
        out["exact_vector_search_p50_ms"] = round(1000 * float(np.median(seconds)), 3)
    out["tuning"] = manifest["vectors"].get("tuning")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--methods", default="exact,auto")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--stop", type=float, default=0.97, help="end a sweep at this headline recall")
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--spectrum-of", type=Path, action="append", default=[],
                    help="an exact ragkit index whose vectors' spectrum to record beside (e.g. a MiniLM index)")
    ap.add_argument("--index", type=Path, help="measure this built ragkit index instead (see the module doc)")
    args = ap.parse_args()
    if args.index:
        result = {"index": str(args.index), "environment": environment(), **measure_index(args.index)}
        result["load_average_after"] = [round(v, 2) for v in __import__("os").getloadavg()]
        print(json.dumps({k: v for k, v in result.items() if k != "tuning"}, ensure_ascii=False), flush=True)
        data = json.loads(OUT.read_text()) if OUT.exists() else {}
        data.setdefault("built_indexes", []).append(result)
        OUT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {OUT}")
        return
    from ragkit.vectors.exact import exact_search

    x, texts = passages(args.n)
    q = headline_queries()
    truth = exact_search(x, q, 10)[1]
    result = {"n": args.n, "dimension": int(x.shape[1]), "queries": int(len(q)), "target": args.target,
              "environment": environment(), "methods": []}
    if args.stats:
        result["stats"] = stats(x, q)
        print("stats:", result["stats"], flush=True)
    for folder in args.spectrum_of:
        with open(folder / "manifest.json", encoding="utf-8") as fh:
            model = json.load(fh)["model"]["name"]
        result.setdefault("other_spectra", []).append({"index": str(folder), "model": model, **spectrum(index_vectors(folder))})
        print("spectrum:", result["other_spectra"][-1], flush=True)
    for method in [m for m in args.methods.split(";" if ";" in args.methods else ",") if m]:
        print(method, flush=True)
        result["methods"].append(run_method(method, x, texts, q, truth, args))
    result["load_average_after"] = [round(v, 2) for v in __import__("os").getloadavg()]
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[str(args.n)] = {**data.get(str(args.n), {}), **{"run_" + result["environment"]["when"]: result}}
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
