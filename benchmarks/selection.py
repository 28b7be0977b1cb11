"""The selection protocol for ragkit's ranking defaults: leave-one-set-out, worst margin over BM25.

    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/anchor.py      # anchors, once
    RAGKIT_DATA=/work/shared/data .venv/bin/python benchmarks/selection.py   # this protocol

The protocol, so that the next person reruns it rather than re-tunes by hand:

1. The six shared sets (the issue says "seven" but names these six): xquad/ru, xquad/en,
   scifact, news-ru/ng-title2doc, ng-summary2doc, ng-kw2doc. Each set's anchor is plain BM25 (bm25s 0.3.16, Snowball, whole documents,
   title + text), measured by benchmarks/anchor.py. A setting's *margin* on a set is its
   document-level nDCG@10 minus that anchor.
2. A *setting* is one value for every knob in the grid below, the same for every set. Knobs
   may depend only on what ragkit sees (the model, the query's BM25 score distribution), never
   on the set: the dense weight is one number per model profile (navec-ru for Russian,
   all-MiniLM-L6-v2 for English), everything else is one number in all.
3. Leave-one-set-out: for each set, the setting with the best *worst* margin over the other
   five is chosen, and its figure on the left-out set is reported (the held-out estimate).
   Ties go to the earlier setting of the grid (fewer knobs moved from the plain ones).
   The shipped default is the setting with the best worst margin over all six; the report
   also shows whether it is >= max(own lexical, own dense) on every set.
4. The grid. Index time: BM25 k1 in {1.2, 1.5}; Russian analysis Snowball or pymorphy3 lemmas
   (English sets have no Cyrillic tokens, so the choice leaves them unchanged). Query time:
   doc_weight (share of the document's BM25 in a passage's lexical score), dense weight per
   model, adaptive exponent (dense weight times (s2/s1)**a, s1 and s2 the BM25 scores of the
   two best documents), and dense_candidates (dense may add passages, or only re-scores BM25's).
   RRF is scored beside for reference.
5. Two stages, to fit the CPU: stage 1 scores the lexical knobs alone (k1 x analysis x
   doc_weight in {0, 0.5, 0.7, 0.85, 1}); stage 2 scores the fusion knobs (doc_weight in
   {0.7, 1.0}) on stage 1's chosen lexical variant only. Stage 2's held-out figures therefore
   fix k1 and the analysis with every set seen; stage 1's own leave-one-out picks the same k1
   for every left-out set and pymorphy3 for all but xquad/ru (see lexical_stage in the JSON).

Every figure is computed with ragkit's own fusion functions (``fuse`` inputs are built exactly
as ``Index.rank_passages`` builds them, with ``evaluate``'s fetch depth); benchmarks/quality.py
then measures the chosen defaults through ``ragkit.evaluate`` itself. Writes
benchmarks/results/selection.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import DATA, RESULTS, ROOT, environment  # noqa: E402
from quality import index_for  # noqa: E402

import ragkit  # noqa: E402
from ragkit.eval.metrics import DOC_DEPTH, ndcg_at_k  # noqa: E402
from ragkit.lexical.analysis import Analyzer  # noqa: E402
from ragkit.lexical.bm25 import LexicalIndex  # noqa: E402
from ragkit.search.fusion import FusionConfig, _max_norm, _minmax, _rrf  # noqa: E402
from ragkit.search.ranking import mix_lexical, top_two  # noqa: E402

SETS = ("xquad/ru", "xquad/en", "scifact", "news-ru/ng-title2doc", "news-ru/ng-summary2doc", "news-ru/ng-kw2doc")
RUSSIAN = {"xquad/ru", "news-ru/ng-title2doc", "news-ru/ng-summary2doc", "news-ru/ng-kw2doc"}
K1 = (1.2, 1.5)
ANALYSIS = ("snowball", "pymorphy3")
DOC_WEIGHTS = (0.0, 0.5, 0.7, 0.85, 1.0)  # lexical stage
FUSION_DOC_WEIGHTS = (0.7, 1.0)  # fusion stage: today's default and pure document BM25
DENSE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
ADAPTIVE = (0.0, 1.0, 2.0)
CANDIDATES = (True, False)
RRF_WEIGHTS = (0.3, 0.5)


def _doc_text(doc: ragkit.Document) -> str:
    # The document-level BM25 text, as the build writes it (checked against the stored index below).
    return doc.text if not doc.title or doc.text.startswith(doc.title) else f"{doc.title}\n{doc.text}"


def lexical_variants(idx: ragkit.Index, russian: bool, only: tuple[float, str] | None = None,
                     ) -> dict[tuple[float, str], tuple[LexicalIndex, LexicalIndex]]:
    """(k1, analysis) -> (passage index, document index), derived in-process from the stored index."""
    out = {}
    base = {"snowball": (idx.lexical, idx.doc_lexical)}
    if russian and (only is None or only[1] == "pymorphy3"):
        texts = [p.text for p in idx.store.iter_passages()]
        docs = idx.store.documents()
        analyzer = Analyzer(russian="pymorphy3")
        t = time.perf_counter()
        base["pymorphy3"] = (
            LexicalIndex.build(idx.lexical.ids, texts, analyzer=analyzer, k1=1.2),
            LexicalIndex.build(idx.doc_lexical.ids, [_doc_text(d) for d in docs], analyzer=analyzer, k1=1.2),
        )
        print(f"  pymorphy3 analysis: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    for (analysis, (lex, doc)), k1 in itertools.product(base.items(), K1):
        if only is None or (k1, analysis) == only or (not russian and (k1, "snowball") == (only[0], analysis)):
            out[(k1, analysis)] = (lex.reweighted(k1=k1), doc.reweighted(k1=k1))
    return out


def _top_rows(values: np.ndarray, n: int, positive: bool) -> np.ndarray:
    rows = np.flatnonzero(values > 0) if positive else np.arange(values.size)
    if rows.size > n:
        rows = rows[np.argpartition(-values[rows], n - 1)[:n]]
    return rows


def _ranked_docs(rows: np.ndarray, score: np.ndarray, ids: np.ndarray, doc_code: np.ndarray, names: list[str]) -> list[str]:
    order = np.lexsort((ids[rows], -score))
    seen: dict[int, None] = {}
    for code in doc_code[rows[order]].tolist():
        if code not in seen:
            seen[code] = None
            if len(seen) == 10:
                break
    return [names[c] for c in seen]


def score_set(idx: ragkit.Index, data: ragkit.eval.beir.BeirDataset, lex: LexicalIndex, doclex: LexicalIndex,
              with_fusion: bool) -> dict[str, float]:
    """nDCG@10 of every query-time setting on one set with one lexical variant."""
    ids = np.asarray(lex.ids)
    doc_of = idx.store.passage_document_rows()
    doc_rows = doclex.rows_of(doc_of[ids])
    passage_docs = idx.passage_documents()
    names = sorted(set(passage_docs.values()))
    code = {n: i for i, n in enumerate(names)}
    doc_code = np.array([code[passage_docs[int(p)]] for p in ids])
    per_doc = max(1.0, len(idx) / max(1, int(idx.manifest["counts"]["documents"])))
    n = max(min(len(idx), int(DOC_DEPTH * per_doc * 3) + 10), FusionConfig().candidates)
    qids = list(data.queries)
    texts = [data.queries[q] for q in qids]
    sums: dict[str, float] = {}
    if with_fusion:
        vectors = idx.vectors.reconstruct(ids).astype(np.float64)
        qvecs = idx.embed_queries(texts).astype(np.float64)
    for qi, (qid, text) in enumerate(zip(qids, texts)):
        rel = data.qrels[qid]
        passage, by_doc = lex.score_all(text).astype(np.float64), doclex.score_all(text).astype(np.float64)
        leads = top_two(by_doc)
        results: dict[str, list[str]] = {}
        if with_fusion:
            dense = vectors @ qvecs[qi]
            dense_rows = _top_rows(dense, n, positive=False)
            results["dense"] = _ranked_docs(dense_rows, dense[dense_rows], ids, doc_code, names)
        for dw in DOC_WEIGHTS:
            mixed = mix_lexical(passage, by_doc, doc_rows, dw)
            lex_rows = _top_rows(mixed, n, positive=True)
            results[f"lexical dw={dw}"] = _ranked_docs(lex_rows, mixed[lex_rows], ids, doc_code, names)
            if not with_fusion or dw not in FUSION_DOC_WEIGHTS:
                continue
            for dc in CANDIDATES:
                rows = np.union1d(lex_rows, dense_rows) if dc or lex_rows.size == 0 else lex_rows
                ln, dn = _max_norm(mixed[rows]), _minmax(dense[rows])
                for w, a in itertools.product(DENSE_WEIGHTS[1:], ADAPTIVE):
                    wq = FusionConfig(adaptive=a).query_weight(w, leads)
                    score = (1 - wq) * ln + wq * dn
                    results[f"dw={dw} w={w} a={a} dc={int(dc)}"] = _ranked_docs(rows, score, ids, doc_code, names)
                if dc:
                    lr, dr = _rrf(mixed[rows], 60), _rrf(dense[rows], 60)
                    for w in RRF_WEIGHTS:
                        results[f"rrf dw={dw} w={w}"] = _ranked_docs(rows, (1 - w) * lr + w * dr, ids, doc_code, names)
        for key, ranked in results.items():
            sums[key] = sums.get(key, 0.0) + ndcg_at_k(ranked, rel, 10)
    return {key: total / len(qids) for key, total in sums.items()}


def hybrid_key(dw: float, w: float, a: float, dc: bool) -> str:
    return f"lexical dw={dw}" if w == 0.0 else f"dw={dw} w={w} a={a} dc={int(dc)}"


def lexical_settings() -> list[dict]:
    """Stage 1, lexical knobs (index-time k1 and Russian analysis, query-time doc_weight)."""
    return [{"k1": k1, "analysis": an, "doc_weight": dw, "adaptive": 0.0, "dense_candidates": True,
             "w_navec": 0.0, "w_minilm": 0.0} for k1, an, dw in itertools.product(K1, ANALYSIS, DOC_WEIGHTS)]


def fusion_settings(k1: float, analysis: str) -> list[dict]:
    """Stage 2, fusion knobs on stage 1's lexical variant; simplest first (ties go to the earlier)."""
    out = []
    for dw, a, dc, w_ru, w_en in itertools.product(FUSION_DOC_WEIGHTS, ADAPTIVE, CANDIDATES, DENSE_WEIGHTS, DENSE_WEIGHTS):
        if (w_ru == 0.0 and w_en == 0.0) and (a != 0.0 or not dc):
            continue  # knobs without effect
        out.append({"k1": k1, "analysis": analysis, "doc_weight": dw, "adaptive": a, "dense_candidates": dc,
                    "w_navec": w_ru, "w_minilm": w_en})
    return out


