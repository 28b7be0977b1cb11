"""Warm query latency at scale, and ragkit's own overhead on top of the FAISS call.

    .venv/bin/python benchmarks/query_bench.py --passages 1000000 [--queries 300] [--readme]

Corpus: ``--passages`` synthetic Russian news documents, each two or three sentences drawn at
random (seeded) from the 1,986 real articles of ``news-ru/ng-articles.jsonl.gz`` in the shared
data, so words, lengths and term statistics are those of real news; each document is one
passage. It is indexed once by a real ``ragkit index`` process with the defaults (navec-ru, the
auto index type: HNSW32 tuned to recall@10 0.95 at 1M) into ``benchmarks/.cache/`` and
reused. Queries: real headlines of ``news-ru/ng-title2doc``.

Measured in one warm process, after warm-up queries, k = 10, one query per call:
- ``Index.search`` p50 / p99 in hybrid, dense and lexical mode (query embedding included);
- the query embedding alone, and the raw FAISS search call alone (the same query vectors,
  the same tuned parameters, k = 40 as the per-document cap asks, one FAISS thread as ragkit
  runs single queries);
- ragkit's overhead in dense mode: search - embedding - FAISS call (ids to passages, the
  per-document cap, SQLite reads, result objects), as a share of the FAISS call;
- dense search with a date filter that keeps about 1 % and 50 % of the documents.
Writes benchmarks/results/query.json (and a README table with --readme).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _env import DATA, RESULTS, ROOT, environment, update_readme_table  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
_SENTENCE = re.compile(r"(?<=[.!?»])\s+(?=[А-ЯЁA-Z«\"])")


def make_corpus(n: int, path: Path, seed: int = 0) -> None:
    """n documents of 2-3 random real sentences each, dated over 2020-2025, as JSONL.gz."""
    articles = DATA / "news-ru" / "ng-articles.jsonl.gz"
    if not articles.exists():
        raise SystemExit(f"{articles} is missing: set RAGKIT_DATA to the shared data folder")
    sentences: list[str] = []
    with gzip.open(articles, "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line).get("text") or ""
            sentences.extend(s.strip() for s in _SENTENCE.split(text) if 30 <= len(s.strip()) <= 300)
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as out:
        for i in range(n):
            text = " ".join(rng.choice(sentences) for _ in range(rng.randint(2, 3)))
            date = f"{2020 + i % 6}-{1 + i % 12:02d}-{1 + i % 28:02d}"
            out.write(json.dumps({"_id": f"s{i}", "title": "", "text": text, "date": date}, ensure_ascii=False) + "\n")
    tmp.rename(path)


def build(n: int) -> tuple[Path, float | None]:
    """The cached index of n synthetic documents, built by a real ragkit process when missing."""
    CACHE.mkdir(parents=True, exist_ok=True)
    corpus, index = CACHE / f"news-synthetic-{n}.jsonl.gz", CACHE / f"query-{n}"
    if not corpus.exists():
        make_corpus(n, corpus)
    if (index / "manifest.json").exists():
        return index, None
    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "ragkit"), "index", str(corpus), "--index", str(index), "--quiet"],
                   check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return index, time.perf_counter() - t


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3), "n": len(seconds)}


def timed(fn, items) -> list[float]:  # noqa: ANN001
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--readme", action="store_true")
    args = ap.parse_args()

    index_path, build_s = build(args.passages)
    import ragkit
    from ragkit.store.filters import Filters

    queries_file = DATA / "news-ru" / "ng-title2doc" / "queries.jsonl"
    queries = [json.loads(line)["text"] for line in queries_file.read_text(encoding="utf-8").splitlines()][: args.queries]
    idx = ragkit.Index.open(index_path)
    t = time.perf_counter()
    for q in queries[:20]:  # warm-up: loads vectors, store, BM25, the encoder, passage -> document map
        idx.search(q, k=10)
        idx.search(q, k=10, mode="dense")
    load_s = time.perf_counter() - t

    results: dict[str, dict] = {}
    for mode in ("hybrid", "dense", "lexical"):
        results[f"search {mode}"] = percentiles(timed(lambda q, m=mode: idx.search(q, k=10, mode=m), queries))
    idx._sides[0]._query_vectors.clear()
    embed = timed(lambda q: idx.embedder.embed_queries([q]), queries)
    results["query embedding"] = percentiles(embed)
    vectors = idx.embed_queries(queries)
    faiss_index = idx.vectors._index
    params = idx.vectors._parameters(idx.vectors.params, 10 * 4, None)  # search asks k * 4 for the per-doc cap
    from ragkit.vectors.faiss_index import _threads_for

    with _threads_for(1):  # as ragkit runs a single query: one FAISS thread
        results["FAISS call"] = percentiles(timed(lambda v: faiss_index.search(v[None, :], 40, params=params), vectors))
    # dense search with the embedding cached: ragkit's part + the FAISS call
    results["search dense, embedding cached"] = percentiles(timed(lambda q: idx.search(q, k=10, mode="dense"), queries))
    for label, since in (("about 1 %", "2025-12-20"), ("about 50 %", "2023-01-01")):
        f = Filters(since=since)
        results[f"search dense, date filter {label}"] = percentiles(
            timed(lambda q, f=f: idx.search(q, k=10, mode="dense", filters=f), queries))
    faiss_p50 = results["FAISS call"]["p50_ms"]
    overhead = results["search dense, embedding cached"]["p50_ms"] - faiss_p50
    v = idx.manifest["vectors"]
    payload = {
        "environment": environment(("ragkit", "numpy", "faiss-cpu", "onnxruntime")),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "corpus": f"{args.passages} synthetic documents of 2-3 real news sentences (seeded), one passage each",
        "index": {"path": str(index_path), "passages": idx.manifest["counts"]["passages"], "model": idx.manifest["model"]["name"],
                  "factory": v["factory"], "search": v.get("search"), "tuning": v.get("tuning"),
                  "build_whole_process_s": None if build_s is None else round(build_s, 1),
                  "bytes": (index_path / v["file"]).stat().st_size},
        "warm_up_s": round(load_s, 2),
        "queries": len(queries),
        "results": results,
        "overhead": {"p50_ms": round(overhead, 3), "share_of_faiss_call": round(overhead / faiss_p50, 3)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "query.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous[str(args.passages)] = payload
    out.write_text(json.dumps(previous, indent=2, ensure_ascii=False) + "\n")
    rows = [f"| {args.passages:,} passages, warm, k = 10 | p50 | p99 |", "| --- | --- | --- |"]
    rows += [f"| {name} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms |" for name, r in results.items()]
    rows.append(f"\nragkit's overhead over the FAISS call (dense, p50): {overhead:.3f} ms = "
                f"{overhead / faiss_p50:.0%} of the call. Index: {v['factory']} {v.get('search')}, "
                f"{idx.manifest['model']['name']}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    print("\n".join(rows))
    if args.readme:
        update_readme_table("query", "\n".join(rows))


if __name__ == "__main__":
    main()
