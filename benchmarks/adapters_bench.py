"""Retrieval quality inside LangChain: ragkit's retriever against LangChain's own BM25Retriever.

    .venv/bin/pip install -e '.[bench-adapters]'      # langchain-core, langchain-community, rank-bm25
    .venv/bin/python benchmarks/adapters_bench.py              # xquad/ru
    .venv/bin/python benchmarks/adapters_bench.py news-ru/ng-title2doc

Every retriever is asked through LangChain's ``invoke`` for the 10 best documents of each judged
query (ragkit: ``k=10, per_doc=1``, so a document counts once, by its best passage) and scored at
document level (nDCG@10, Recall@10, MRR@10). LangChain's BM25Retriever gets each document as
"title\\ntext": once with its defaults (whitespace tokens, no stemming), once with lower-cased word
tokens and PyStemmer's Russian stemmer. The ragkit index is the one benchmarks/quality.py builds
(default model, cached in benchmarks/.cache/). Writes benchmarks/results/adapters-SET.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, ROOT, environment, update_readme_table  # noqa: E402
from quality import index_for  # noqa: E402

import ragkit  # noqa: E402
from ragkit.evaluation import score_runs  # noqa: E402


def _read_corpus(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _stemmed_words():
    import Stemmer

    stem = Stemmer.Stemmer("russian").stemWords

    def preprocess(text: str) -> list[str]:
        return stem(re.findall(r"\w+", text.lower().replace("ё", "е")))

    return preprocess


def _run(retriever, queries: dict[str, str], doc_id) -> tuple[dict[str, list[str]], float]:
    t = time.perf_counter()
    runs = {qid: [doc_id(d) for d in retriever.invoke(text)] for qid, text in queries.items()}
    return runs, (time.perf_counter() - t) * 1000 / max(1, len(queries))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", nargs="?", default="xquad/ru")
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/adapters-SET.json")
    ap.add_argument("--readme", action="store_true", help="only rewrite the README table from the results files")
    args = ap.parse_args()
    if args.readme:
        update_readme_table("adapters", readme_table(sorted(RESULTS.glob("adapters-*.json"))))
        return

    from langchain_community.retrievers import BM25Retriever
    from langchain_core.documents import Document

    from ragkit.integrations.langchain import RagkitRetriever

    data = ragkit.load_beir(DATA / args.set)
    load_before = os.getloadavg()
    records = _read_corpus(data.corpus)
    docs = [Document(page_content=f"{r.get('title', '')}\n{r['text']}", metadata={"id": str(r["_id"])}) for r in records]
    systems = {
        "ragkit RagkitRetriever (hybrid, k=10, per_doc=1)": (
            RagkitRetriever(index=index_for(args.set, None, args.cache), k=10, per_doc=1), lambda d: d.metadata["doc_id"]),
        "LangChain BM25Retriever (defaults)": (BM25Retriever.from_documents(docs, k=10), lambda d: d.metadata["id"]),
        "LangChain BM25Retriever (Russian stemmer)": (
            BM25Retriever.from_documents(docs, k=10, preprocess_func=_stemmed_words()), lambda d: d.metadata["id"]),
    }
    results = {}
    for name, (retriever, doc_id) in systems.items():
        runs, ms = _run(retriever, data.queries, doc_id)
        scored = score_runs(runs, data.qrels).to_dict()
        results[name] = {**{k: scored[k] for k in ("ndcg@10", "recall@10", "mrr@10", "queries")}, "ms_per_query": round(ms, 2)}
        print(f"{name:55s} nDCG@10 {scored['ndcg@10']:.4f}  R@10 {scored['recall@10']:.4f}  {ms:7.2f} ms/query")
    env = environment(("ragkit", "langchain-core", "langchain-community", "rank-bm25", "PyStemmer", "bm25s", "faiss-cpu"))
    out = {"set": args.set, "documents": len(docs), "env": env, "loadavg_before": load_before,
           "loadavg_after": os.getloadavg(), "results": results}
    args.out = args.out or RESULTS / f"adapters-{args.set.replace('/', '_')}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


def readme_table(files: list[Path]) -> str:
    rows = ["| data set | retriever (through LangChain's `invoke`) | nDCG@10 | Recall@10 | ms/query | load avg |",
            "| --- | --- | --- | --- | --- | --- |"]
    for f in files:
        run = json.loads(f.read_text(encoding="utf-8"))
        load = f"{run['loadavg_before'][0]:.1f}-{run['loadavg_after'][0]:.1f}"
        for name, r in run["results"].items():
            rows.append(f"| {run['set']} | {name} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['ms_per_query']:.1f} | {load} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
