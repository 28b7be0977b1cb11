"""What a user with a large archive waits for: cold search, warm latency, and updates, by size.

    .venv/bin/python benchmarks/scale_bench.py --sizes 100000 1000000 [--cold-runs 7] [--readme]

For each size, the corpus is query_bench's recipe (``make_corpus``: documents of 2-3 real NG
news sentences, seeded, one passage each) and the index is built once with today's defaults
by a real ``ragkit index`` process into ``benchmarks/.cache/scale-N`` (the build time is kept
beside it, so a rerun reuses both). Then, on that index:

- cold search: the median of ``--cold-runs`` whole ``ragkit search`` processes (after one
  warm-up for the page cache), each a different real NG headline, with each process's peak RSS
  (``wait4``);
- warm p50/p99 in one process for each mode (real NG headlines, k = 10): a first pass over
  the timed queries in every mode maps the pages they touch (its p99 is kept apart, as
  ``MODE_first_pass_p99_ms``), then the second pass is timed (a long-running process's steady state);
- ``ragkit add`` of 1 % new documents (another seed) and ``ragkit remove`` of 1 % of the
  documents on copies of the index, as whole processes and in process
  (``update_index``), each as a share of the full build.

Writes ``benchmarks/results/scale.json``: ``rows`` holds one object per size with
``passages``, ``index_mb``, ``cold_search_median_s``, ``cold_peak_rss_mb``, ``hybrid_p50_ms``,
``hybrid_p99_ms``, ``dense_p50_ms``, ``lexical_p50_ms``, ``add_1pct_share_whole`` and
``add_1pct_share_in_process`` (shares are fractions of the full build), plus the remove shares,
the index type and the machine's load average when the row was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _env import DATA, RESULTS, environment, update_readme_table  # noqa: E402
from query_bench import CACHE, make_corpus, percentiles, timed  # noqa: E402

RAGKIT = str(Path(sys.executable).parent / "ragkit")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def process(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one whole ``ragkit`` process; a failure ends the benchmark."""
    t = time.perf_counter()
    proc = subprocess.Popen([RAGKIT, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"ragkit {' '.join(args)} failed: {err.strip()[-500:]}")
    return elapsed, usage.ru_maxrss / 1024


def built(n: int) -> tuple[Path, Path, float]:
    """(corpus, index, build seconds): built once by a real process with the defaults."""
    CACHE.mkdir(parents=True, exist_ok=True)
    corpus, index = CACHE / f"news-synthetic-{n}.jsonl.gz", CACHE / f"scale-{n}"
    facts = CACHE / f"scale-{n}.json"
    if not corpus.exists():
        make_corpus(n, corpus)
    if (index / "manifest.json").exists() and facts.exists():
        return corpus, index, float(json.loads(facts.read_text())["build_s"])
    shutil.rmtree(index, ignore_errors=True)
    seconds, _ = process(["index", str(corpus), "--index", str(index), "--quiet"])
    facts.write_text(json.dumps({"build_s": seconds}))
    return corpus, index, seconds


def new_documents(n: int) -> Path:
    """1 % of n new documents (another seed, other ids) to add."""
    path = CACHE / f"scale-add-{n}.jsonl.gz"
    if not path.exists():
        raw = CACHE / f"scale-add-{n}.raw.jsonl.gz"
        make_corpus(max(1, n // 100), raw, seed=1)
        import gzip

        with gzip.open(raw, "rt", encoding="utf-8") as src, gzip.open(path, "wt", encoding="utf-8") as out:
            for line in src:
                doc = json.loads(line)
                doc["_id"] = "a" + doc["_id"]
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        raw.unlink()
    return path


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "embeddings.sqlite") / 2**20


def updates(n: int, index: Path, build_s: float) -> dict[str, float]:
    """Add and remove 1 %, as whole processes and in process, each on a fresh copy."""
    import ragkit

    extra = new_documents(n)
    gone = [f"s{i}" for i in range(0, n, 100)]
    out: dict[str, float] = {}
    work = CACHE / f"scale-{n}-copy"
    for how in ("whole", "in_process"):
        for what in ("add", "remove"):
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(index, work)
            t = time.perf_counter()
            if how == "whole":
                args = ["add", str(extra)] if what == "add" else ["remove", *gone]
                process([*args, "--index", str(work), "--quiet"])
            elif what == "add":
                ragkit.update_index(work, add=[extra])
            else:
                ragkit.update_index(work, remove=gone)
            seconds = time.perf_counter() - t
            out[f"{what}_1pct_s_{how}"] = round(seconds, 3)
            out[f"{what}_1pct_share_{how}"] = round(seconds / build_s, 4)
    shutil.rmtree(work, ignore_errors=True)
    return out


def measure(n: int, cold_runs: int, n_queries: int, with_updates: bool) -> dict:
    import ragkit

    _, index, build_s = built(n)
    queries_file = DATA / "news-ru" / "ng-title2doc" / "queries.jsonl"
    queries = [json.loads(line)["text"] for line in queries_file.read_text(encoding="utf-8").splitlines()]
    cold = [process(["search", queries[i], "--index", str(index), "--json"]) for i in range(cold_runs + 1)][1:]
    row: dict = {"passages": n, "index_mb": round(folder_mb(index), 1), "build_s": round(build_s, 1),
                 "cold_search_median_s": round(float(np.median([c[0] for c in cold])), 3),
                 "cold_search_runs_s": [round(c[0], 3) for c in cold],
                 "cold_peak_rss_mb": round(float(np.median([c[1] for c in cold])), 1)}
    idx = ragkit.Index.open(index)
    row["factory"] = idx.manifest["vectors"]["factory"]
    row["search_params"] = idx.manifest["vectors"].get("search", {})
    warm = queries[20:20 + n_queries]
    for mode in ("hybrid", "dense", "lexical"):  # the first pass maps what the queries touch: its p99 apart
        first = percentiles(timed(lambda q, m=mode: idx.search(q, k=10, mode=m), warm))
        row[f"{mode}_first_pass_p99_ms"] = first["p99_ms"]
    for mode in ("hybrid", "dense", "lexical"):
        p = percentiles(timed(lambda q, m=mode: idx.search(q, k=10, mode=m), warm))
        row[f"{mode}_p50_ms"], row[f"{mode}_p99_ms"] = p["p50_ms"], p["p99_ms"]
    idx.close()
    if with_updates:
        row.update(updates(n, index, build_s))
    row["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return row


def table(rows: list[dict]) -> str:
    head = ("| passages | index MB | vectors | build s | cold search s (median) | cold peak RSS MB | hybrid p50 / p99 ms "
            "| dense p50 ms | lexical p50 ms | add 1 % (whole / in process) | remove 1 % (whole / in process) | load |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        share = lambda what: (f"{100 * r[f'{what}_1pct_share_whole']:.1f} % / {100 * r[f'{what}_1pct_share_in_process']:.1f} %"  # noqa: E731
                              if f"{what}_1pct_share_whole" in r else "not measured")
        lines.append(f"| {r['passages']:,} | {r['index_mb']:,.0f} | {r['factory']} | {r['build_s']:.0f} | "
                     f"{r['cold_search_median_s']:.2f} | {r['cold_peak_rss_mb']:.0f} | {r['hybrid_p50_ms']:.1f} / "
                     f"{r['hybrid_p99_ms']:.1f} | {r['dense_p50_ms']:.1f} | {r['lexical_p50_ms']:.1f} | {share('add')} | "
                     f"{share('remove')} | {r['load_average'][0]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--cold-runs", type=int, default=7)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-updates", action="store_true", help="skip the add/remove measurements")
    ap.add_argument("--readme", action="store_true")
    args = ap.parse_args()
    out = RESULTS / "scale.json"
    rows = [measure(n, args.cold_runs, args.queries, not args.no_updates) for n in args.sizes]
    for row in rows:
        row["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    earlier = json.loads(out.read_text(encoding="utf-8"))["rows"] if out.exists() else []
    rows = sorted(rows + [r for r in earlier if r["passages"] not in args.sizes], key=lambda r: r["passages"])
    payload = {"environment": environment(("ragkit", "numpy", "faiss-cpu", "onnxruntime")), "rows": rows,
               "notes": "cold = whole `ragkit search` processes (median); warm = one process; shares = fractions "
                        "of the full build; a size not rerun keeps its earlier row (see its measured_at)"}
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(rows))
    if args.readme:
        update_readme_table("scale", table(rows))


if __name__ == "__main__":
    main()
