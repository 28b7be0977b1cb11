"""Which tuning snippets behave like real headlines for navec-ru (the evidence for ann.STATIC_SNIPPET_WORDS).

    .venv/bin/python benchmarks/ann_navec_snippets.py

The first 50k passages of benchmarks/.cache/news-synthetic-1000000.jsonl.gz (query_bench.make_corpus),
HNSW32 (ragkit build, efConstruction 80); per query set (1,000 NG headlines; 1,000 snippets of 4-12,
2-5 and 1-3 words): median top-1 cosine and recall@10 against exact search at efSearch 16-256. Printed.
"""
import json, gzip, random, numpy as np
from ragkit.encoders.embedder import Embedder
from ragkit.vectors import select
from ragkit.vectors.ann import query_snippets, recall_at
from ragkit.vectors.exact import exact_search
texts = [json.loads(l)["text"] for _, l in zip(range(50000), gzip.open(str(__import__("pathlib").Path(__file__).resolve().parent / ".cache" / "news-synthetic-1000000.jsonl.gz"), "rt"))]
e = Embedder("navec-ru"); x = e.embed_passages(texts)
heads = [json.loads(l)["text"] for l in open(__import__("os").environ.get("RAGKIT_DATA", "/work/shared/data") + "/news-ru/ng-title2doc/queries.jsonl", encoding="utf-8")]
def snip(lo, hi, seed=0):
    rng = random.Random(seed); out = []
    for row in rng.sample(range(len(texts)), 1000):
        w = texts[row].split(); L = rng.randint(lo, hi); s = rng.randint(0, max(0, len(w) - L)); out.append(" ".join(w[s:s+L]))
    return out
sets = {"headlines": e.embed_queries(heads[:1000]), "snip4-12": e.embed_queries(snip(4, 12)), "snip2-5": e.embed_queries(snip(2, 5)), "snip1-3": e.embed_queries(snip(1, 3))}
ids = np.arange(len(x))
g = select.build("hnsw", x, ids)
for name, q in sets.items():
    ts, tr = exact_search(x, q, 10)
    row = []
    for ef in (16, 32, 64, 128, 256):
        g.params = {"efSearch": ef}
        row.append(round(recall_at(g.search(q, 10)[1], tr, 10), 3))
    print(name, "top1 cos %.3f" % np.median(ts[:, 0]), row, flush=True)
