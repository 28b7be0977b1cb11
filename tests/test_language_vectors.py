"""A mixed archive's minority language gets its own model (ragkit.build.languages, ragkit.search.routes).

Real parts: navec-ru for the Russian majority, the packaged all-MiniLM-L6-v2 for the English
documents, real FAISS files, and the installed ``ragkit`` command as a subprocess.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ragkit
from conftest import shared_data
from mixed_corpus import ENGLISH, write
from ragkit.build.languages import MIN_DOCUMENTS, plan
from ragkit.errors import IndexFormatError
from ragkit.lexical.analysis import detect_language, document_language

RAGKIT = str(Path(sys.executable).with_name("ragkit"))
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# English paraphrases sharing no word with any document: only dense can find what they are about
PARAPHRASES = {"feline companions": "en-cats", "immunisation against influenza": "en-vaccine",
               "fossilised reptiles": "en-museum"}
RUSSIAN = ["новая линия метро", "ключевая ставка банка", "урожай пшеницы", "технопарки Москвы"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write(tmp_path_factory.mktemp("mixed"))


@pytest.fixture(scope="module")
def two(corpus, tmp_path_factory):
    """The mixed archive indexed with the defaults: navec-ru plus all-MiniLM-L6-v2 for English."""
    path = tmp_path_factory.mktemp("two") / "index"
    ragkit.build_index([corpus], path)
    return path


@pytest.fixture(scope="module")
def one(corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("one") / "index"
    ragkit.build_index([corpus], path, options=ragkit.BuildOptions(language_vectors=False))
    return path


def test_minority_language_gets_a_second_index_of_its_passages(two):
    with ragkit.Index.open(two) as idx:
        assert idx.manifest["model"]["name"].startswith("navec-ru")
        (entry,) = idx.manifest["language_vectors"]["indexes"]
        english = {i for i, _, _ in ENGLISH}
        english_passages = [p for p, d in idx.passage_documents().items() if d in english]
        assert entry["language"] == "en" and entry["model"]["name"] == MINILM
        assert entry["documents"] == len(ENGLISH) and entry["passages"] == len(english_passages)
        side = idx.dense_side("a question in English")
        assert side.language == "en" and side.model == MINILM
        assert sorted(side.vectors.ids().tolist()) == sorted(english_passages)
        assert idx.dense_side("вопрос по-русски").language is None
        assert idx.verify()["en vectors"] == len(english_passages)


def test_the_int8_variable_reaches_the_model_that_has_int8_and_leaves_navec_alone(corpus, tmp_path, monkeypatch):
    """RAGKIT_PASSAGE_BACKEND=onnx-int8 on a mixed archive: navec-ru keeps its lookups, the English
    index is embedded in int8 (before, the navec-ru side tried to export an int8 model and crashed)."""
    from ragkit.encoders.embedder import Embedder
    from ragkit.encoders.registry import BACKEND_ENV, recorded_backend
    from ragkit.errors import InvalidArgumentError

    monkeypatch.setenv(BACKEND_ENV, "onnx-int8")
    path = tmp_path / "index"
    ragkit.build_index([corpus], path)
    with ragkit.Index.open(path) as idx:
        assert idx.manifest["model"]["name"].startswith("navec-ru")
        assert recorded_backend(idx.manifest["model"]) == "torch"
        (entry,) = idx.manifest["language_vectors"]["indexes"]
        assert entry["model"]["name"] == MINILM and recorded_backend(entry["model"]) == "onnx-int8"
    with pytest.raises(InvalidArgumentError, match="no onnx-int8 backend"):
        Embedder("navec-ru", backend="onnx-int8")


def test_english_queries_take_their_dense_side_from_the_english_model(two, one):
    english = {i for i, _, _ in ENGLISH}
    with ragkit.Index.open(two) as idx, ragkit.Index.open(one) as single:
        for query, doc in PARAPHRASES.items():
            found = idx.search(query, 3, mode="dense")
            assert found[0].doc_id == doc, (query, [r.doc_id for r in found])
            assert {r.doc_id for r in found} <= english
            assert idx.search(query, 1)[0].doc_id == doc
            # one model: the English query gets no dense signal, and BM25 shares no word with it
            assert single.search(query, 3) == []


def test_russian_queries_rank_as_with_one_model(two, one):
    with ragkit.Index.open(two) as idx, ragkit.Index.open(one) as single:
        for query in RUSSIAN:
            for mode in ("hybrid", "dense"):
                a, b = idx.search(query, 10, mode=mode), single.search(query, 10, mode=mode)
                assert [(r.doc_id, r.start) for r in a] == [(r.doc_id, r.start) for r in b], (query, mode)
                assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=1e-6)


def test_hybrid_scores_passages_outside_the_second_index_lowest():
    from ragkit.search.routes import DenseSide
    from ragkit.vectors.faiss_index import VectorIndex

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(4, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex.create(8)
    index.add(np.array([3, 5, 8, 9]), vectors)
    side = DenseSide("fake", 8, lambda: index, lambda: None, language="en", complete=False)  # type: ignore[arg-type]
    scores = side.scores(np.array([1, 3, 5, 7, 9]), vectors[0])
    present = vectors[[0, 1, 3]] @ vectors[0]
    assert scores[[1, 2, 4]] == pytest.approx(present, abs=1e-6)
    assert scores[0] == scores[3] == pytest.approx(present.min(), abs=1e-6)


def test_updates_keep_the_second_index_in_step(two, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(two, path)
    with ragkit.Index.open(path) as idx:
        before = idx.dense_side("English").vectors
        kept_ids = np.sort(before.ids())
        kept = before.reconstruct(kept_ids)
    new = ragkit.Document(id="en-orchestra", title="Orchestra plays in the park",
                          text="The symphony orchestra gave a free open-air concert in the park on Sunday evening.")
    ragkit.update_index(path, add=[new])
    with ragkit.Index.open(path) as idx:
        idx.verify()
        side = idx.dense_side("English")
        (entry,) = idx.manifest["language_vectors"]["indexes"]
        assert entry["documents"] == len(ENGLISH) + 1 and entry["passages"] == len(kept_ids) + 1
        assert side.vectors.reconstruct(kept_ids) == pytest.approx(kept, abs=1e-6)  # from the cache, unchanged
        assert idx.search("musicians performing outdoors", 1, mode="dense")[0].doc_id == "en-orchestra"
    ragkit.update_index(path, remove=["en-orchestra", "en-cats"])  # nine English documents: below the minimum
    with ragkit.Index.open(path) as idx:
        idx.verify()
        assert idx.manifest["language_vectors"] == {"enabled": True, "indexes": []}
        assert idx.dense_side("English").language is None
        assert not [n for n in os.listdir(path) if n.startswith("vectors-en-")][2:]  # old ones go after a round


def test_an_approximate_second_index_is_refilled_by_a_small_update(corpus, tmp_path):
    """As the main index: an update that changes few of its passages keeps its training and
    tuning (ragkit.build.refill) instead of training and tuning it again."""
    path = tmp_path / "index"
    ragkit.build_index([corpus], path, options=ragkit.BuildOptions(index_type="hnsw"))
    (before,) = json.loads((path / "manifest.json").read_text())["language_vectors"]["indexes"]
    assert before["factory"].startswith("HNSW") and before["retrain"]["refilled"] is False
    new = ragkit.Document(id="en-orchestra", title="Orchestra plays in the park",
                          text="The symphony orchestra gave a free open-air concert in the park on Sunday evening.")
    ragkit.update_index(path, add=[new])
    (after,) = json.loads((path / "manifest.json").read_text())["language_vectors"]["indexes"]
    assert after["retrain"] == {"passages": before["passages"], "changed": 1, "share": 0.1, "refilled": True}
    assert (after["factory"], after["search"], after["tuning"]) == (before["factory"], before["search"], before["tuning"])
    with ragkit.Index.open(path) as idx:
        idx.verify()
        assert idx.search("musicians performing outdoors", 1, mode="dense")[0].doc_id == "en-orchestra"


def test_the_minimum_and_the_model_rule():
    assert plan(["ru"] * 50 + ["en"] * MIN_DOCUMENTS, "navec-ru-v1") == {"en": MINILM}
    assert plan(["ru"] * 50 + ["en"] * (MIN_DOCUMENTS - 1), "navec-ru-v1") == {}
    assert plan(["ru"] * 2000 + ["en"] * 12, "navec-ru-v1") == {}  # under 1 % of the archive
    assert plan(["en"] * 50 + ["ru"] * 20, MINILM) == {"ru": "navec-ru"}
    assert plan(["ru"] * 50 + ["en"] * 20, "some/multilingual-model") == {}  # reads every language
    assert plan(["ru"] * 50 + ["und"] * 20, "navec-ru-v1") == {}


def test_a_manifest_naming_a_second_file_outside_the_index_is_refused(two, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(two, path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["language_vectors"]["indexes"][0]["file"] = "../vectors-en.faiss"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match=r"language_vectors.indexes\[0\].file"):
        ragkit.Index.open(path)


def test_a_damaged_second_vector_file_is_refused_at_open(two, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(two, path)
    name = json.loads((path / "manifest.json").read_text())["language_vectors"]["indexes"][0]["file"]
    data = bytearray((path / name).read_bytes())
    data[-1] ^= 0xFF
    (path / name).write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=name):
        ragkit.Index.open(path)


def test_every_field_of_the_second_index_dropped_or_retyped_is_clean(two, tmp_path):
    """Each field of a ``language_vectors`` entry (and of its model) dropped and set to a wrong
    value: ``info --verify``, an English dense search and an update each end in exit 0 or one
    error line, never a traceback (the manifest fuzzers' index has no second index)."""
    from hostile_helpers import assert_clean, cli

    base = json.loads((two / "manifest.json").read_text())
    entry = base["language_vectors"]["indexes"][0]
    paths = [(k,) for k in entry] + [("model", k) for k in entry["model"]] + [("enabled",), ("indexes",)]
    work = tmp_path / "index"
    shutil.copytree(two, work)
    runs = 0
    for path in paths:
        for value in ("@drop", None, -1, "abc", {}, []):
            edited = json.loads(json.dumps(base))
            section = edited["language_vectors"]
            node = section if path in (("enabled",), ("indexes",)) else section["indexes"][0]
            for key in path[:-1]:
                node = node[key]
            if value == "@drop":
                node.pop(path[-1])
            else:
                node[path[-1]] = value
            (work / "manifest.json").write_text(json.dumps(edited))
            for args in (["info", "--verify", "--index", work],
                         ["search", "feline companions", "--mode", "dense", "--index", work],
                         ["remove", "en-cats", "--index", work, "--quiet"]):
                rc, _, err = cli(args)
                assert_clean(rc, err, (path, value, args[0]))
                runs += 1
                if rc == 0 and args[0] == "remove":  # a harmless edit: the update went through; start over
                    shutil.rmtree(work)
                    shutil.copytree(two, work)
    assert runs == len(paths) * 6 * 3


def test_cli_index_info_search_and_opting_out(corpus, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([RAGKIT, *args], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr
        return out

    run("index", str(corpus), "--index", str(tmp_path / "two"), "--quiet")
    info = run("info", "--index", str(tmp_path / "two")).stdout
    assert f"en queries: {MINILM} over 10 passages of 10 en documents" in info
    found = json.loads(run("search", "feline companions", "--index", str(tmp_path / "two"),
                           "--mode", "dense", "--json").stdout)
    assert found["results"][0]["doc_id"] == "en-cats"
    run("index", str(corpus), "--index", str(tmp_path / "one"), "--no-language-vectors", "--quiet")
    assert "en queries" not in run("info", "--index", str(tmp_path / "one")).stdout
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert manifest["language_vectors"] == {"enabled": False, "indexes": []}


def test_document_language_agrees_with_detect_language():
    samples = ["Москва, 2025 год: новые станции метро", "The quick brown fox", "Ελληνικά κείμενα και λέξεις",
               "中文新闻报道", "12345 — 678", "", "Café naïve résumé", "Привет hello мир world дом",
               "ok да", "Ѣ старая орѳографія", "العربية"]
    for text in samples:
        assert document_language(text) == detect_language(text), text


def test_document_language_agrees_on_the_shared_corpora():
    for name in ("news-ru/ng-title2doc", "xquad/ru", "xquad/en", "scifact"):
        folder = shared_data(name)
        corpus = folder / "corpus.jsonl"
        opener = open if corpus.is_file() else gzip.open
        with opener(corpus if corpus.is_file() else folder / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
            docs = [json.loads(line) for line in fh if line.strip()]
        for d in docs:
            text = f"{d.get('title', '')} {d['text'][:2000]}"
            assert document_language(text) == detect_language(text), (name, d["_id"])
