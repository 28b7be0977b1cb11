"""Ray engine scaling: the build on 1 and 2 Ray workers beside the local path at the same parallelism.

    .venv/bin/python benchmarks/ray_bench.py [--copies 3] [--minilm 150] [--engines local-1,ray-1,local-2,ray-2]

Corpus: the 1,986 Russian news articles of news-ru/ng-articles.jsonl.gz, ``--copies`` times
(ids suffixed; about 8,900 navec-ru passages a copy), so the run holds >= 20k passages.
Each configuration runs in a fresh subprocess, into a fresh folder (no embedding cache):

- ``local-1`` / ``local-2``: ``build_index`` in process with 1 / 2 BLAS and torch threads;
- ``ray-1`` / ``ray-2``: ``build_index(..., executor=RayExecutor(workers=N))`` on a local Ray
  instance of 2 CPUs (each actor runs its encoder on one thread).

Stage times come from the build's progress events: "Reading" (the streamed stage: read, cut,
count BM25 terms, hash for reprints and embed, unit by unit, and write each unit on the
driver), and the rest ("Writing": BM25 from the spilled counts, reprint groups; then FAISS,
tuning, commit). Ray's fixed start-up cost (``ray.init``, and a 5-document build, whose time
is almost all actor start-up) is reported apart. A second set of runs embeds ``--minilm``
passages with all-MiniLM-L6-v2 on torch, where embedding is almost all of the streamed stage.
The machine may be shared: the load average before and after each run is recorded, and over
the streamed stage every process's CPU time by role (the driver, Ray's workers, Ray's daemons,
the rest) and the machine's idle time (``embedding_cpu_s``), which shows where the cores went.
The actor pool's start (a model load an actor) is ``pool_start_s``. ``--rounds N`` interleaves
the configurations N times (in reverse order every other round, so a drift in the machine's speed
cancels) and reports each ratio per round and the median; a fixed Python loop is timed before
and after each run (``loop_s_before/after``) to show how fast the shared core ran. Writes
benchmarks/results/ray.json and ray.png (``--name`` another name); ``--backend onnx-int8`` embeds
MiniLM in int8 instead and writes ray-onnx-int8.json/png (``--copies 0`` skips navec-ru).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, environment  # noqa: E402

CORPUS = "news-ru/ng-articles.jsonl.gz"

CHILD = r"""
import json, os, resource, sys, threading, time
threads = int(sys.argv[4])
import torch
torch.set_num_threads(threads)
from ragkit import build_index, RayExecutor, BuildOptions
from ragkit.build.ray_executor import start_ray

engine, corpus, target, model = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
marks = []
TICK = os.sysconf("SC_CLK_TCK")
def processes():
    # CPU seconds so far of every process here, with its role: this driver, a Ray worker, Ray's daemons, other
    seen = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        role = ("driver" if int(pid) == os.getpid() else "ray_workers" if cmd.startswith("ray::")
                else "ray_daemons" if ("/ray/" in cmd or "raylet" in cmd or "gcs_server" in cmd) else "other")
        seen[(pid, stat[19])] = (role, (int(stat[11]) + int(stat[12])) / TICK)  # (pid, start time): one process
    return seen
class Sampler(threading.Thread):
    # samples every process's CPU time twice a second, so processes that end within the stage still count
    def __init__(self):
        super().__init__(daemon=True); self.first, self.last, self.done = processes(), {}, threading.Event()
        self.idle0, self.t0 = self.idle(), time.perf_counter(); self.last.update(self.first)
    @staticmethod
    def idle(): return int(open("/proc/stat").readline().split()[4]) / TICK
    def run(self):
        while not self.done.wait(0.5): self.last.update(processes())
    def stop(self):
        self.done.set(); self.join(); self.last.update(processes())
        groups = {"driver": 0.0, "ray_workers": 0.0, "ray_daemons": 0.0, "other": 0.0}
        for key, (role, seconds) in self.last.items():
            groups[role] += seconds - self.first.get(key, (role, 0.0))[1]
        return {k: round(v, 1) for k, v in groups.items()} | {
            "idle": round(self.idle() - self.idle0, 1), "wall": round(time.perf_counter() - self.t0, 1)}
