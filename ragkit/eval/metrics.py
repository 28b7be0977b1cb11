"""Retrieval metrics and the evaluation loop: a document is scored by its best passage."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragkit.eval.beir import BeirDataset
    from ragkit.search.fusion import FusionConfig
    from ragkit.search.index import Index

CUTOFFS_RECALL = (10, 100)
DOC_DEPTH = 100


def dcg(gains: Sequence[float]) -> float:
    return sum((2.0**g - 1.0) / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with graded gains 2^rel - 1 (binary relevance: 1 for a hit)."""
    ideal = dcg(sorted(relevant.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([relevant.get(d, 0) for d in ranked[:k]]) / ideal


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if relevant.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


@dataclass
class EvalResult:
    ndcg10: float
    recall10: float
    recall100: float
    mrr10: float
    queries: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "ndcg@10": round(self.ndcg10, 4),
            "recall@10": round(self.recall10, 4),
            "recall@100": round(self.recall100, 4),
            "mrr@10": round(self.mrr10, 4),
            "queries": self.queries,
        }


def score_runs(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> EvalResult:
    """Average the metrics over the judged queries; a query with no run scores zero."""
    n = len(qrels)
    if n == 0:
        return EvalResult(0.0, 0.0, 0.0, 0.0, 0)
    tot = [0.0, 0.0, 0.0, 0.0]
    for qid, rel in qrels.items():
        ranked = runs.get(qid, [])
        tot[0] += ndcg_at_k(ranked, rel, 10)
        tot[1] += recall_at_k(ranked, rel, 10)
        tot[2] += recall_at_k(ranked, rel, 100)
        tot[3] += mrr_at_k(ranked, rel, 10)
    return EvalResult(*(t / n for t in tot), queries=n)


def documents_by_best_passage(ids: Sequence[int], passage_docs: Mapping[int, str], depth: int = DOC_DEPTH) -> list[str]:
    """Collapse a best-first passage ranking into a document ranking (first occurrence wins)."""
    seen: dict[str, None] = {}
    for pid in ids:
        doc = passage_docs.get(int(pid))
        if doc is not None and doc not in seen:
            seen[doc] = None
            if len(seen) >= depth:
                break
    return list(seen)


def evaluate(
    index: Index,
    dataset: BeirDataset,
    *,
    mode: str = "hybrid",
    fusion: FusionConfig | None = None,
    batch: int = 256,
    collapse: bool = False,
    runs_out: dict[str, list[str]] | None = None,
) -> EvalResult:
    """Run every judged query of ``dataset`` against ``index`` and score document rankings.

    ``collapse`` shows one document per duplicate group, as search does (the qrels are not
    changed: a relevant reprint hidden behind its twin counts as missed). ``runs_out``, if
    given, receives each query's document ranking.
    """
    passage_docs = index.passage_documents()
    docs = max(1, int(index.manifest["counts"]["documents"]))
    per_doc = max(1.0, len(index) / docs)
    # Enough passages to reach DOC_DEPTH distinct documents in all but pathological cases.
    fetch = min(len(index), int(DOC_DEPTH * per_doc * 3) + 10)
    qids = list(dataset.queries)
    runs: dict[str, list[str]] = {}
    for lo in range(0, len(qids), batch):
        chunk = qids[lo : lo + batch]
        ranked = index.rank_passages([dataset.queries[q] for q in chunk], fetch, mode=mode, fusion=fusion)
        for qid, fused in zip(chunk, ranked):
            runs[qid] = documents_by_best_passage(fused.ids, passage_docs)
    if collapse:
        runs = collapse_runs(runs, duplicate_group_of(index))
    if runs_out is not None:
        runs_out.update(runs)
    return score_runs(runs, dataset.qrels)


def duplicate_group_of(index: Index) -> dict[str, int]:
    """Document id -> its duplicate group (documents in no group are absent)."""
    groups = index.duplicate_groups()
    if groups is None:
        return {}
    return {doc_id: g for g, members in enumerate(groups[1].groups) for _, doc_id, _ in members}


def collapse_runs(runs: Mapping[str, Sequence[str]], group_of: Mapping[str, int]) -> dict[str, list[str]]:
    """Each ranking with the documents of a group after its first one dropped."""
    out = {}
    for qid, ranked in runs.items():
        seen: set[int] = set()
        kept = []
        for doc in ranked:
            g = group_of.get(doc)
            if g is None or g not in seen:
                kept.append(doc)
                if g is not None:
                    seen.add(g)
        out[qid] = kept
    return out
