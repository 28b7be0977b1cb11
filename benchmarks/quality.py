"""Search quality on the shared BEIR sets: lexical, dense and hybrid side by side.

    .venv/bin/python benchmarks/quality.py                     # all sets, default settings
    .venv/bin/python benchmarks/quality.py xquad/ru --sweep    # also sweep the fusion weight

Indexes are built once per (data set, model) into benchmarks/.cache/ and reused. Writes
benchmarks/results/quality.json and, with --readme, the README's quality table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, ROOT, environment, update_readme_table  # noqa: E402

import ragkit  # noqa: E402
from ragkit.search.fusion import FusionConfig  # noqa: E402

SETS = ("xquad/ru", "xquad/en", "scifact", "news-ru/ng-title2doc")
TARGETS = {"xquad/ru": 0.965, "xquad/en": 0.985, "scifact": 0.72, "news-ru/ng-title2doc": 0.80}
WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)


def index_for(name: str, model: str | None, cache: Path) -> Path:
    """The cached index of the set's corpus (sets that share a corpus file share the index)."""
    data = ragkit.load_beir(DATA / name)
    tag = (model or "default").replace("/", "_")
    digest = hashlib.sha256(data.corpus.read_bytes()).hexdigest()[:12]
    path = cache / f"corpus-{digest}--{tag}"
    if not (path / "manifest.json").is_file():
        t = time.perf_counter()
        res = ragkit.build_index([data.corpus], path, model=model)
        print(f"built {path.name}: {res.passages} passages in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", default=list(SETS))
    ap.add_argument("--model", default=None)
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    ap.add_argument("--sweep", action="store_true", help="also sweep dense weights (convex and rrf)")
    ap.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    ap.add_argument("--readme", action="store_true", help="update the README table")
    args = ap.parse_args()

    results: dict[str, dict] = {}
    for name in args.sets:
        if not (DATA / name).exists():
            print(f"skip {name}: {DATA / name} is absent", file=sys.stderr)
            continue
        data = ragkit.load_beir(DATA / name)
        with ragkit.Index.open(index_for(name, args.model, args.cache)) as idx:
            entry: dict = {"model": idx.manifest["model"]["name"], "passages": len(idx), "modes": {}}
            for mode in ("lexical", "dense", "hybrid"):
                t = time.perf_counter()
                entry["modes"][mode] = ragkit.evaluate(idx, data, mode=mode).to_dict()
                entry["modes"][mode]["seconds"] = round(time.perf_counter() - t, 2)
            if args.sweep:
                entry["sweep"] = {}
                for method in ("convex", "rrf"):
                    for w in WEIGHTS:
                        cfg = FusionConfig(method=method, dense_weight=w, foreign_dense_weight=w)
                        entry["sweep"][f"{method}@{w}"] = ragkit.evaluate(idx, data, mode="hybrid", fusion=cfg).ndcg10
        results[name] = entry
        m = entry["modes"]
        print(f"{name:<22} lexical {m['lexical']['ndcg@10']:.4f}  dense {m['dense']['ndcg@10']:.4f}  "
              f"hybrid {m['hybrid']['ndcg@10']:.4f}", file=sys.stderr)
        if args.sweep:
            print("  " + "  ".join(f"{k}={v:.4f}" for k, v in entry["sweep"].items()), file=sys.stderr)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    merged = {**previous.get("sets", {}), **results}
    args.out.write_text(json.dumps({"environment": environment(), "sets": merged}, indent=2) + "\n")
    table = ["| data set | model | lexical | dense | hybrid (default) | target |", "| --- | --- | --- | --- | --- | --- |"]
    for name in SETS:
        if name in merged:
            m = merged[name]["modes"]
            table.append(
                f"| {name} | {merged[name]['model'].split('/')[-1]} | {m['lexical']['ndcg@10']:.4f} | "
                f"{m['dense']['ndcg@10']:.4f} | {m['hybrid']['ndcg@10']:.4f} | {TARGETS[name]} |"
            )
    print("\n".join(table))
    if args.readme:
        update_readme_table("quality", "\n".join(table))


if __name__ == "__main__":
    main()