class Memory(threading.Thread):
    # this driver's resident memory by kind, 5 times a second: anonymous (what must fit in RAM)
    # and file-backed or shared (mapped files and Ray's object store: pages the kernel can drop)
    def __init__(self):
        super().__init__(daemon=True); self.peak = {}; self.done = threading.Event()
    def read(self):
        for line in open("/proc/self/status"):
            if line.startswith(("RssAnon", "RssFile", "RssShmem")):
                key, value = line.split(":"); self.peak[key] = max(self.peak.get(key, 0), int(value.split()[0]))
    def run(self):
        while not self.done.wait(0.2): self.read()
    def stop(self):
        self.done.set(); self.join(); self.read()
        return {k: v // 1024 for k, v in self.peak.items()}
memory = Memory(); memory.start()
sampler = None
out = {}
class Timer:
    def start(self, stage, total=None):
        global sampler
        marks.append((stage, time.perf_counter()))
        if sampler is not None:
            out["embedding_cpu_s"] = sampler.stop(); sampler = None
        if stage == "Reading and embedding":
            sampler = Sampler(); sampler.start()
    def advance(self, n=1): pass
    def finish(self): pass
executor = None
if engine.startswith("ray"):
    joined = os.environ.get("RAGKIT_BENCH_RAY_ADDRESS")  # a cluster started apart (ray start --head)
    t = time.perf_counter(); start_ray(joined, num_cpus=2); out["ray_init_s"] = time.perf_counter() - t
    executor = RayExecutor(workers=int(engine.split("-")[1]))
    if sys.argv[6] == "warm":
        tiny = os.path.join(os.path.dirname(target), "tiny.jsonl")
        with open(corpus, encoding="utf-8") as src, open(tiny, "w", encoding="utf-8") as dst:
            for _, line in zip(range(5), src): dst.write(line)
        t = time.perf_counter()
        build_index([tiny], target + "-tiny", model=model, executor=executor, options=BuildOptions(query_encoder=False))
        out["tiny_build_s"] = time.perf_counter() - t
start = time.perf_counter()
index_type = sys.argv[7] if len(sys.argv) > 7 else "auto"
result = build_index([corpus], target, model=model, executor=executor, progress=Timer(),
                     options=BuildOptions(query_encoder=False, index_type=index_type))
end = time.perf_counter()
marks.append(("end", end))
stages = {}  # by the label's first word, but a second index's "Embedding ru passages" apart from "Embedding"
for (name, t0), (_, t1) in zip(marks, marks[1:]):
    key = name if name.startswith("Embedding ") else name.split(" ")[0]
    stages[key] = stages.get(key, 0.0) + t1 - t0
if sampler is not None:
    out["embedding_cpu_s"] = sampler.stop()
out.update({"total_s": end - start, "stages": stages, "passages": result.passages, "documents": result.documents,
            "embedded": result.embedded, "nodes": executor.nodes if executor else None,
            "worker_peak_rss_mib": ({k: v // 1024 for k, v in executor.worker_peak_rss_kib.items()}
                                    if executor else None),
            "pool_start_s": executor.pool_start_s if executor else None,
            "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "driver_peak_mib_by_kind": memory.stop(), "index_type": index_type,
            "ragkit_from": os.path.dirname(sys.modules["ragkit"].__file__)})
print(json.dumps(out))
"""


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_speed() -> float:
    """Seconds a fixed pure-Python loop takes here now (best of 3): how fast this shared machine's
    core runs at the moment, recorded beside each run to read its noise (not used in any ratio)."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        sum(i * i for i in range(2_000_000))
        best = min(best, time.perf_counter() - t)
    return round(best, 3)


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


def child_env(threads: int, backend: str = "torch") -> dict[str, str]:
    """A benchmark child's environment: offline, ``threads`` BLAS/torch threads, the passage backend."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "RAGKIT_PASSAGE_BACKEND": backend}


def run_config(engine: str, corpus: Path, work: Path, model: str, warm: bool, backend: str = "torch",
               round_: int = 0, index_type: str = "auto", prefix: tuple[str, ...] = (),
               env: dict[str, str] | None = None) -> dict:
    threads = int(engine.split("-")[1]) if engine.startswith("local") else 1
    env = {**child_env(threads, backend), **(env or {})}
    target = work / f"{engine}-{model}-{time.monotonic_ns()}"
    before, speed = load(), machine_speed()
    t = time.perf_counter()
    out = subprocess.run([*prefix, sys.executable, "-c", CHILD, engine, str(corpus), str(target), str(threads), model,
                          "warm" if warm else "cold", index_type], capture_output=True, text=True, env=env,
                         timeout=4 * 3600)
    wall = time.perf_counter() - t
    for folder in (target, Path(f"{target}-tiny")):  # big corpora leave big indexes: one at a time on disk
        shutil.rmtree(folder, ignore_errors=True)
    if out.returncode != 0:
        raise SystemExit(f"{engine} failed: {out.stderr[-2000:]}")
    result = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    result.update({"engine": engine, "model": model, "backend": backend, "process_s": round(wall, 2),
                   "load_before": before, "load_after": load(), "round": round_,
                   "loop_s_before": speed, "loop_s_after": machine_speed()})
    print(json.dumps(result), flush=True)
    return result


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, model in zip(axes, sorted({r["model"] for r in results})):
        rows = [r for r in results if r["model"] == model]
        names = [r["engine"] + (f" #{r['round'] + 1}" if r.get("round") else "") for r in rows]
        embed = [r["passages"] / max(r["stages"].get("Reading", 1e-9), 1e-9) for r in rows]
        whole = [r["passages"] / r["total_s"] for r in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], embed, 0.4, label="streamed stage (read, cut, embed)")
        ax.bar([i + 0.2 for i in x], whole, 0.4, label="whole build")
        ax.set_xticks(list(x), names)
        ax.set_ylabel("passages / s")
        ax.set_title(f"{model}, {rows[0]['passages']} passages")
        ax.legend()
    fig.suptitle(f"ragkit build: local vs Ray (2-CPU instance), load {results[0]['load_before'][0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _ratios(results: list[dict]) -> dict:
    """Ray against Ray and against the local path, each ratio within one round, then the median
    over rounds (with every round's value under ``rounds``)."""
    per_round: dict[str, list[float]] = {}
    for round_ in sorted({r.get("round", 0) for r in results}):
        by = {r["engine"]: r for r in results if r.get("round", 0) == round_}

        def rate(name: str, stage: str | None = None, less_pool: bool = False) -> float | None:
            r = by.get(name)
            if r is None:
                return None
            seconds = r["stages"].get(stage, 0.0) if stage else r["total_s"]
            if less_pool:  # the actors' start (a model load each), a fixed cost
                seconds -= (r.get("pool_start_s") or {}).get("build", 0.0)
            return r["passages"] / seconds if seconds > 0 else None

        s: dict[str, float | None] = {}
        for stage in ("Reading", None):
            key = "stream" if stage else "build"
            r1, r2, l1, l2 = rate("ray-1", stage), rate("ray-2", stage), rate("local-1", stage), rate("local-2", stage)
            s[f"{key}_ray2_over_ray1"] = round(r2 / r1, 3) if r1 and r2 else None
            s[f"{key}_ray1_overhead_vs_local1"] = round(1 - r1 / l1, 3) if r1 and l1 else None
            s[f"{key}_ray2_overhead_vs_local2"] = round(1 - r2 / l2, 3) if r2 and l2 else None
        p1, p2 = rate("ray-1", "Reading", True), rate("ray-2", "Reading", True)
        s["stream_less_pool_start_ray2_over_ray1"] = round(p2 / p1, 3) if p1 and p2 else None
        for n in (1, 2):  # the whole build less Ray's fixed cost (its pools' start, timed apart)
            ray_run, local_run = by.get(f"ray-{n}"), by.get(f"local-{n}")
            if ray_run and local_run and "tiny_build_s" in ray_run:
                rest = ray_run["total_s"] - ray_run["tiny_build_s"]
                s[f"build_ray{n}_overhead_vs_local{n}_less_startup"] = round(1 - local_run["total_s"] / rest, 3)
        for key, value in s.items():
            if value is not None:
                per_round.setdefault(key, []).append(value)
    out: dict = {key: round(statistics.median(values), 3) for key, values in per_round.items()}
    if any(len(values) > 1 for values in per_round.values()):
        out["rounds"] = per_round
    return out


def docs_table(out: dict) -> str:
    """The markdown table of docs/ray.md from a result (``--docs`` rewrites it there)."""
    rows = ["| model | engine | passages | whole build s | streamed stage s (read, cut, count, embed) "
            "| passages/s in it | the rest s | driver / worker peak RSS MiB | load before, after |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in out["results"]:
        st = r["stages"]
        workers = r.get("worker_peak_rss_mib") or {}
        rss = f"{r['driver_peak_rss_mib']} / {max(workers.values()) if workers else '-'}"
        stream_s = st.get("Reading", 0)
        engine = r["engine"] + (f" (round {r['round'] + 1})" if r.get("round") else "")
        rows.append(f"| {r['model']} | {engine} | {r['passages']} | {r['total_s']:.1f} | {stream_s:.1f} | "
                    f"{r['passages'] / max(stream_s, 1e-9):.0f} | {r['total_s'] - stream_s:.1f} | {rss} | "
                    f"{r['load_before'][0]}, {r['load_after'][0]} |")
    fixed = [r for r in out["results"] if "ray_init_s" in r]
    if fixed:
        rows.append("")
        rows.append("Ray's fixed start-up cost, apart: " + "; ".join(
            f"{r['engine']}: `ray.init` {r['ray_init_s']:.1f} s, a 5-document build {r['tiny_build_s']:.1f} s"
            for r in fixed if "tiny_build_s" in r) + " (one actor pool started).")
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
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times, interleaved; ratios are medians over rounds")
    parser.add_argument("--name", help="results file name (default: ray, or ray-onnx-int8)")
    args = parser.parse_args()
    engines = args.engines.split(",")
    results = []
    if args.resume:
        results = [json.loads(line) for line in args.resume.read_text(encoding="utf-8").splitlines()
                   if line.startswith("{") and '"engine"' in line]
    done = {(r["engine"], r["model"], r.get("round", 0)) for r in results}
    with tempfile.TemporaryDirectory(prefix="ragkit-ray-bench-") as tmp:
        work = Path(tmp)
        big = make_corpus(work, args.copies) if args.copies else None
        small = make_corpus(work, 1, args.minilm) if args.minilm else None
        for round_ in range(args.rounds):
            for corpus, model, backend in ((big, "navec-ru", "torch"), (small, "all-MiniLM-L6-v2", args.backend)):
                order = engines if round_ % 2 == 0 else engines[::-1]  # ABBA: a drift in the machine's speed cancels
                for engine in order if corpus is not None else ():
                    if (engine, model, round_) not in done:
                        results.append(run_config(engine, corpus, work, model, backend=backend, round_=round_,
                                                  warm=model == "navec-ru" and engine.startswith("ray")))
    summary = {model: _ratios([r for r in results if r["model"] == model])
               for model in sorted({r["model"] for r in results})}
    out = {"benchmark": "ray_bench", "env": environment(("ragkit", "numpy", "faiss-cpu", "torch", "ray", "pyarrow")),
           "args": vars(args), "results": results, "summary": summary}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.name or ("ray" if args.backend == "torch" else f"ray-{args.backend}")
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n",
                                          encoding="utf-8")
    plot(results, RESULTS / f"{name}.png")
    if args.docs and args.backend == "torch":
        write_docs(out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
