"""Ray engine scaling: the build on 1 and 2 Ray workers beside the local path at the same parallelism.

    .venv/bin/python benchmarks/ray_bench.py [--copies 3] [--minilm 150] [--engines local-1,ray-1,local-2,ray-2]

Corpus: the 1,986 Russian news articles of news-ru/ng-articles.jsonl.gz, ``--copies`` times
(ids suffixed; about 8,900 navec-ru passages a copy), so the run holds >= 20k passages.
Each configuration runs in a fresh subprocess, into a fresh folder (no embedding cache):

- ``local-1`` / ``local-2``: ``build_index`` in process with 1 / 2 BLAS and torch threads;
- ``ray-1`` / ``ray-2``: ``build_index(..., executor=RayExecutor(workers=N))`` on a local Ray
  instance of 2 CPUs (each actor runs its encoder on one thread).

Stage times come from the build's progress events: chunking (with BM25 counting on Ray),
embedding, and the rest (BM25 merge, store, FAISS, commit). Ray's fixed start-up cost
(``ray.init``, and a 5-document build, whose time is almost all actor start-up) is reported
apart. A second set of runs embeds ``--minilm`` passages with all-MiniLM-L6-v2 on torch,
where the embedding stage dominates. The machine may be shared: the load average before and
after each run is recorded. Writes benchmarks/results/ray.json and ray.png; ``--backend onnx-int8``
embeds MiniLM in int8 instead and writes ray-onnx-int8.json/png (``--copies 0`` skips navec-ru).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, environment  # noqa: E402

CORPUS = "news-ru/ng-articles.jsonl.gz"

CHILD = r"""
import json, os, resource, sys, time
threads = int(sys.argv[4])
import torch
torch.set_num_threads(threads)
from ragkit import build_index, RayExecutor, BuildOptions
from ragkit.build.ray_executor import start_ray

engine, corpus, target, model = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
marks = []
class Timer:
    def start(self, stage, total=None): marks.append((stage, time.perf_counter()))
    def advance(self, n=1): pass
    def finish(self): pass
out = {}
executor = None
if engine.startswith("ray"):
    t = time.perf_counter(); start_ray(num_cpus=2); out["ray_init_s"] = time.perf_counter() - t
    executor = RayExecutor(workers=int(engine.split("-")[1]), texts_per_unit=512, documents_per_unit=128)
    if sys.argv[6] == "warm":
        tiny = os.path.join(os.path.dirname(target), "tiny.jsonl")
        with open(corpus, encoding="utf-8") as src, open(tiny, "w", encoding="utf-8") as dst:
            for _, line in zip(range(5), src): dst.write(line)
        t = time.perf_counter()
        build_index([tiny], target + "-tiny", model=model, executor=executor, options=BuildOptions(query_encoder=False))
        out["tiny_build_s"] = time.perf_counter() - t
start = time.perf_counter()
result = build_index([corpus], target, model=model, executor=executor, progress=Timer(),
                     options=BuildOptions(query_encoder=False))
end = time.perf_counter()
marks.append(("end", end))
stages = {}
for (name, t0), (_, t1) in zip(marks, marks[1:]):
    stages[name.split(" ")[0]] = stages.get(name.split(" ")[0], 0.0) + t1 - t0
