"""int8 passages in batches of 32 against one text a batch: speed and agreement with float32.

    RAGKIT_DATA=../shared/data .venv/bin/python benchmarks/int8_batching.py [--passages 600] [--rounds 2]

The int8 encoder quantises activations with one scale per batch, so a passage's vector moved
with its batch-mates. ragkit now embeds int8 passages one text a batch
(``OnnxEncoder.batch_limit``). This measures both ways on the same passages in interleaved
rounds, on two sets: SciFact abstracts (English, ragkit's MiniLM window of 256 tokens) and NG
news (Russian, which MiniLM cuts into many short passages). Reports passages/s, the cosine of
each way to the float32 (torch) vectors, and the lowest cosine between the two batchings.
Writes benchmarks/results/int8_batching.json and .png.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _env import DATA, RESULTS, environment  # noqa: E402

SETS = {"scifact": DATA / "scifact" / "corpus.jsonl", "ng-news": DATA / "news-ru" / "ng-articles.jsonl.gz"}


class Batched:
    """The int8 encoder with its batch limit lifted: batches of ``batch_size`` as before."""

    def __init__(self, encoder) -> None:  # noqa: ANN001
        self._encoder = encoder

    def __getattr__(self, name: str):  # noqa: ANN204
        if name == "batch_limit":
            return None
        return getattr(self._encoder, name)


def passages(path: Path, n: int, embedder) -> list[str]:  # noqa: ANN001
    from ragkit.build import stages
    from ragkit.build.options import BuildOptions
    from ragkit.documents import Document
    from ragkit.progress import NoProgress

    opener = gzip.open if path.name.endswith(".gz") else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            docs.append(Document(id=str(record["_id"]), text=record["text"], title=record.get("title") or ""))
            _, texts, _, _ = stages.chunk(docs[-1:], embedder, BuildOptions(), NoProgress())
            n -= len(texts)
            if n <= 0:
                break
    return stages.chunk(docs, embedder, BuildOptions(), NoProgress())[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from ragkit.encoders.base import embed
    from ragkit.encoders.embedder import Embedder

    int8 = Embedder(backend="onnx-int8")
    torch = Embedder(backend="torch")
    encoder = int8.passage_encoder()
    ways = {"batches of 32": Batched(encoder), "one text a batch": encoder}
    out = {"environment": environment(), "passages": args.passages, "rounds": args.rounds,
           "sessions": encoder.workers, "sets": {}}
    for name, path in SETS.items():
        if not path.exists():
            print(f"{name}: {path} is absent, skipped", file=sys.stderr)
            continue
        texts = passages(path, args.passages, int8)
        reference = torch.embed_passages(texts)
        embed(encoder, texts[:16])  # warm the sessions
        speeds: dict[str, list[float]] = {w: [] for w in ways}
        vectors: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for way, enc in ways.items():
                t = time.perf_counter()
                vectors[way] = embed(enc, texts, int8.passage_prompt, batch_size=32)
                speeds[way].append(len(texts) / (time.perf_counter() - t))
        result = {"passages": len(texts), "mean_chars": round(statistics.mean(len(t) for t in texts), 1)}
        for way in ways:
            cos = (vectors[way] * reference).sum(axis=1)
            result[way] = {"passages_per_s": [round(s, 1) for s in speeds[way]],
                           "median_passages_per_s": round(statistics.median(speeds[way]), 1),
                           "cosine_to_float32_mean": round(float(cos.mean()), 5),
                           "cosine_to_float32_min": round(float(cos.min()), 5)}
        between = (vectors["batches of 32"] * vectors["one text a batch"]).sum(axis=1)
        result["cosine_between_batchings_min"] = round(float(between.min()), 5)
        result["speedup"] = round(result["one text a batch"]["median_passages_per_s"]
                                  / result["batches of 32"]["median_passages_per_s"], 2)
        out["sets"][name] = result
        print(name, json.dumps(result), file=sys.stderr)
    out["load_average_after"] = environment()["load_average"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8_batching.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    plot(out)


def plot(out: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(out["sets"])
    ways = ["batches of 32", "one text a batch"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.38
    for i, way in enumerate(ways):
        values = [out["sets"][n][way]["median_passages_per_s"] for n in names]
        ax.bar([x + (i - 0.5) * width for x in range(len(names))], values, width, label=way)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("passages/s (median of rounds)")
    ax.set_title(f"all-MiniLM-L6-v2 int8, {out['sessions']} sessions, {out['environment']['cpu_count']} cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "int8_batching.png", dpi=120)


if __name__ == "__main__":
    main()
