"""What every benchmark result records: versions, CPU, threads, time."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DATA = Path(os.environ.get("RAGKIT_DATA", ROOT.parent / "shared" / "data"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(packages: tuple[str, ...] = ("ragkit", "numpy", "faiss-cpu", "sentence-transformers", "torch", "bm25s", "PyStemmer")) -> dict:
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def update_readme_table(marker: str, table: str) -> None:
    """Replace the text between <!-- marker:start --> and <!-- marker:end --> in README.md."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table.rstrip()}\n{end}{tail}", encoding="utf-8")


def timed_run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one whole process (offline); a failure ends the benchmark with its stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", **(env or {})}
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return elapsed


def time_summary(times: list[float]) -> dict:
    """Median, minimum and every run, in seconds."""
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "runs": [round(t, 3) for t in times]}
