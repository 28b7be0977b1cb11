"""Metrics against hand-computed values, BEIR reading, and document scoring by best passage."""

from __future__ import annotations

import json
import math

import pytest

from ragkit.eval.beir import load_beir
from ragkit.errors import InvalidArgumentError
from ragkit.eval.metrics import documents_by_best_passage, mrr_at_k, ndcg_at_k, recall_at_k, score_runs


def test_ndcg_hand_computed():
    # relevant: a, b. ranking: x a y b -> DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "y", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(expected)
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], {"a": 1}, 10) == 0.0
    # cut-off: the hit at rank 3 does not count at k=2
    assert ndcg_at_k(["x", "y", "a"], {"a": 1}, 2) == 0.0


def test_ndcg_graded():
    # rel a=2, b=1; ranking b a: DCG = (2^1-1)/1 + (2^2-1)/log2(3); IDCG = 3/1 + 1/log2(3)
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}) == pytest.approx(expected)


def test_recall_and_mrr():
    rel = {"a": 1, "b": 1, "c": 1, "d": 1}
    ranked = ["a", "x", "b"] + [f"n{i}" for i in range(20)] + ["c"]
    assert recall_at_k(ranked, rel, 10) == pytest.approx(0.5)
    assert recall_at_k(ranked, rel, 100) == pytest.approx(0.75)
    assert mrr_at_k(["x", "y", "a"], {"a": 1}) == pytest.approx(1 / 3)
    assert mrr_at_k(["x"] * 10 + ["a"], {"a": 1}) == 0.0


def test_score_runs_averages_and_missing_query_scores_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    res = score_runs({"q1": ["a"]}, qrels)
    assert res.queries == 2
    assert res.ndcg10 == pytest.approx(0.5)
    assert res.mrr10 == pytest.approx(0.5)
    assert res.to_dict().keys() == {"ndcg@10", "recall@10", "recall@100", "mrr@10", "queries"}


def test_documents_by_best_passage_first_occurrence_wins():
    passage_docs = {0: "A", 1: "A", 2: "B", 3: "C", 4: "B"}
    assert documents_by_best_passage([1, 4, 0, 3, 2], passage_docs) == ["A", "B", "C"]
    assert documents_by_best_passage([1, 4, 0, 3, 2], passage_docs, depth=2) == ["A", "B"]


def _write_beir(root, qrels_rows):
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "", "text": "x"}) + "\n")
    (root / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": f"query {q}"}) for q in ("q1", "q2", "q3")) + "\n"
    )
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels_rows))


def test_load_beir_keeps_judged_queries_only(tmp_path):
    _write_beir(tmp_path, ["q1\td1\t1\n", "q2\td1\t0\n", "q3\td9\t2\n"])
    data = load_beir(tmp_path)
    assert set(data.queries) == {"q1", "q3"}
    assert data.qrels == {"q1": {"d1": 1}, "q3": {"d9": 2}}
    assert data.corpus.name == "corpus.jsonl"


def test_load_beir_errors(tmp_path):
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        load_beir(tmp_path / "nope")
    with pytest.raises(InvalidArgumentError, match="no corpus"):
        load_beir(tmp_path)
    _write_beir(tmp_path / "ds", ["q1\td1\t1\n"])
    with pytest.raises(InvalidArgumentError, match="split 'dev'"):
        load_beir(tmp_path / "ds", "dev")