def figure(table: dict, name: str, s: dict) -> float:
    analysis = s["analysis"] if name in RUSSIAN else "snowball"
    w = s["w_navec"] if name in RUSSIAN else s["w_minilm"]
    return table[name][f"{s['k1']}|{analysis}"][hybrid_key(s["doc_weight"], w, s["adaptive"], s["dense_candidates"])]


def leave_one_out(table: dict, anchors: dict, names: list[str], grid: list[dict]) -> dict:
    margins = np.array([[figure(table, n, s) - anchors[n] for n in names] for s in grid])
    out: dict = {"held_out": {}}
    for j, name in enumerate(names):
        others = [i for i in range(len(names)) if i != j] or [j]
        best = int(np.argmax(margins[:, others].min(axis=1)))
        out["held_out"][name] = {"setting": grid[best], "ndcg@10": round(figure(table, name, grid[best]), 4),
                                 "margin": round(float(margins[best, j]), 4),
                                 "worst_margin_on_others": round(float(margins[best, others].min()), 4)}
    best = int(np.argmax(margins.min(axis=1)))
    out["chosen"] = {"setting": grid[best], "worst_margin": round(float(margins[best].min()), 4),
                     "per_set": {n: round(figure(table, n, grid[best]), 4) for n in names}}
    out["held_out_worst_margin"] = min(v["margin"] for v in out["held_out"].values())
    return out


