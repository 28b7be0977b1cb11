"""What an update costs beside a full rebuild (issue #7: updating 1 % costs <= 5 % of a rebuild).

    .venv/bin/python benchmarks/update_bench.py [--runs 3] [--share 0.01] [--no-check] [--readme]

On the 1,986 Russian news articles of news-ru/ng-articles.jsonl.gz with the default settings
(navec-ru, about 8,900 passages) it times, median of --runs:

- full rebuild: ``ragkit index CORPUS --force`` into a fresh folder (whole process), and
  ``ragkit.build_index`` in this process (after one warm-up build, not counted);
- update: ``--share`` of the documents (1 %: 20 articles) rewritten and upserted with
  ``ragkit add FILE.jsonl``, then as many other documents dropped with ``ragkit remove ID...``,
  each on a fresh copy of a built index (its embedding cache included), whole process and
  ``ragkit.update_index`` in this process;
- re-running ``ragkit index`` on the unchanged corpus (whole process: hashes the files, writes nothing);
- what every process pays before it does any work: interpreter and imports, and loading the
  model, so the whole-process ratio can be read apart from that fixed cost.

With ``--check`` (the default) the updated index is compared with a fresh build of the same
documents in the same order: same passages, bit-identical BM25 scores, same search results.
The machine may be shared: timings are noisy; the load average is recorded beside them.
Writes benchmarks/results/update.json and prints a markdown table.
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

from _env import DATA, RESULTS, environment, time_summary, timed_run, update_readme_table  # noqa: E402

BIN = Path(sys.executable).parent
CORPUS = "news-ru/ng-articles.jsonl.gz"
QUERIES = ["технопарки Москвы", "нефть цены", "выборы президента", "футбол чемпионат", "налоги малый бизнес"]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def changes(corpus: Path, share: float, folder: Path) -> tuple[Path, list[str], int]:
    """A JSONL of rewritten documents (every 1/share-th one) and ids of as many others to remove."""
    with gzip.open(corpus, "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh if line.strip()]
    n = max(1, round(len(docs) * share))
    step = len(docs) // n
    changed = docs[::step][:n]
    removed = [str(d.get("_id", d.get("id"))) for d in docs[step // 2 :: step][:n]]
    path = folder / "changed.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for d in changed:
            d = dict(d)
            d["text"] = d["text"] + "\n\nДополнение редакции: материал обновлён, уточнены цифры и даты."
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    return path, removed, len(docs)


def check(updated: Path, work: Path) -> dict:
    """The updated index against a fresh build of its documents, in its order."""
    import numpy as np

    from ragkit import Index, build_index

    with Index.open(updated) as idx:
        idx.verify()
        docs = idx.store.documents()
        spans = [(p.doc_id, p.start, p.end) for p in idx.store.iter_passages()]
    fresh = work / "fresh-check"
    build_index(docs, fresh, model=json.loads((updated / "manifest.json").read_text())["model"]["name"])
    with Index.open(updated) as a, Index.open(fresh) as b:
        same_spans = spans == [(p.doc_id, p.start, p.end) for p in b.store.iter_passages()]
        same_bm25 = all(np.array_equal(a.lexical.score_all(q), b.lexical.score_all(q))
                        and np.array_equal(a.doc_lexical.score_all(q), b.doc_lexical.score_all(q)) for q in QUERIES)
        same_results = all([(r.doc_id, r.start, round(r.score, 6)) for r in a.search(q, k=10)]
                           == [(r.doc_id, r.start, round(r.score, 6)) for r in b.search(q, k=10)] for q in QUERIES)
    return {"passages_equal": same_spans, "bm25_scores_equal": same_bm25, "search_results_equal": same_results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DATA / CORPUS)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--share", type=float, default=0.01, help="share of the documents rewritten (and removed)")
    ap.add_argument("--no-check", dest="check", action="store_false")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--readme", action="store_true", help="replace the README's update table")
    args = ap.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"corpus {args.corpus} is absent (set RAGKIT_DATA to the shared data folder)")
    work = Path(tempfile.mkdtemp(prefix="ragkit-update-", dir=args.workdir))
    ragkit = str(BIN / "ragkit")
    loads = [load()]
    try:
        changed, removed, n_docs = changes(args.corpus, args.share, work)
        n_changed = len(changed.read_text(encoding="utf-8").splitlines())
        template = work / "template"
        timed_run([ragkit, "index", str(args.corpus), "--index", str(template), "-q"])  # also warms the page cache
        manifest = json.loads((template / "manifest.json").read_text())

        def copy(name: str) -> Path:
            target = work / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(template, target)
            return target

        # -- whole process: full rebuild, add, remove (interleaved, so load changes hit all alike)
        whole: dict[str, list[float]] = {"full": [], "add": [], "remove": [], "unchanged": []}
        for _ in range(args.runs):
            whole["unchanged"].append(timed_run([ragkit, "index", str(args.corpus), "--index", str(template), "-q"]))
            fresh = work / "fresh"
            shutil.rmtree(fresh, ignore_errors=True)
            whole["full"].append(timed_run([ragkit, "index", str(args.corpus), "--index", str(fresh), "--force", "-q"]))
            target = copy("update")
            whole["add"].append(timed_run([ragkit, "add", str(changed), "--index", str(target), "-q"]))
            whole["remove"].append(timed_run([ragkit, "remove", *removed, "--index", str(target), "-q"]))
        loads.append(load())
        # -- fixed start-up cost of a process: interpreter + imports, and the model load
        startup = [timed_run([sys.executable, "-c", "import ragkit.cli.app, ragkit.build.pipeline, ragkit.search.index, faiss, tokenizers"])
                   for _ in range(args.runs)]
        model_load = [timed_run([sys.executable, "-c", f"from ragkit.encoders.embedder import Embedder; "
                                                  f"Embedder({manifest['model']['name']!r}).model"])
                      for _ in range(args.runs)]
        python = [timed_run([sys.executable, "-c", "pass"]) for _ in range(args.runs)]

        # -- in this process
        from ragkit import build_index, update_index

        inproc: dict[str, list[float]] = {"full": [], "add": [], "remove": []}
        build_index([args.corpus], work / "warm", force=True)  # warm-up: imports, model, caches
        shutil.rmtree(work / "warm")
        for _ in range(args.runs):
            fresh = work / "fresh"
            shutil.rmtree(fresh, ignore_errors=True)
            t = time.perf_counter()
            build_index([args.corpus], fresh, force=True)
            inproc["full"].append(time.perf_counter() - t)
            target = copy("update")
            t = time.perf_counter()
            added = update_index(target, add=[changed])
            inproc["add"].append(time.perf_counter() - t)
            t = time.perf_counter()
            update_index(target, remove=removed)
            inproc["remove"].append(time.perf_counter() - t)
        loads.append(load())
        checked = check(target, work) if args.check else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results = {
        "whole_process": {k: time_summary(v) for k, v in whole.items()},
        "in_process": {k: time_summary(v) for k, v in inproc.items()},
        "fixed_cost": {"python -c pass": time_summary(python), "interpreter + imports": time_summary(startup),
                       "interpreter + model load": time_summary(model_load)},
    }
    for scope in ("whole_process", "in_process"):
        r = results[scope]
        full = r["full"]["median_s"]
        r["add/full"] = round(r["add"]["median_s"] / full, 4)
        r["remove/full"] = round(r["remove"]["median_s"] / full, 4)
    results["whole_process"]["unchanged/full"] = round(results["whole_process"]["unchanged"]["median_s"] / results["whole_process"]["full"]["median_s"], 4)
    payload = {
        "environment": environment(("ragkit", "numpy", "faiss-cpu", "tokenizers", "safetensors", "PyStemmer", "bm25s")),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "load_average": loads,
        "corpus": {"path": CORPUS, "documents": n_docs, "passages": manifest["counts"]["passages"],
                   "model": manifest["model"]["name"]},
        "update": {"rewritten_documents": n_changed,
                   "passages_embedded": added.embedded, "removed_documents": len(removed)},
        "results": results,
        "check": checked,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "update.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    print(table(payload))
    if args.readme:
        update_readme_table("update", table(payload))


def table(payload: dict) -> str:
    r, c, u = payload["results"], payload["corpus"], payload["update"]
    w, i = r["whole_process"], r["in_process"]
    rows = [
        "| what | whole process | in process | share of a full rebuild (whole / in) |",
        "| --- | --- | --- | --- |",
        f"| full rebuild (`ragkit index --force`, fresh folder) | {w['full']['median_s']:.2f} s "
        f"| {i['full']['median_s']:.2f} s | 100 % |",
        f"| add {u['rewritten_documents']} rewritten documents (`ragkit add`) | {w['add']['median_s']:.2f} s "
        f"| {i['add']['median_s']:.2f} s | {w['add/full']:.1%} / {i['add/full']:.1%} |",
        f"| remove {u['removed_documents']} documents (`ragkit remove`) | {w['remove']['median_s']:.2f} s "
        f"| {i['remove']['median_s']:.2f} s | {w['remove/full']:.1%} / {i['remove/full']:.1%} |",
    ]
    if "unchanged" in w:
        rows.append(f"| `ragkit index` again, corpus unchanged | {w['unchanged']['median_s']:.2f} s | | "
                    f"{w['unchanged/full']:.1%} |")
    f = r["fixed_cost"]
    rows.append(
        f"\n{c['documents']} documents, {c['passages']} passages, {c['model']}; median of "
        f"{len(w['full']['runs'])} runs. Fixed cost of every process: interpreter + imports "
        f"{f['interpreter + imports']['median_s']:.2f} s, interpreter + model load "
        f"{f['interpreter + model load']['median_s']:.2f} s (python alone {f['python -c pass']['median_s']:.2f} s). "
        f"Load average "
        f"{payload['load_average'][0][0]}-{max(x[0] for x in payload['load_average'])} on "
        f"{payload['environment']['cpu_count']} cores."
    )
    if payload["check"] is not None:
        rows.append(f"Updated index vs a fresh build of the same documents: {payload['check']}")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
