"""What two workers can reach on this machine at all: two independent one-thread encoders at once.

    .venv/bin/python benchmarks/scaling_ceiling.py [--passages 240] [--rounds 3] [--model all-MiniLM-L6-v2]

Ray's scaling target (#13: 2 workers reach 1.8x one on the embedding stage) assumes the machine
scales. This measures the machine, with no Ray and no ragkit pipeline in between: a round runs
one process that embeds ``--passages`` NG news passages with ragkit's passage encoder on one
thread (``OMP_NUM_THREADS=1``, torch, the encoder a Ray actor rebuilds), then two such processes
at the same time. Each process loads and warms its model on one batch, waits until all are
ready, then times only its own encoding. The ceiling of a round is the two processes' passages
per second together over the lone process's. Rounds alternate, so a change in the machine's
load shows as a spread.
Writes benchmarks/results/scaling_ceiling.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, environment  # noqa: E402
from ray_bench import CORPUS, child_env  # noqa: E402

OUT = RESULTS / "scaling_ceiling.json"

CHILD = r"""
import json, sys, time
from ragkit.encoders.embedder import Embedder
texts = json.loads(open(sys.argv[2], encoding="utf-8").read())
embedder = Embedder(sys.argv[1])
embedder.embed_passages(texts[:32])
print("ready", flush=True)
sys.stdin.readline()  # all processes start encoding together
t = time.perf_counter()
embedder.embed_passages(texts)
print(json.dumps({"seconds": time.perf_counter() - t, "passages": len(texts)}))
"""


def passages(n: int, path: Path) -> Path:
    """The first ``n`` NG articles, cut to about one passage each (the encoder truncates at its window)."""
    source = DATA / CORPUS
    if not source.exists():
        raise SystemExit(f"needs {source} (set RAGKIT_DATA to the shared data folder)")
    texts = []
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        for line in fh:
            texts.append(json.loads(line)["text"][:1500])
            if len(texts) == n:
                break
    path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    return path


def run(model: str, texts: Path, copies: int) -> list[dict]:
    """``copies`` processes started together; each one's encoding seconds and passages."""
    env = child_env(1)
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, model, str(texts)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
             for _ in range(copies)]
    for proc in procs:  # every model loaded and warmed before any encoding starts
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("an encoder process failed before it was ready (run the child by hand to see why)")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise SystemExit("an encoder process failed while encoding")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="ragkit-scaling-ceiling-") as tmp:
        texts = passages(args.passages, Path(tmp) / "texts.json")
        for _ in range(args.rounds):
            alone = run(args.model, texts, 1)[0]
            pair = run(args.model, texts, 2)
            one = alone["passages"] / alone["seconds"]
            two = sum(p["passages"] / p["seconds"] for p in pair)
            rounds.append({"one_process_per_s": round(one, 2),
                           "two_processes_per_s": [round(p["passages"] / p["seconds"], 2) for p in pair],
                           "ceiling": round(two / one, 3), "load_average": [round(x, 2) for x in os.getloadavg()]})
            print(json.dumps(rounds[-1]), flush=True)
    ceilings = [r["ceiling"] for r in rounds]
    summary = {"median": statistics.median(ceilings), "min": min(ceilings), "max": max(ceilings)}
    OUT.write_text(json.dumps({"benchmark": "scaling_ceiling", "env": environment(), "args": vars(args),
                               "rounds": rounds, "ceiling": summary}, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
