"""The lexical stage at scale: exhaustive BM25 scoring (every row) against the postings-only top-k.

    .venv/bin/python benchmarks/lexical_bench.py --passages 1000000 [--queries 300]

Corpus: the synthetic Russian news of ``benchmarks/query_bench.py`` (``make_corpus``: each
document two or three real sentences drawn at random, seeded), built into BM25 indexes only
(passage index and document index, ragkit's default analysis: pymorphy3 lemmas, k1 1.5) and
cached in ``benchmarks/.cache/``. Two layouts of documents over the same passages:

- ``one passage per document``: as ``query_bench.py`` indexes it (the document text is the
  passage text, so both indexes hold the same texts);
- ``grouped``: runs of 1-6 consecutive passages (seeded) form one document, whose text is
  theirs joined, so a document posting brings several passages into the candidates.

Queries: the real headlines of ``news-ru/ng-title2doc``. Measured in one process, after
warm-up, both ways in turn on blocks of 25 queries (so machine load hits both alike), k = 10:

- ``lexical``: the lexical stage of ``Index.search(mode="lexical")`` (document share 0.85,
  the 200 candidates rank_passages asks for);
- ``hybrid lexical stage``: what hybrid mode asks of BM25 (document share 0.7, the 200
  candidates, and the lexical scores of the candidates' ids: BM25's plus 200 other rows);
- ``filtered``: lexical with a filter that keeps every other passage;
- ``query analysis``: ``Analyzer.terms`` alone: cold, repeated, and by a second analyzer.

Every fast result is checked equal to the exhaustive one (ids, order, scores). With
``--index PATH`` (a ragkit index built apart, e.g. ``ragkit index
benchmarks/.cache/news-synthetic-100000.jsonl.gz --index benchmarks/.cache/e2e-100000 --model
navec-ru --index-type flat``), ``Index.search`` in lexical and hybrid mode is timed too, with
``Index.exhaustive_lexical`` on and off in turn, and its results compared. Writes
benchmarks/results/lexical.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _env import DATA, RESULTS, environment  # noqa: E402
from query_bench import CACHE, make_corpus, percentiles, timed  # noqa: E402

LAYOUTS = ("one passage per document", "grouped")
BLOCK = 25  # queries timed one way, then the same ones the other way (one after the other, each
# run would find the caches just emptied by the other way's run)


def passages(n: int) -> list[str]:
    corpus = CACHE / f"news-synthetic-{n}.jsonl.gz"
    if not corpus.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        make_corpus(n, corpus)
    with gzip.open(corpus, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


def groups(n: int, seed: int = 0) -> np.ndarray:
    """The document row (from 1) of each of n passages: runs of 1-6 consecutive passages."""
    rng = random.Random(seed)
    sizes: list[int] = []
    total = 0
    while total < n:
        sizes.append(rng.randint(1, 6))
        total += sizes[-1]
    return np.repeat(np.arange(1, len(sizes) + 1, dtype=np.int64), sizes)[:n]


def lexical_indexes(n: int):  # noqa: ANN201
    """(passage index, {layout: (document index, document row of each passage)}), cached on disk."""
    from ragkit.lexical.analysis import Analyzer
    from ragkit.lexical.bm25 import LexicalIndex

    root = CACHE / f"lexical-{n}"
    doc_of = {LAYOUTS[0]: np.arange(1, n + 1, dtype=np.int64), LAYOUTS[1]: groups(n)}
    folders = {"passages": root / "passages", LAYOUTS[0]: root / "documents-one", LAYOUTS[1]: root / "documents-grouped"}
    if not all((f / "bm25.json").exists() for f in folders.values()):
        texts = passages(n)
        analyzer = Analyzer()
        t = time.perf_counter()
        LexicalIndex.build(np.arange(n, dtype=np.int64), texts, analyzer).save(folders["passages"])
        LexicalIndex.build(doc_of[LAYOUTS[0]], texts, analyzer).save(folders[LAYOUTS[0]])
        rows = doc_of[LAYOUTS[1]]
        bounds = np.flatnonzero(np.diff(rows)) + 1
        joined = [" ".join(texts[a:b]) for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), n])]
        LexicalIndex.build(np.arange(1, len(joined) + 1, dtype=np.int64), joined, analyzer).save(folders[LAYOUTS[1]])
        print(f"built the lexical indexes of {n} passages in {time.perf_counter() - t:.0f} s", flush=True)
    passage_index = LexicalIndex.load(folders["passages"])
    return passage_index, {layout: (LexicalIndex.load(folders[layout]), doc_of[layout]) for layout in LAYOUTS}


def stages(lexical, documents, doc_rows, csr, queries, n_rows):  # noqa: ANN001, ANN201
    """stage -> (exhaustive, fast): functions of a query giving comparable results."""
    from ragkit.search.lexical_topk import ScanScores, mixed_scores
    from ragkit.search.ranking import mix_lexical, top_two

    ids = lexical.ids
    every_other = np.arange(0, n_rows, 2, dtype=np.int64)
    others = np.random.default_rng(0).choice(n_rows, size=200, replace=False)  # stand-ins for dense candidates

    def scan(query: str, weight: float) -> ScanScores:  # Index._lexical_vector, the exhaustive reference
        passage = lexical.score_all(query).astype(np.float64)
        by_doc = documents.score_all(query).astype(np.float64)
        return ScanScores(mix_lexical(passage, by_doc, doc_rows, weight), top_two(by_doc))

    def matched(query: str, weight: float):  # noqa: ANN202 - what Index._lexical_scores gives
        return mixed_scores(query, lexical, documents, csr, weight)

    def lexical_stage(score):  # noqa: ANN001, ANN202 - mode="lexical": document share 0.85, 200 candidates
        return lambda q: score(q, 0.85).top(ids, 200, None)

    def hybrid_stage(score):  # noqa: ANN001, ANN202 - mode="hybrid": share 0.7, 200 candidates, their scores
        def run(q: str):  # noqa: ANN202
            lex = score(q, 0.7)
            top_ids, top_scores = lex.top(ids, 200, None)
            rows = lexical.rows_of(np.union1d(top_ids, ids[others]))
            return top_ids, top_scores, lex.at(rows), lex.leads
        return run

    def filtered_stage(score):  # noqa: ANN001, ANN202 - a filter keeping every other passage
        return lambda q: score(q, 0.85).top(ids, 200, every_other)

    return {name: (make(scan), make(matched)) for name, make in
            (("lexical", lexical_stage), ("hybrid lexical stage", hybrid_stage), ("lexical, filter keeps 1/2", filtered_stage))}


def timed_call(fn, query: str, times: list[float]):  # noqa: ANN001, ANN201
    t = time.perf_counter()
    out = fn(query)
    times.append(time.perf_counter() - t)
    return out


def same(a, b) -> bool:  # noqa: ANN001
    if isinstance(a, tuple) and len(a) and isinstance(a[0], (np.ndarray, tuple)):
        return all(same(x, y) for x, y in zip(a, b))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def analysis_times(queries: list[str]) -> dict[str, dict]:
    """Analyzer.terms per query, per Russian analysis: a fresh analyzer meeting every word for the
    first time in the process (cold), the same analyzer again (warm), and a second fresh analyzer
    (as the document index's, or a reloaded generation's): pymorphy3 lemmas are cached per
    process, so it finds them; before that cache it paid what the cold one pays."""
    from ragkit.lexical import analysis

    out = {}
    for russian in ("pymorphy3", "snowball"):
        analysis._lemma.cache_clear()
        analyzer = analysis.Analyzer(russian=russian)
        analyzer.terms("прогрев")  # loads the stemmer / dictionaries
        for label in ("cold", "warm"):
            out[f"query analysis, {russian}, {label}"] = percentiles(timed(analyzer.terms, queries))
        second = analysis.Analyzer(russian=russian)
        second.terms("прогрев")
        out[f"query analysis, {russian}, second analyzer"] = percentiles(timed(second.terms, queries))
    return out


def end_to_end(path: Path, queries: list[str]) -> dict[str, dict]:
    """``Index.search`` (k = 10) on a real ragkit index, the lexical stage exhaustive or not, blocks in turn."""
    import ragkit

    idx = ragkit.Index.open(path)
    for q in queries[:20]:  # warm-up: vectors, store, BM25, encoder, maps
        idx.search(q, k=10)
    out: dict[str, dict] = {}
    for mode in ("lexical", "hybrid"):
        times: dict[str, list[float]] = {"exhaustive": [], "postings": []}
        mismatches = 0
        def search(q: str, m: str = mode) -> list[tuple]:
            return [(r.doc_id, r.start, r.score, r.scores) for r in idx.search(q, k=10, mode=m)]

        for start in range(0, len(queries), BLOCK):
            block, found = queries[start:start + BLOCK], []
            for name, exhaustive in (("exhaustive", True), ("postings", False)):
                idx.exhaustive_lexical = exhaustive
                found.append([timed_call(search, q, times[name]) for q in block])
            mismatches += sum(a != b for a, b in zip(*found))
        idx.exhaustive_lexical = False
        entry = {name: percentiles(values) for name, values in times.items()}
        entry["p50 ratio exhaustive / postings"] = round(entry["exhaustive"]["p50_ms"] / entry["postings"]["p50_ms"], 2)
        entry["queries whose results differ"] = mismatches
        out[f"Index.search {mode}"] = entry
        print(f"end to end {mode:8s} exhaustive p50 {entry['exhaustive']['p50_ms']:7.2f} ms p99 {entry['exhaustive']['p99_ms']:7.2f}"
              f" | postings p50 {entry['postings']['p50_ms']:6.2f} ms p99 {entry['postings']['p99_ms']:6.2f} | differ: {mismatches}",
              flush=True)
    v = idx.manifest["vectors"]
    out["index"] = {"path": str(path), "passages": len(idx), "model": idx.manifest["model"]["name"], "factory": v["factory"]}
    idx.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--index", type=Path, help="also time Index.search on this ragkit index (built apart)")
    args = ap.parse_args()
    lexical, layouts = lexical_indexes(args.passages)
    if args.build_only:
        return
    from ragkit.search.lexical_topk import DocumentPassages

    queries_file = DATA / "news-ru" / "ng-title2doc" / "queries.jsonl"
    queries = [json.loads(line)["text"] for line in queries_file.read_text(encoding="utf-8").splitlines()][: args.queries]
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, dict] = {"analysis": analysis_times(queries)}
    for q in queries:  # warm the analysers of the indexes: both ways then read cached terms alike
        lexical.analyzer.terms(q)
        for documents, _ in layouts.values():
            documents.analyzer.terms(q)
    for layout, (documents, doc_of) in layouts.items():
        doc_rows = documents.rows_of(doc_of)
        t = time.perf_counter()
        csr = DocumentPassages(doc_rows, len(documents))
        csr_s = time.perf_counter() - t
        by_stage: dict[str, dict] = {"document -> passages map, built once": {"s": round(csr_s, 3)}}
        for stage, (exhaustive, fast) in stages(lexical, documents, doc_rows, csr, queries, len(lexical)).items():
            for q in queries[:10]:  # warm-up
                exhaustive(q), fast(q)
            times: dict[str, list[float]] = {"exhaustive": [], "postings": []}
            mismatches = 0
            for start in range(0, len(queries), BLOCK):  # blocks in turn: load changes hit both alike
                block = queries[start:start + BLOCK]
                want = [timed_call(exhaustive, q, times["exhaustive"]) for q in block]
                got = [timed_call(fast, q, times["postings"]) for q in block]
                mismatches += sum(not same(g, w) for g, w in zip(got, want))
            entry = {name: percentiles(values) for name, values in times.items()}
            entry["p50 ratio exhaustive / postings"] = round(entry["exhaustive"]["p50_ms"] / entry["postings"]["p50_ms"], 2)
            entry["queries whose results differ"] = mismatches
            by_stage[stage] = entry
            print(f"{layout:26s} {stage:28s} exhaustive p50 {entry['exhaustive']['p50_ms']:7.2f} ms  p99 "
                  f"{entry['exhaustive']['p99_ms']:7.2f}  | postings p50 {entry['postings']['p50_ms']:6.2f} ms  p99 "
                  f"{entry['postings']['p99_ms']:6.2f}  | differ: {mismatches}", flush=True)
        from ragkit.search.lexical_topk import mixed_scores

        scored = [mixed_scores(q, lexical, documents, csr, 0.85) for q in queries]
        counts = {"rows that can score above 0": [s.matched_rows().size for s in scored],
                  "rows top(200) scores": [s._candidates(200, None).size for s in scored],
                  "passages with a posting": [lexical.score_matches(q)[1].size for q in queries]}
        by_stage["rows per query at share 0.85 (median, p99)"] = {
            name: [int(np.median(v)), int(np.percentile(v, 99))] for name, v in counts.items()}
        results[layout] = by_stage
    if args.index is not None:
        results["end to end"] = end_to_end(args.index, queries)
    payload = {
        "environment": environment(("ragkit", "numpy", "pymorphy3")),
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "corpus": f"{args.passages} synthetic passages of 2-3 real news sentences (benchmarks/query_bench.py make_corpus)",
        "index": {"passages": len(lexical), "terms": lexical.config()["n_terms"], "postings": lexical.config()["n_postings"],
                  "documents": {layout: len(d) for layout, (d, _) in layouts.items()}},
        "queries": len(queries),
        "k": "200 candidates (rank_passages' default), as search(k=10) asks",
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "lexical.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous[str(args.passages)] = payload
    out.write_text(json.dumps(previous, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results["analysis"], indent=1))
    print("load average", payload["load_average"])


if __name__ == "__main__":
    main()