def run_stage(names: list[str], cache: Path, table: dict, fusion: tuple[float, str] | None) -> None:
    """Fill ``table[set][variant][setting]``; with ``fusion`` only that lexical variant, fused."""
    variants: dict[Path, dict] = {}  # the NG sets share one corpus, so one index and its variants
    for name in names:
        data = ragkit.load_beir(DATA / name)
        t = time.perf_counter()
        path = index_for(name, None, cache)
        with ragkit.Index.open(path) as idx:
            if path not in variants:
                variants = {path: lexical_variants(idx, name in RUSSIAN, fusion)}
            for (k1, analysis), (lex, doclex) in variants[path].items():
                key = f"{k1}|{analysis}"
                table.setdefault(name, {}).setdefault(key, {}).update(
                    score_set(idx, data, lex, doclex, with_fusion=fusion is not None))
                print(f"{name} {key} {'fusion' if fusion else 'lexical'}: dw=1.0 {table[name][key]['lexical dw=1.0']:.4f} "
                      f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    ap.add_argument("--out", type=Path, default=RESULTS / "selection.json")
    ap.add_argument("sets", nargs="*", default=list(SETS))
    args = ap.parse_args()
    anchors = {k: v["ndcg@10"] for k, v in json.loads((RESULTS / "anchor.json").read_text())["sets"].items()}
    table: dict[str, dict[str, dict[str, float]]] = {}
    names = list(args.sets)
    t = time.perf_counter()
    run_stage(names, args.cache, table, None)
    lexical = leave_one_out(table, anchors, names, lexical_settings())
    chosen = lexical["chosen"]["setting"]
    print("lexical stage:", json.dumps(lexical, indent=1), file=sys.stderr, flush=True)
    variant = (chosen["k1"], chosen["analysis"])
    run_stage(names, args.cache, table, variant)
    fused = leave_one_out(table, anchors, names, fusion_settings(*variant))
    args.out.write_text(json.dumps({"environment": environment(), "anchors": anchors,
                                    "seconds": round(time.perf_counter() - t, 1),
                                    "lexical_stage": lexical, "fusion_stage": fused, "table": table}, indent=1) + "\n")
    print(json.dumps(fused, indent=1))

if __name__ == "__main__":
    main()
