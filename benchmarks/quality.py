"""Search quality on the six shared BEIR sets: anchor, lexical, dense and hybrid side by side.

    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/anchor.py       # BM25 anchors
    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/selection.py    # the protocol
    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/quality.py --readme

Every figure goes through ``ragkit.evaluate`` with the default settings (document-level nDCG@10,
a document scored by its best passage). Also: the margin over the set's plain BM25 anchor
(benchmarks/results/anchor.json), whether hybrid is >= max(own lexical, own dense), the
leave-one-set-out figure of the selection protocol (benchmarks/results/selection.json), and the
effect of collapsing reprints (one document per duplicate group) on every metric, scored with
the qrels as they are (a relevant reprint hidden behind its twin counts as missed).

Indexes are built once per (corpus content, model) into benchmarks/.cache/ and reused.
Writes benchmarks/results/quality.json and, with --readme, the README's quality table.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, ROOT, environment, update_readme_table  # noqa: E402

import ragkit  # noqa: E402
from ragkit.search.fusion import FusionConfig  # noqa: E402

SETS = ("xquad/ru", "xquad/en", "scifact", "news-ru/ng-title2doc", "news-ru/ng-summary2doc", "news-ru/ng-kw2doc")
TARGETS = {"xquad/ru": 0.965, "xquad/en": 0.985, "news-ru/ng-title2doc": 0.80}  # the moonshots
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def index_for(name: str, model: str | None, cache: Path, rebuild: bool = False) -> Path:
    """The cached index of the set's corpus (sets whose corpora hold the same bytes share it)."""
    data = ragkit.load_beir(DATA / name)
    tag = (model or "default").replace("/", "_")
    raw = data.corpus.read_bytes()
    digest = hashlib.sha256(gzip.decompress(raw) if data.corpus.suffix == ".gz" else raw).hexdigest()[:12]
    path = cache / f"corpus-{digest}--{tag}"
    if rebuild or not (path / "manifest.json").is_file():
        # ``rebuild`` after index-time defaults changed; passages whose text did not change are
        # not embedded again (the folder's embeddings.sqlite).
        t = time.perf_counter()
        res = ragkit.build_index([data.corpus], path, model=model, force=True)
        print(f"built {path.name}: {res.passages} passages in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def _same_corpus(a: str, b: str) -> bool:
    return a.startswith("news-ru/ng-") and b.startswith("news-ru/ng-")


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def measure(name: str, model: str | None, cache: Path, rebuild: bool) -> dict:
    data = ragkit.load_beir(DATA / name)
    with ragkit.Index.open(index_for(name, model, cache, rebuild)) as idx:
        entry: dict = {"model": idx.manifest["model"]["name"], "passages": len(idx),
                       "lexical_index": {k: idx.manifest["lexical"].get(k) for k in ("k1", "b", "method")},
                       "fusion": {k: v for k, v in vars(FusionConfig()).items()}, "modes": {}}
        for mode in ("lexical", "dense", "hybrid"):
            t = time.perf_counter()
            entry["modes"][mode] = ragkit.evaluate(idx, data, mode=mode).to_dict()
            entry["modes"][mode]["seconds"] = round(time.perf_counter() - t, 2)
        collapsed = ragkit.evaluate(idx, data, mode="hybrid", collapse=True).to_dict()
        groups = idx.duplicate_groups()
        entry["duplicate_groups"] = 0 if groups is None else len(groups[1])
        entry["hybrid_collapsed"] = collapsed
        entry["collapse_effect"] = {m: round(collapsed[m] - entry["modes"]["hybrid"][m], 4) for m in METRICS}
    return entry


def table(merged: dict, anchors: dict, loo: dict) -> str:
    rows = ["| data set | model | BM25 anchor | lexical | dense | hybrid (default) | margin | >= max(lex, dense) "
            "| leave-one-out hybrid (margin) | hybrid, reprints collapsed | target |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in SETS:
        if name not in merged:
            continue
        m = {k: v["ndcg@10"] for k, v in merged[name]["modes"].items()}
        anchor = anchors.get(name)
        held = loo.get(name)
        rows.append(
            f"| {name} | {merged[name]['model'].split('/')[-1]} | {anchor:.4f} | {m['lexical']:.4f} | {m['dense']:.4f} | "
            f"**{m['hybrid']:.4f}** | {m['hybrid'] - anchor:+.4f} | {'yes' if m['hybrid'] >= max(m['lexical'], m['dense']) else 'no'} | "
            + (f"{held['ndcg@10']:.4f} ({held['margin']:+.4f})" if held else "-")
            + f" | {merged[name]['hybrid_collapsed']['ndcg@10']:.4f} | {TARGETS.get(name, '-')} |")
    margins = [merged[n]["modes"]["hybrid"]["ndcg@10"] - anchors[n] for n in SETS if n in merged]
    worst_loo = min((v["margin"] for v in loo.values()), default=float("nan"))
    rows.append("")
    rows.append(f"Worst margin of the defaults over the anchor: {min(margins):+.4f}; worst leave-one-set-out margin: "
                f"{worst_loo:+.4f}. Anchor: bm25s 0.3.16 + Snowball, whole documents (benchmarks/anchor.py).")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", default=list(SETS))
    ap.add_argument("--model", default=None)
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    ap.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    ap.add_argument("--readme", action="store_true", help="update the README table")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached indexes (after index-time changes)")
    args = ap.parse_args()

    anchors = {k: v["ndcg@10"] for k, v in _read(RESULTS / "anchor.json").get("sets", {}).items()}
    loo = (_read(RESULTS / "selection.json").get("fusion_stage") or {}).get("held_out", {})
    results: dict[str, dict] = {}
    rebuilt: set[str] = set()
    for name in args.sets:
        if not (DATA / name).exists():
            print(f"skip {name}: {DATA / name} is absent", file=sys.stderr)
            continue
        index_for(name, args.model, args.cache, args.rebuild and name not in rebuilt)
        rebuilt.add(name)
        rebuilt.update(n for n in SETS if _same_corpus(n, name))
        results[name] = entry = measure(name, args.model, args.cache, False)
        m = entry["modes"]
        print(f"{name:<24} lexical {m['lexical']['ndcg@10']:.4f}  dense {m['dense']['ndcg@10']:.4f}  "
              f"hybrid {m['hybrid']['ndcg@10']:.4f}  collapsed {entry['hybrid_collapsed']['ndcg@10']:.4f}  "
              f"anchor {anchors.get(name, float('nan')):.4f}", file=sys.stderr, flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    merged = {k: v for k, v in {**_read(args.out).get("sets", {}), **results}.items() if k in SETS and "collapse_effect" in v}
    args.out.write_text(json.dumps({"environment": environment(), "anchors": anchors, "sets": merged}, indent=2) + "\n")
    text = table(merged, anchors, loo)
    print(text)
    if args.readme:
        update_readme_table("quality", text)


if __name__ == "__main__":
    main()
