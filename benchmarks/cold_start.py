"""Whole-process timings of what users wait for: import, --help, a cold search.

    .venv/bin/python benchmarks/cold_start.py --index benchmarks/.cache/scifact--default [--runs 7] [--readme]

Each figure is the median wall time of --runs fresh processes (the first run is a warm-up
for the page cache and not counted). Writes benchmarks/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import RESULTS, environment, update_readme_table  # noqa: E402

BIN = Path(sys.executable).parent
TARGETS = {"import ragkit": 0.15, "ragkit --help": 0.3, "search (English query)": 0.5, "search (Russian query)": 0.5}


def timed(cmd: list[str], runs: int) -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - t
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
        if i:
            times.append(elapsed)
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--readme", action="store_true")
    args = ap.parse_args()
    manifest = json.loads((args.index / "manifest.json").read_text())
    ragkit = str(BIN / "ragkit")
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import ragkit": [sys.executable, "-c", "import ragkit"],
        "ragkit --help": [ragkit, "--help"],
        "search (English query)": [ragkit, "search", "what causes inflammation in the brain", "--index", str(args.index), "--json"],
        "search (Russian query)": [ragkit, "search", "технопарки Москвы", "--index", str(args.index), "--json"],
    }
    results = {name: timed(cmd, args.runs) for name, cmd in cases.items()}
    for name, r in results.items():
        print(f"{name:<26} median {r['median_s']:.3f} s  min {r['min_s']:.3f} s", file=sys.stderr)
    load = os.getloadavg()
    payload = {
        "environment": environment(("ragkit", "numpy", "faiss-cpu", "onnxruntime", "typer")),
        "load_average": [round(x, 2) for x in load],
        "index": {"path": str(args.index), "passages": manifest["counts"]["passages"],
                  "model": manifest["model"]["name"], "query_encoder": bool(manifest.get("query_encoder"))},
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cold_start.json").write_text(json.dumps(payload, indent=2) + "\n")
    rows = ["| what (whole process) | median | target |", "| --- | --- | --- |"]
    for name, r in results.items():
        rows.append(f"| {name} | {r['median_s']:.2f} s | {TARGETS.get(name, '')}{' s' if name in TARGETS else ''} |")
    rows.append(f"\n{manifest['counts']['passages']} passages, {manifest['model']['name']}; load average during "
                f"the run {load[0]:.1f} on {os.cpu_count()} cores.")
    print("\n".join(rows))
    if args.readme:
        update_readme_table("cold", "\n".join(rows))


if __name__ == "__main__":
    main()
