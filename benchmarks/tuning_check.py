"""Do tuned search parameters hold for real queries? (issue #5: tuned recall on queries not used for tuning)

    .venv/bin/python benchmarks/tuning_check.py

On the real all-MiniLM-L6-v2 SciFact passage vectors (the cached index
benchmarks/.cache/scifact--default, 9,929 passages; build it with
``ragkit eval $RAGKIT_DATA/scifact --index benchmarks/.cache/scifact--default``) each approximate
type is tuned to recall@10 0.95 twice: on passage snippets embedded as queries (what
``ragkit index`` does) and on the collection's own vectors leave-one-out (the fallback), and
then searched with the real SciFact queries (the first 1,100 rows of
benchmarks/.cache/ann/real_queries.npy, written by ann_bench.py), recall@10 against exact search.
Writes benchmarks/results/tuning_real_queries.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _env import RESULTS, ROOT, environment  # noqa: E402

import ragkit  # noqa: E402
from ragkit.vectors.ann import (  # noqa: E402
    factory_for,
    query_snippets,
    recall_at,
    training_sample,
    tune,
)
from ragkit.vectors.exact import exact_search  # noqa: E402
from ragkit.vectors.faiss_index import VectorIndex


def main() -> None:
    cache = ROOT / "benchmarks" / ".cache"
    idx = ragkit.Index.open(cache / "scifact--default")
    passages = np.ascontiguousarray(idx.vectors.matrix())
    ids = np.arange(len(passages))
    texts = [p.text for p in idx.store.iter_passages()]
    t = time.time()
    snippets = idx.embed_queries(query_snippets(texts))
    embed_s = time.time() - t
    queries = np.load(cache / "ann" / "real_queries.npy")[:1100]  # the SciFact queries (xquad ones follow)
    _, truth = exact_search(passages, queries, 10)
    out = {"environment": environment(), "snippet_embedding_s": round(embed_s, 1), "passages": len(passages),
           "real_queries": len(queries), "target": 0.95, "rows": []}
    for kind in ("hnsw", "hnsw-sq8", "ivf-sq8"):
        factory = factory_for(kind, len(passages), passages.shape[1])
        index = VectorIndex.create(passages.shape[1], factory)
        index.train(training_sample(passages, factory))
        index.add(ids, passages)
        for tuned_on, vectors in (("snippets", snippets), ("collection", None)):
            tuning = tune(index, passages, ids, 0.95, query_vectors=vectors)
            _, found = index.search(queries, 10, params=tuning.params)
            row = {"type": kind, "tuned_on": tuned_on, "params": tuning.params, "tuning_recall": round(tuning.recall, 4),
                   "held_out": round(tuning.held_out, 4), "real_query_recall": round(recall_at(found, truth, 10), 4)}
            out["rows"].append(row)
            print(row, flush=True)
    (RESULTS / "tuning_real_queries.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
