"""The plain BM25 anchor of every shared set, measured here: bm25s 0.3.16, Snowball, whole documents.

    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/anchor.py

As the data README describes it: bm25s's own tokenizer with the Snowball stemmer (PyStemmer) of
the set's language and bm25s's stopword list of that language, title + text of each document
indexed as one text, bm25s's default BM25 (lucene, k1 1.5, b 0.75), documents ranked for each
query and scored with ragkit's metrics (the same nDCG@10 code as ``ragkit eval``). Writes
benchmarks/results/anchor.json, which benchmarks/quality.py and benchmarks/selection.py read.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, environment  # noqa: E402

import ragkit  # noqa: E402
from ragkit.eval.metrics import score_runs  # noqa: E402

SETS = {
    "xquad/ru": "ru", "xquad/en": "en", "scifact": "en",
    "news-ru/ng-title2doc": "ru", "news-ru/ng-summary2doc": "ru", "news-ru/ng-kw2doc": "ru",
}
REFERENCE = {  # /work/shared/data/README.md
    "xquad/ru": 0.953, "xquad/en": 0.968, "scifact": 0.686,
    "news-ru/ng-title2doc": 0.740, "news-ru/ng-summary2doc": 0.7813, "news-ru/ng-kw2doc": 0.7813,
}
STEMMER = {"ru": "russian", "en": "english"}


def read_corpus(path: Path) -> tuple[list[str], list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    ids, texts = [], []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                doc = json.loads(line)
                ids.append(str(doc["_id"]))
                texts.append(f"{doc.get('title') or ''} {doc.get('text') or ''}".strip())
    return ids, texts


def anchor(name: str, language: str, depth: int = 100) -> dict:
    import bm25s
    import Stemmer

    data = ragkit.load_beir(DATA / name)
    ids, texts = read_corpus(data.corpus)
    stemmer = Stemmer.Stemmer(STEMMER[language])
    t = time.perf_counter()
    retriever = bm25s.BM25()  # lucene, k1 1.5, b 0.75
    retriever.index(bm25s.tokenize(texts, stopwords=language, stemmer=stemmer, show_progress=False), show_progress=False)
    qids = list(data.queries)
    tokens = bm25s.tokenize([data.queries[q] for q in qids], stopwords=language, stemmer=stemmer, show_progress=False)
    docs, _ = retriever.retrieve(tokens, k=min(depth, len(ids)), show_progress=False, n_threads=1)
    runs = {q: [ids[int(i)] for i in row] for q, row in zip(qids, docs)}
    out = score_runs(runs, data.qrels).to_dict()
    out["seconds"] = round(time.perf_counter() - t, 2)
    out["reference"] = REFERENCE[name]
    return out


def main() -> None:
    results = {}
    for name, language in SETS.items():
        results[name] = anchor(name, language)
        print(f"{name:<24} nDCG@10 {results[name]['ndcg@10']:.4f} (README {REFERENCE[name]})", file=sys.stderr)
    out = RESULTS / "anchor.json"
    env = environment(("ragkit", "numpy", "bm25s", "PyStemmer"))
    out.write_text(json.dumps({"environment": env, "sets": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
