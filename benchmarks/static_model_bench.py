"""navec-ru (ragkit's static Russian model) beside all-MiniLM-L6-v2: quality, speed, build cost.

    .venv/bin/python benchmarks/static_model_bench.py                  # the default run, ~5 min
    .venv/bin/python benchmarks/static_model_bench.py --ablation       # + how each recipe step helps
    .venv/bin/python benchmarks/static_model_bench.py --sets xquad/ru news-ru/ng-title2doc \\
        --models navec-ru                                              # news-ru too (navec only)

Quality: nDCG@10 at document level (each document scored by its best passage) in dense mode,
with lexical and hybrid beside it, from indexes built by ragkit with each model's own window.
Speed: passages per second through ``Embedder.embed_passages`` (ragkit's path: length-sorted
batches of 32, L2 normalisation) on the passages ragkit cuts from the first news-ru articles
with each model's own window (navec-ru: up to 256 words, MiniLM: 254 WordPiece tokens, about 40
Russian words), wall clock and CPU time, best of three; words per second compare the two on
equal text. The model is built into a fresh cache first (build time, folder size).

The machine is shared: timings are noisy; the load average is recorded beside them.
Writes benchmarks/results/static_model.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, environment  # noqa: E402

MODELS = ("navec-ru", "all-minilm-l6-v2")
SETS = ("xquad/ru", "xquad/en")
ARTICLES = "news-ru/ng-articles.jsonl.gz"
ABLATION = {  # name -> build_static_model keyword arguments
    "plain mean, all words": {"sif_a": None, "whiten": False, "stems": False, "max_words": None},
    "+ SIF": {"whiten": False, "stems": False, "max_words": None},
    "+ SIF + whitening": {"stems": False, "max_words": None},
    "+ SIF + whitening + stem back-off": {"max_words": None},
    "navec-ru: the same, 100k words": {},
    "navec-ru without stem back-off": {"stems": False},
    "navec-ru, float32 weights": {"dtype": "float32"},
}


def load() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]


def build_cost(cache: Path) -> dict:
    """Build navec-ru cold into ``cache`` and load it: seconds, folder size."""
    from ragkit.encoders.static import StaticEncoder
    from ragkit.encoders.static_build import ensure_static_model

    os.environ["RAGKIT_CACHE"] = str(cache)
    t = time.perf_counter()
    folder = ensure_static_model()
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    StaticEncoder(folder)
    encoder_load_s = time.perf_counter() - t
    from sentence_transformers import (
        SentenceTransformer,  # imported once, before timing the load
    )

    t = time.perf_counter()
    SentenceTransformer(str(folder), device="cpu")
    load_s = time.perf_counter() - t
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
    info = json.loads((folder / "ragkit_static_model.json").read_text(encoding="utf-8"))
    return {
        "build_seconds": round(build_s, 1),
        "load_seconds": {"StaticEncoder": round(encoder_load_s, 2), "SentenceTransformer": round(load_s, 2)},
        "folder_mb": round(sum(files.values()) / 2**20, 1),
        "files_mb": {k: round(v / 2**20, 2) for k, v in files.items()},
        "vocabulary": info["counts"],
        "load_average": load(),
    }


def quality(model: str, sets: list[str], workdir: Path) -> dict:
    import ragkit

    out = {}
    for name in sets:
        if not (DATA / name).exists():
            print(f"skip {name}: {DATA / name} is absent", file=sys.stderr)
            continue
        data = ragkit.load_beir(DATA / name)
        path = workdir / f"{name.replace('/', '_')}--{model}"
        t = time.perf_counter()
        built = ragkit.build_index([data.corpus], path, model=model)
        entry: dict = {"passages": built.passages, "index_seconds": round(time.perf_counter() - t, 1)}
        with ragkit.Index.open(path) as idx:
            entry["model"] = idx.manifest["model"]["name"]
            for mode in ("dense", "lexical", "hybrid"):
                entry[mode] = ragkit.evaluate(idx, data, mode=mode).to_dict()
        shutil.rmtree(path, ignore_errors=True)
        out[name] = entry
        print(f"{model:<18} {name:<22} dense {entry['dense']['ndcg@10']:.4f}  lexical "
              f"{entry['lexical']['ndcg@10']:.4f}  hybrid {entry['hybrid']['ndcg@10']:.4f}", file=sys.stderr)
    return out


def passages_for(embedder, articles: list[dict]) -> list[str]:
    """The texts ragkit embeds for these articles: title line + passage, the model's window."""
    from ragkit.ingest.chunking import Chunker

    counter = embedder.token_counter()
    budget = embedder.max_tokens - counter.special_tokens
    chunker = Chunker(counter, budget)
    texts = []
    for a in articles:
        title = (a.get("title") or "").strip()
        room = budget - (counter.count([title])[0] + 1 if title else 0)
        for s, e in chunker.spans(a["text"], room):
            texts.append(f"{title}\n{a['text'][s:e]}" if title else a["text"][s:e])
    return texts


