"""Modes, fusion, filters and per-document limits, through the library and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ragkit import Document, Index, build_index
from ragkit.cli.app import app
from ragkit.errors import InvalidArgumentError
from ragkit.search.fusion import FusionConfig, fuse
from ragkit.store.filters import Filters

runner = CliRunner()


def _news(i: int, year: int, source: str) -> Document:
    body = " ".join(f"Предложение {j} о теме {i}: ёлка, метро и городские новости." for j in range(12))
    return Document(f"n{i}", body, title=f"Новость {i}", date=f"{year}-0{1 + i % 9}-15", source=source)


DOCS = [_news(i, 2020 + i % 5, f"/archive/{'ru' if i % 2 else 'world'}/n{i}.txt") for i in range(20)] + [
    Document("en1", "The Moscow metro opened new stations in the north of the city.", title="Metro", date="2024-02-01",
             source="/archive/en/metro.txt"),
    Document("mix", "Технопарки Москвы and the technology parks of Moscow grow.", title="Mixed", date="2023-05-05",
             source="/archive/en/mix.txt"),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory, real_embedder):
    path = tmp_path_factory.mktemp("hybrid")
    build_index(DOCS, path, embedder=real_embedder, options=ragkit_options())
    return Index.open(path, embedder=real_embedder)


def ragkit_options():
    from ragkit.build.options import BuildOptions

    return BuildOptions(max_tokens=48)  # several passages per document


def test_modes_rank_and_report_components(index):
    for mode in ("lexical", "dense", "hybrid"):
        res = index.search("metro stations", k=3, mode=mode)
        assert res and res[0].doc_id == "en1", (mode, [r.doc_id for r in res])
        assert all(r.mode == mode for r in res)
    hybrid = index.search("metro stations", k=3, mode="hybrid")[0]
    assert set(hybrid.scores) == {"lexical", "dense"}
    assert index.search("metro stations", k=3, mode="lexical")[0].scores.keys() == {"lexical"}
    with pytest.raises(InvalidArgumentError, match="mode"):
        index.search("metro", mode="fuzzy")


def test_cyrillic_yo_and_mixed_documents_are_searchable(index):
    assert index.search("елка", k=1, mode="lexical")  # ё written as е
    top = index.search("технопарк", k=1, mode="lexical")[0]
    assert top.doc_id == "mix"
    assert index.search("technology park", k=1, mode="lexical")[0].doc_id == "mix"


def test_filters_apply_before_ranking(index):
    res = index.search("новости метро", k=10, mode="hybrid", filters=Filters(since="2022-01-01", until="2022-12-31"), per_doc=None)
    assert len(res) == 10  # 10 passages match the filter, so 10 come back
    assert all(r.date and "2022-01-01" <= r.date <= "2022-12-31" for r in res)
    dense = index.search("новости", k=10, mode="dense", filters=Filters(source="ru/*"), per_doc=None)
    assert len(dense) == 10 and all("/ru/" in r.source for r in dense)
    assert index.search("metro", k=5, filters=Filters(source="/nowhere/*")) == []
    with pytest.raises(InvalidArgumentError, match="YYYY-MM-DD"):
        Filters(since="yesterday")


def test_per_doc_limit_keeps_k_when_possible(index):
    # The 20 templated news texts differ in one number per sentence, so they form one group of
    # near duplicates; this test is about the per-document cap, so every copy is kept.
    capped = index.search("новости метро ёлка", k=10, mode="lexical", per_doc=1, collapse=False)
    assert len(capped) == 10 and len({r.doc_id for r in capped}) == 10
    two = index.search("новости метро ёлка", k=10, mode="lexical", per_doc=2, collapse=False)
    counts = {d: [r.doc_id for r in two].count(d) for d in {r.doc_id for r in two}}
    assert max(counts.values()) <= 2 and len(two) == 10
    assert [r.rank for r in two] == list(range(1, 11))


def test_fusion_convex_and_rrf_by_hand():
    ids = np.array([1, 2, 3])
    lexical = np.array([10.0, 5.0, 0.0])
    dense = np.array([0.2, 0.6, 0.4])
    cfg = FusionConfig(dense_weight=0.5)
    out = fuse(ids, lexical, dense, cfg, 0.5)
    # convex: 0.5 * lex/max + 0.5 * minmax(dense): 1 -> 0.5, 2 -> 0.75, 3 -> 0.25
    assert out.ids.tolist() == [2, 1, 3]
    assert out.scores.tolist() == pytest.approx([0.75, 0.5, 0.25])
    assert fuse(ids, lexical, dense, cfg, 0.0).ids.tolist() == [1, 2, 3]
    rrf = fuse(ids, lexical, dense, FusionConfig(method="rrf"), 0.5)
    # ranks: lexical 1,2,3; dense 3,1,2 -> id 2: 1/62+1/61, id 1: 1/61+1/63, id 3: 1/63+1/62
    assert rrf.ids.tolist() == [2, 1, 3]


def test_language_aware_dense_weight():
    cfg = FusionConfig(dense_weight=0.3, foreign_dense_weight=0.0)
    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    assert cfg.weight_for(minilm, "en") == 0.3
    assert cfg.weight_for(minilm, "ru") == 0.0
    assert cfg.weight_for("some/multilingual-model", "ru") == 0.3
    with pytest.raises(InvalidArgumentError):
        FusionConfig(dense_weight=1.5)


def test_cli_modes_filters_per_doc(index):
    path = str(index.path)
    res = runner.invoke(app, ["search", "новости метро", "--index", path, "--json", "--mode", "lexical",
                              "--since", "2021-01-01", "--until", "2021-12-31", "--per-doc", "1", "-k", "4",
                              "--no-collapse"])  # the templated texts are near duplicates (see above)
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["mode"] == "lexical" and len(obj["results"]) == 4
    assert len({r["doc_id"] for r in obj["results"]}) == 4
    assert all(r["date"].startswith("2021") for r in obj["results"])
    src = json.loads(runner.invoke(app, ["search", "metro", "--index", path, "--json", "--source", "*/en/*"]).stdout)
    assert {r["doc_id"] for r in src["results"]} <= {"en1", "mix"}
    bad = runner.invoke(app, ["search", "metro", "--index", path, "--since", "2021-13-01"])
    assert bad.exit_code == 1 and "YYYY-MM-DD" in bad.stderr
    bad_mode = runner.invoke(app, ["search", "metro", "--index", path, "--mode", "nope"])
    assert bad_mode.exit_code == 1 and "unknown mode" in bad_mode.stderr
    table = runner.invoke(app, ["search", "metro stations", "--index", path])
    assert table.exit_code == 0 and "Metro" in table.stdout


def test_model_profiles_give_measured_default_weights():
    cfg = FusionConfig()
    assert cfg.weight_for("sentence-transformers/all-MiniLM-L6-v2", "en") == 0.5
    assert cfg.weight_for("navec-ru-v1", "ru") == 0.3
    assert cfg.weight_for("navec-ru-v1", "en") == 0.0
    assert FusionConfig(dense_weight=0.7).weight_for("navec-ru-v1", "ru") == 0.7


def test_default_model_follows_the_corpus_language():
    from ragkit.encoders.registry import default_model

    russian = [Document(f"r{i}", "Мэр Москвы рассказал о технопарках и новых станциях метро.") for i in range(3)]
    english = [Document(f"e{i}", "The mayor talked about technology parks and new metro stations.") for i in range(3)]
    assert default_model(russian + english[:1]) == "navec-ru"
    assert default_model(english + russian[:1]) == "sentence-transformers/all-MiniLM-L6-v2"
