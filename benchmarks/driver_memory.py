"""Driver memory against corpus size: the peak RSS of the process that runs ``build_index``.

    .venv/bin/python benchmarks/driver_memory.py [--copies 1,2,4] [--engines local-2,ray-2] [--label current]
        [--index-type auto] [--budget-mib 1024] [--cgroup]

Corpus: the Russian news articles of news-ru/ng-articles.jsonl.gz, ``--copies`` times (about
8,900 navec-ru passages a copy; ids suffixed), built with navec-ru, whose embedding is cheap, so
the run measures what the build keeps rather than what a model costs. Each configuration runs
in a fresh subprocess (``ray_bench.run_config``) into a fresh folder. A line through each
engine's (passages, driver peak) points gives what the driver keeps per passage (the slope)
and its fixed footprint (the intercept): a driver that streams has a slope near zero. Worker
peaks are recorded beside. ``--label`` names the code measured (run it once with
``PYTHONPATH`` at an older checkout as ``--label previous_code``); the labels of one file
are compared in one table. Each run also samples the driver's resident memory by kind five times
a second (``driver_peak_mib_by_kind``: RssAnon, what must fit in RAM; RssFile and RssShmem,
mapped files and Ray's object store, pages the kernel can drop and read again). ``--index-type``
is the build's (``ivf-sq8`` keeps the FAISS index itself small: 8-bit codes, not float32).
``--budget-mib`` records, for each run, whether its corpus file was larger than that budget and
its driver peak stayed under it; with ``--cgroup`` (root, a cgroup v1 memory controller) the
budget is enforced: each driver runs alone in a memory cgroup of that size, whose page cache
the kernel reclaims and whose process it kills if what must stay in memory does not fit. Ray's
daemons and workers then run outside it (a cluster started with ``ray start --head`` before
each run and joined by address), so the limit is the driver's alone. Writes
benchmarks/results/driver_memory.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import RESULTS, environment  # noqa: E402
from ray_bench import child_env, make_corpus, run_config  # noqa: E402

OUT = RESULTS / "driver_memory.json"
CGROUPS = Path("/sys/fs/cgroup/memory")


class Cgroup:
    """A cgroup v1 memory cgroup of ``mib`` MiB (swap counted too) that a command runs in."""

    def __init__(self, mib: int) -> None:
        self.path = CGROUPS / f"ragkit-driver-memory-{os.getpid()}"
        self.path.mkdir()
        limit = str(mib << 20)
        (self.path / "memory.limit_in_bytes").write_text(limit)
        if (self.path / "memory.memsw.limit_in_bytes").exists():
            (self.path / "memory.memsw.limit_in_bytes").write_text(limit)

    def prefix(self) -> tuple[str, ...]:
        """Runs what follows in the cgroup: the shell joins it, then becomes the command."""
        return ("sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh")

    def reset(self) -> None:
        (self.path / "memory.max_usage_in_bytes").write_text("0")

    def report(self) -> dict:
        oom = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
        return {"peak_charged_mib": int((self.path / "memory.max_usage_in_bytes").read_text()) >> 20,
                "limit_hits": int((self.path / "memory.failcnt").read_text()), "oom_kills": int(oom.get("oom_kill", 0))}

    def close(self) -> None:
        self.path.rmdir()


def ray_cluster(start: bool) -> None:
    """``ray start --head`` (2 CPUs) or ``ray stop``: Ray's processes outside the driver's cgroup."""
    ray = str(Path(sys.executable).with_name("ray"))
    command = ([ray, "start", "--head", "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats"]
               if start else [ray, "stop", "--force"])
    # the workers inherit this environment: one BLAS thread each, as in a cluster ray.init starts
    subprocess.run(command, check=start, capture_output=True, env={**child_env(1), "RAY_BACKEND_LOG_LEVEL": "fatal"})


def fit(points: list[tuple[int, float]]) -> dict[str, float]:
    """Least-squares line of peak MiB over passages: KiB a passage and MiB at none."""
    import numpy as np

    x = np.array([p for p, _ in points], dtype=np.float64)
    y = np.array([m for _, m in points], dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1) if len(points) > 1 else (0.0, float(y[0]))
    return {"kib_per_passage": round(float(slope) * 1024, 3), "fixed_mib": round(float(intercept), 1)}


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, rows in runs.items():
        for engine in sorted({r["engine"] for r in rows}):
            mine = sorted((r["passages"], r["driver_peak_rss_mib"]) for r in rows if r["engine"] == engine)
            ax.plot([p for p, _ in mine], [m for _, m in mine], marker="o", label=f"{engine} ({label})")
    ax.set_xlabel("passages (navec-ru)")
    ax.set_ylabel("driver peak RSS, MiB")
    ax.set_title("ragkit build: driver memory against corpus size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", default="1,2,4", help="corpus sizes, in copies of the news corpus")
    parser.add_argument("--engines", default="local-2,ray-2")
    parser.add_argument("--label", default="current", help="the code measured (kept apart in the results)")
    parser.add_argument("--index-type", default="auto")
    parser.add_argument("--budget-mib", type=int, default=0, help="a driver memory budget to check each run against")
    parser.add_argument("--cgroup", action="store_true", help="enforce --budget-mib with a memory cgroup (root)")
    args = parser.parse_args()
    if args.cgroup and not args.budget_mib:
        raise SystemExit("--cgroup needs --budget-mib")
    cgroup = Cgroup(args.budget_mib) if args.cgroup else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="ragkit-driver-memory-") as tmp:
        work = Path(tmp)
        for copies in [int(c) for c in args.copies.split(",")]:
            corpus = make_corpus(work, copies)
            for engine in args.engines.split(","):
                joined = cgroup is not None and engine.startswith("ray")
                if cgroup is not None:
                    cgroup.reset()
                if joined:
                    ray_cluster(start=True)
                try:
                    result = run_config(engine, corpus, work, "navec-ru", warm=engine.startswith("ray"),
                                        index_type=args.index_type, prefix=cgroup.prefix() if cgroup else (),
                                        env={"RAGKIT_BENCH_RAY_ADDRESS": "auto"} if joined else None)
                except SystemExit as exc:  # killed at the budget: recorded, the next run goes on
                    if cgroup is None:
                        raise
                    result = {"engine": engine, "failed": str(exc)[-600:]}
                finally:
                    if joined:
                        ray_cluster(start=False)
                result.update({"copies": copies, "corpus_bytes": corpus.stat().st_size})
                if cgroup is not None:
                    result["cgroup"] = cgroup.report()
                if args.budget_mib:
                    result["budget"] = {"mib": args.budget_mib, "enforced": cgroup is not None,
                                        "corpus_larger": corpus.stat().st_size > args.budget_mib << 20,
                                        "completed": "failed" not in result,
                                        "driver_peak_rss_under": result.get("driver_peak_rss_mib", 1 << 40)
                                        <= args.budget_mib}
                rows.append(result)
            corpus.unlink()
    if cgroup is not None:
        cgroup.close()
    previous = json.loads(OUT.read_text(encoding="utf-8")) if OUT.exists() else {}
    runs = {**previous.get("runs", {}), args.label: rows}
    done = {label: [r for r in got if "failed" not in r] for label, got in runs.items()}
    fits = {label: {engine: fit([(r["passages"], r["driver_peak_rss_mib"]) for r in got if r["engine"] == engine])
                    for engine in sorted({r["engine"] for r in got})} for label, got in done.items() if got}
    out = {"benchmark": "driver_memory", "env": environment(("ragkit", "numpy", "faiss-cpu", "ray", "pyarrow")),
           "args": vars(args), "runs": runs, "fits": fits}
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    plot(done, OUT.with_suffix(".png"))
    print(json.dumps(fits, indent=2))


if __name__ == "__main__":
    main()