def speed(model: str, articles: list[dict], limit: int) -> dict:
    from ragkit.encoders.embedder import Embedder

    emb = Embedder(model)
    texts = passages_for(emb, articles)[:limit]
    emb.embed_passages(texts[:64])  # warm-up: lazy initialisations, kernel selection
    best_wall = best_cpu = float("inf")
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        emb.embed_passages(texts)
        best_wall = min(best_wall, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    words = sum(len(t.split()) for t in texts)
    tokens = sum(emb.token_counter().count(texts))
    n = len(texts)
    result = {
        "passages": n,
        "mean_words": round(words / n, 1),
        "mean_tokens": round(tokens / n, 1),
        "passages_per_s": round(n / best_wall, 1),
        "passages_per_cpu_s": round(n / best_cpu, 1),
        "words_per_s": round(words / best_wall),
        "load_average": load(),
    }
    print(f"{model:<18} speed: {result['passages_per_s']:.0f} passages/s wall, {result['passages_per_cpu_s']:.0f} "
          f"per CPU-second ({n} passages of {result['mean_words']} words; {result['words_per_s']} words/s)",
          file=sys.stderr)
    if type(emb.model).__name__ == "StaticEncoder":
        # The same folder through plain sentence-transformers (StaticEmbedding, torch).
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(emb._load_path, device="cpu")
        st.encode(texts[:64], batch_size=32)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            st.encode(texts, batch_size=32, convert_to_numpy=True)
            best = min(best, time.perf_counter() - t)
        result["sentence_transformers_passages_per_s"] = round(n / best, 1)
        print(f"{model:<18} the same through SentenceTransformer.encode: {n / best:.0f} passages/s", file=sys.stderr)
    return result


def ablation(workdir: Path, sets: list[str]) -> dict:
    """Dense nDCG@10 of recipe variants (each built into ``workdir``, loaded by path)."""
    import ragkit
    from ragkit.encoders.static_build import build_static_model

    out = {}
    for label, kwargs in ABLATION.items():
        folder = workdir / f"variant-{len(out)}"
        t = time.perf_counter()
        build_static_model(folder, **kwargs)
        entry: dict = {"params": kwargs, "build_seconds": round(time.perf_counter() - t, 1),
                       "folder_mb": round(sum(p.stat().st_size for p in folder.iterdir()) / 2**20, 1)}
        for name in sets:
            data = ragkit.load_beir(DATA / name)
            path = workdir / "index"
            ragkit.build_index([data.corpus], path, model=str(folder))
            with ragkit.Index.open(path) as idx:
                entry[name] = ragkit.evaluate(idx, data, mode="dense").ndcg10
            shutil.rmtree(path)
        shutil.rmtree(folder)
        out[label] = entry
        print(f"ablation {label:<40} " + "  ".join(f"{k} {entry[k]:.4f}" for k in sets), file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--articles", type=int, default=400, help="news-ru articles cut into passages for speed")
    ap.add_argument("--ablation", action="store_true", help="also measure recipe variants (dense, xquad/ru)")
    ap.add_argument("--out", type=Path, default=RESULTS / "static_model.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory(prefix="ragkit-static-bench-") as tmp:
        work = Path(tmp)
        packages = ("ragkit", "numpy", "sentence-transformers", "torch", "tokenizers", "safetensors", "natasha", "navec",
                    "faiss-cpu", "bm25s", "PyStemmer")
        result: dict = {"environment": environment(packages), "command": " ".join(["benchmarks/static_model_bench.py", *sys.argv[1:]])}
        import torch

        result["environment"]["torch_threads"] = torch.get_num_threads()
        result["environment"]["TOKENIZERS_PARALLELISM"] = os.environ.get("TOKENIZERS_PARALLELISM")
        t0 = time.perf_counter()
        result["build"] = build_cost(work / "cache")  # RAGKIT_CACHE points here from now on
        print(f"navec-ru built in {result['build']['build_seconds']} s, {result['build']['folder_mb']} MB",
              file=sys.stderr)
        if not (DATA / ARTICLES).is_file():
            raise SystemExit(f"{DATA / ARTICLES} is absent (set RAGKIT_DATA to the shared data folder)")
        with gzip.open(DATA / ARTICLES, "rt", encoding="utf-8") as fh:
            articles = [json.loads(line) for _, line in zip(range(args.articles), fh)]
        result["speed"] = {}
        result["quality"] = {}
        for model in args.models:
            limit = 100_000 if model.startswith("navec") else 300  # MiniLM: ~20 passages/s
            result["speed"][model] = speed(model, articles, limit)
            result["quality"][model] = quality(model, args.sets, work)
        if args.ablation:
            result["ablation"] = ablation(work, ["xquad/ru"])
        result["seconds"] = round(time.perf_counter() - t0)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out} ({result['seconds']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