out.update({"total_s": end - start, "stages": stages, "passages": result.passages, "documents": result.documents,
            "embedded": result.embedded, "nodes": executor.nodes if executor else None,
            "worker_peak_rss_mib": ({k: v // 1024 for k, v in executor.worker_peak_rss_kib.items()}
                                    if executor else None),
            "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "ragkit_from": os.path.dirname(sys.modules["ragkit"].__file__)})
print(json.dumps(out))
"""


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def make_corpus(folder: Path, copies: int, limit: int | None = None) -> Path:
    src = DATA / CORPUS
    if not src.exists():
        raise SystemExit(f"{src} is absent (set RAGKIT_DATA)")
    lines = gzip.open(src, "rt", encoding="utf-8").read().splitlines()
    path = folder / f"corpus-{copies}-{limit}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        n = 0
        for c in range(copies):
            for line in lines:
                record = json.loads(line)
                key = "_id" if "_id" in record else "id"
                record[key] = f"{record.get(key, n)}-{c}"
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1
                if limit and n >= limit:
                    return path
    return path


def run_config(engine: str, corpus: Path, work: Path, model: str, warm: bool, backend: str = "torch") -> dict:
    threads = int(engine.split("-")[1]) if engine.startswith("local") else 1
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "RAGKIT_PASSAGE_BACKEND": backend}
    target = work / f"{engine}-{model}-{time.monotonic_ns()}"
    before = load()
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, engine, str(corpus), str(target), str(threads), model,
                          "warm" if warm else "cold"], capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{engine} failed: {out.stderr[-2000:]}")
    result = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    result.update({"engine": engine, "model": model, "backend": backend, "process_s": round(wall, 2),
                   "load_before": before, "load_after": load()})
    print(json.dumps(result), flush=True)
    return result


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, model in zip(axes, sorted({r["model"] for r in results})):
        rows = [r for r in results if r["model"] == model]
        names = [r["engine"] for r in rows]
        embed = [r["passages"] / max(r["stages"].get("Embedding", 1e-9), 1e-9) for r in rows]
        whole = [r["passages"] / r["total_s"] for r in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], embed, 0.4, label="embedding stage")
        ax.bar([i + 0.2 for i in x], whole, 0.4, label="whole build")
        ax.set_xticks(list(x), names)
        ax.set_ylabel("passages / s")
        ax.set_title(f"{model}, {rows[0]['passages']} passages")
        ax.legend()
    fig.suptitle(f"ragkit build: local vs Ray (2-CPU instance), load {results[0]['load_before'][0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def docs_table(out: dict) -> str:
    """The markdown table of docs/ray.md from a result (``--docs`` rewrites it there)."""
    rows = ["| model | engine | passages | whole build s | chunk (+BM25 on Ray) s | embedding s | embedding passages/s "
            "| driver / worker peak RSS MiB | load before, after |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in out["results"]:
        st = r["stages"]
        workers = r.get("worker_peak_rss_mib") or {}
        rss = f"{r['driver_peak_rss_mib']} / {max(workers.values()) if workers else '-'}"
        embed_s = st.get("Embedding", 0)
        rows.append(f"| {r['model']} | {r['engine']} | {r['passages']} | {r['total_s']:.1f} | "
                    f"{st.get('Chunking', 0):.1f} | {embed_s:.1f} | {r['passages'] / max(embed_s, 1e-9):.0f} | {rss} | "
                    f"{r['load_before'][0]}, {r['load_after'][0]} |")
    fixed = [r for r in out["results"] if "ray_init_s" in r]
    if fixed:
        rows.append("")
        rows.append("Ray's fixed start-up cost, apart: " + "; ".join(
            f"{r['engine']}: `ray.init` {r['ray_init_s']:.1f} s, a 5-document build {r['tiny_build_s']:.1f} s"
            for r in fixed if "tiny_build_s" in r) + " (two actor pools started, one per stage).")
    rows.append("")
    rows.append("Ratios: " + json.dumps(out["summary"]))
    return "\n".join(rows)


def write_docs(out: dict) -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "ray.md"
    text = docs.read_text(encoding="utf-8")
    start, end = "<!-- ray-bench:start -->", "<!-- ray-bench:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    docs.write_text(f"{head}{start}\n{docs_table(out)}\n{end}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=3,
                        help="copies of the news corpus for the navec-ru runs (0: skip)")
    parser.add_argument("--minilm", type=int, default=150, help="documents for the MiniLM runs (0: skip)")
    parser.add_argument("--engines", default="local-1,ray-1,local-2,ray-2")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx-int8"),
                        help="MiniLM's passage backend; onnx-int8 writes ray-onnx-int8.json/png")
    parser.add_argument("--docs", action="store_true", help="rewrite the table in docs/ray.md")
    parser.add_argument("--resume", type=Path,
                        help="a log of this script's result lines: configurations in it are not run again")
    args = parser.parse_args()
    engines = args.engines.split(",")
    results = []
    if args.resume:
        results = [json.loads(line) for line in args.resume.read_text(encoding="utf-8").splitlines()
                   if line.startswith("{") and '"engine"' in line]
    done = {(r["engine"], r["model"]) for r in results}
    with tempfile.TemporaryDirectory(prefix="ragkit-ray-bench-") as tmp:
        work = Path(tmp)
        if args.copies:
            big = make_corpus(work, args.copies)
            for engine in engines:
                if (engine, "navec-ru") not in done:
                    results.append(run_config(engine, big, work, "navec-ru", warm=engine.startswith("ray")))
        if args.minilm:
            small = make_corpus(work, 1, args.minilm)
            for engine in engines:
                if (engine, "all-MiniLM-L6-v2") not in done:
                    results.append(run_config(engine, small, work, "all-MiniLM-L6-v2", warm=False,
                                              backend=args.backend))
    summary = {}
    for model in sorted({r["model"] for r in results}):
        by = {r["engine"]: r for r in results if r["model"] == model}

        def rate(name: str, stage: str | None = None) -> float | None:
            r = by.get(name)
            if r is None:
                return None
            seconds = r["stages"].get(stage, 0.0) if stage else r["total_s"]
            return r["passages"] / seconds if seconds else None

        s = {}
        for stage in ("Embedding", None):
            key = (stage or "build").lower()
            r1, r2, l1, l2 = rate("ray-1", stage), rate("ray-2", stage), rate("local-1", stage), rate("local-2", stage)
            s[f"{key}_ray2_over_ray1"] = round(r2 / r1, 3) if r1 and r2 else None
            s[f"{key}_ray1_overhead_vs_local1"] = round(1 - r1 / l1, 3) if r1 and l1 else None
            s[f"{key}_ray2_overhead_vs_local2"] = round(1 - r2 / l2, 3) if r2 and l2 else None
        for n in (1, 2):  # the whole build less Ray's fixed cost (its pools' start, timed apart)
            ray_run, local_run = by.get(f"ray-{n}"), by.get(f"local-{n}")
            if ray_run and local_run and "tiny_build_s" in ray_run:
                rest = ray_run["total_s"] - ray_run["tiny_build_s"]
                s[f"build_ray{n}_overhead_vs_local{n}_less_startup"] = round(1 - local_run["total_s"] / rest, 3)
        summary[model] = s
    out = {"benchmark": "ray_bench", "env": environment(("ragkit", "numpy", "faiss-cpu", "torch", "ray", "pyarrow")),
           "args": vars(args), "results": results, "summary": summary}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "ray" if args.backend == "torch" else f"ray-{args.backend}"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n",
                                          encoding="utf-8")
    plot(results, RESULTS / f"{name}.png")
    if args.docs and args.backend == "torch":
        write_docs(out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
