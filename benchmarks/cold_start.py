"""Whole-process timings of what users wait for: import, --help, a cold search.

    .venv/bin/python benchmarks/cold_start.py --index benchmarks/.cache/scifact--default [--runs 7] [--readme]
    .venv/bin/python benchmarks/cold_start.py --index DIR --against OLD_CHECKOUT   # ratio to another tree

Each figure is the median wall time of --runs fresh processes (the first run is a warm-up
for the page cache and not counted). With ``--against``, each case also runs with another
checkout's ``ragkit`` package first on ``PYTHONPATH`` (same interpreter and packages), the two
trees taking turns run by run, and the ratio this tree / other tree is reported: on a noisy
machine only ratios measured in one run mean anything. Writes benchmarks/results/cold_start.json
(``cold_start_against.json`` with ``--against``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import RESULTS, environment, time_summary, timed_run, update_readme_table  # noqa: E402

BIN = Path(sys.executable).parent
TARGETS = {"import ragkit": 0.15, "ragkit --help": 0.3, "search (English query)": 0.5, "search (Russian query)": 0.5}


def timed(cmd: list[str], runs: int, trees: tuple[Path | None, ...] = (None,)) -> list[dict[str, float]]:
    """Median of ``runs`` processes per tree, the trees taking turns (a warm-up round first)."""
    times: list[list[float]] = [[] for _ in trees]
    for i in range(runs + 1):
        for slot, tree in enumerate(trees):
            elapsed = timed_run(cmd, {"PYTHONPATH": str(tree)} if tree is not None else None)
            if i:
                times[slot].append(elapsed)
    return [time_summary(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--readme", action="store_true")
    ap.add_argument("--against", type=Path, help="another checkout to compare with, run by run")
    args = ap.parse_args()
    if args.against is not None:
        return compare(args)
    manifest = json.loads((args.index / "manifest.json").read_text())
    ragkit = str(BIN / "ragkit")
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        **_cases([ragkit], args.index),
    }
    results = {name: timed(cmd, args.runs)[0] for name, cmd in cases.items()}
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


def _cases(ragkit: list[str], index: Path) -> dict[str, list[str]]:
    return {
        "import ragkit": [sys.executable, "-c", "import ragkit"],
        "ragkit --help": [*ragkit, "--help"],
        "search (English query)": [*ragkit, "search", "what causes inflammation in the brain", "--index", str(index), "--json"],
        "search (Russian query)": [*ragkit, "search", "технопарки Москвы", "--index", str(index), "--json"],
    }


def compare(args: argparse.Namespace) -> None:
    """This tree against ``args.against``, case by case, in one run (``python -m ragkit`` for both)."""
    here = Path(__file__).resolve().parent.parent
    trees = (here, args.against.resolve())
    rows = ["| what (whole process) | this tree | other tree | ratio |", "| --- | --- | --- | --- |"]
    results = {}
    for name, cmd in _cases([sys.executable, "-m", "ragkit"], args.index).items():
        ours, theirs = timed(cmd, args.runs, trees)
        ratio = ours["median_s"] / theirs["median_s"]
        results[name] = {"this": ours, "other": theirs, "ratio": round(ratio, 3)}
        rows.append(f"| {name} | {ours['median_s']:.3f} s | {theirs['median_s']:.3f} s | {ratio:.2f} |")
        print(rows[-1], file=sys.stderr)
    load = os.getloadavg()
    payload = {"environment": environment(("ragkit", "numpy", "faiss-cpu", "onnxruntime", "typer")),
               "load_average": [round(x, 2) for x in load], "this": str(here), "other": str(trees[1]),
               "index": str(args.index), "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cold_start_against.json").write_text(json.dumps(payload, indent=2) + "\n")
    print("\n".join(rows) + f"\n\nload average {load[0]:.1f} on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
