"""Text analysis and the BM25 index: scores against a reference, Russian and mixed text, files.

Everything here is real (PyStemmer, bm25s as the reference for the weights, files in tmp_path). The slow tests measure nDCG@10
on the shared evaluation data; bm25s's own figures (its tokenizer, Snowball, stopwords) are
xquad/ru 0.953, xquad/en 0.968, news-ru/ng-title2doc 0.740.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragkit.lexical import analysis, bm25
from ragkit.lexical.analysis import Analyzer, detect_language
from ragkit.errors import EmptyCorpusError, IndexFormatError, InvalidArgumentError
from ragkit.lexical.bm25 import LexicalIndex

ROOT = Path(__file__).resolve().parent.parent
SEED = next((ROOT / "seeds").glob("*.txt"), None)

# --------------------------------------------------------------------------- reference BM25


def reference_bm25(docs: list[list[str]], query: list[str], k1: float, b: float) -> np.ndarray:
    """Lucene BM25 written out: idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 * norm).

    (Lucene >= 8 drops the constant (k1 + 1) factor, as bm25s's "lucene" method does.) Each
    distinct query term counts once.
    """
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    df = Counter(t for d in docs for t in set(d))
    out = np.zeros(n)
    for i, d in enumerate(docs):
        tf = Counter(d)
        for term in set(query):
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                out[i] += idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(d) / avgdl))
    return out


WORDS = ["river", "mountain", "forest", "city", "train", "harbour", "bridge", "garden", "castle", "market"]


def random_corpus(seed: int, n_docs: int = 40) -> list[str]:
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        length = int(rng.integers(1, 25))
        # a skewed draw so that terms repeat inside documents
        weights = np.linspace(2, 0.2, len(WORDS))
        words = rng.choice(WORDS, size=length, p=weights / weights.sum())
        docs.append(" ".join(words))
    docs.append("river river river river river river")  # tf saturation
    docs.append("the of and")  # only stopwords: no terms at all
    return docs


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.5, 0.0), (2.0, 1.0)])
def test_scores_match_reference_bm25(k1, b):
    texts = random_corpus(seed=7)
    ids = np.arange(100, 100 + len(texts), dtype=np.int64)
    index = LexicalIndex.build(ids, texts, k1=k1, b=b)
    terms = index.analyzer.terms_batch(texts)
    for query in ["river", "castle market", "river river bridge", "garden of the forest", "harbours"]:
        expected = reference_bm25(terms, index.analyzer.terms(query), k1, b)
        got = index.scores(query, ids)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
        # search returns exactly the documents with a positive score, best first
        top_ids, top_scores = index.search(query, k=len(texts))
        positive = np.flatnonzero(expected > 0)
        assert sorted(top_ids.tolist()) == sorted(ids[positive].tolist())
        assert np.all(np.diff(top_scores) <= 0)
        np.testing.assert_allclose(top_scores, expected[top_ids - 100], rtol=1e-5)


# ------------------------------------------------------------------------------- analysis


def test_cyrillic_is_kept_and_stemmed():
    terms = Analyzer(russian="snowball").terms("Мэр Москвы Сергей Собянин рассказал о технопарках")
    assert terms == ["мэр", "москв", "серг", "собянин", "рассказа", "технопарк"]


def test_yo_and_stress_marks_fold():
    a = Analyzer(russian="snowball")
    assert a.terms("Ёлка") == a.terms("елка") == a.terms("ЁЛКА")
    assert a.terms("Москва́ за́мок") == a.terms("Москва замок")  # U+0301 stress marks
    assert a.terms("йод Йошкар") == ["йод", "йошкар"]  # й survives the accent stripping
    assert a.terms("café naïve") == ["cafe", "naiv"]


def test_tokens_hyphens_digits_and_single_letters():
    a = Analyzer(russian="snowball")
    assert a.terms("Северо-Западный") == ["север", "западн"]  # hyphenated words are split
    assert a.terms("COVID-19 в 2030 году: 3,5 раза") == ["covid", "19", "2030", "год", "3", "5", "раз"]
    assert a.terms("x y z snake_case") == ["snake", "case"]  # single letters dropped, _ splits
    assert a.terms("") == []


def test_stopwords_and_stemming_can_be_switched_off():
    assert Analyzer().terms("и в на the of") == []
    assert Analyzer(stopwords=False).terms("и в на the") == ["на", "the"]  # single letters go anyway
    assert Analyzer(stem=False).terms("Технопарки Москвы") == ["технопарки", "москвы"]
    config = Analyzer(stem=False, stopwords=True).config()
    stop = config.pop("stopword_list")
    assert config == {"name": "ru-en-snowball", "version": 1, "stem": False, "stopwords": True, "russian": "snowball"}
    assert {"и", "на", "the", "of"} <= set(stop)
    json.dumps(Analyzer().config())
    # an index stores the list it used; an Analyzer rebuilt from it analyses identically
    again = Analyzer(stem=False, stopword_list=stop)
    assert again.terms("и на the Технопарки") == Analyzer(stem=False).terms("и на the Технопарки")


def test_script_picks_the_stemmer_per_token():
    # "running" is stemmed the English way, "бегущими" the Russian way, in one text
    assert Analyzer(russian="snowball").terms("running бегущими") == ["run", "бегущ"]
    assert Analyzer(russian="pymorphy3").terms("running бегущими") == ["run", "бежать"]


def test_detect_language():
    assert detect_language("Мэр Москвы Сергей Собянин рассказал о технопарках (ОЭЗ, MAX)") == "ru"
    assert detect_language("The mayor of Moscow talked about tech parks in Москва") == "en"
    assert detect_language("2025-10-22, 14:00") == "und"
    assert detect_language("東京 と London と Москва") == "und"
    assert detect_language("") == "und"


def test_batch_equals_single_and_survives_cache_replacement(monkeypatch):
    texts = [SEED.read_text(encoding="utf-8") if SEED else "технопарки Москвы"] + random_corpus(seed=3, n_docs=10)
    expected = [Analyzer().terms(t) for t in texts]
    monkeypatch.setattr(analysis, "_CACHE_LIMIT", 20)
    a = Analyzer()
    assert a.terms_batch(texts) == expected
    assert a.terms_batch(texts[::-1]) == expected[::-1]
    assert [a.terms(t) for t in texts] == expected


def test_analyzer_shared_between_threads(monkeypatch):
    monkeypatch.setattr(analysis, "_CACHE_LIMIT", 50)
    texts = random_corpus(seed=11, n_docs=30) + ["Москвы технопарки елки " * 3, "рассказал Собянин"] * 10
    expected = [Analyzer().terms(t) for t in texts]
    shared = Analyzer()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(5):
            assert list(pool.map(shared.terms, texts)) == expected


_ALPHABET = st.sampled_from(
    [*"abcxyz09 -'.,_АБВабвеёЁйЙшщъэюяІіЇ", *"\u0301\u0306\u0308éßﬁ№²\u00a0«—…"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
def test_fast_normalisation_path_gives_the_same_tokens(text):
    full = analysis._TOKEN.findall(analysis._normalize_full(text))
    assert analysis._TOKEN.findall(analysis._normalize(text)) == full
    assert all(ch not in t for t in full for ch in "ё\u0301")


# ---------------------------------------------------------------------------- searching


def ids_of(result: tuple[np.ndarray, np.ndarray]) -> list[int]:
    found, scores = result
    assert found.dtype == np.int64 and scores.dtype == np.float32
    assert np.all(scores > 0)
    return found.tolist()


@pytest.fixture(scope="module")
def russian_index() -> LexicalIndex:
    seed = SEED.read_text(encoding="utf-8") if SEED else "Мэр Москвы рассказал: технопарки Москвы растут."
    texts = [
        seed,
        "В лесу родилась ёлочка, в лесу она росла. Новогодняя ёлка.",
        "Продажа: елки и сосны к празднику.",
        "Технопарк в Казани открылся после ремонта.",
        "Число технопарков в регионах выросло.",
        "Нефть подорожала на фоне новостей из Москва-Сити.",
        "Oil prices rose after the OPEC meeting in Vienna.",
        "Нефть и oil: биржа отметила рост цен, prices rise.",
        "Президент США выступил с заявлением.",
    ]
    return LexicalIndex.build(np.array([10, 11, 12, 13, 14, 15, 16, 17, 18], dtype=np.int64), texts)


def test_yo_matches_both_ways(russian_index):
    assert sorted(ids_of(russian_index.search("ёлка", 5))) == [11, 12]
    assert sorted(ids_of(russian_index.search("елки", 5))) == [11, 12]


def test_inflected_russian_forms_match(russian_index):
    for query in ["технопарки", "технопарков", "технопарк"]:
        assert set(ids_of(russian_index.search(query, 5))) == {10, 13, 14}
    assert set(ids_of(russian_index.search("Москва", 5))) == {10, 15}  # 15 says "Москва-Сити"
    assert set(ids_of(russian_index.search("Москвы", 5))) == {10, 15}
    # stress marks are ignored
    all_ids = russian_index.ids
    stressed = russian_index.scores("технопа́рки Москвы́", all_ids)
    np.testing.assert_array_equal(stressed, russian_index.scores("технопарки Москвы", all_ids))
    assert stressed[0] > 0


def test_stopwords_alone_find_nothing(russian_index):
    assert ids_of(russian_index.search("и в на не что это the of", 5)) == []
    assert ids_of(russian_index.search("", 5)) == []
    assert ids_of(russian_index.search("несуществующееслово", 5)) == []


def test_mixed_language_corpus(russian_index):
    assert sorted(ids_of(russian_index.search("нефть", 5))) == [15, 17]
    assert sorted(ids_of(russian_index.search("oil prices", 5))) == [16, 17]
    assert ids_of(russian_index.search("нефть oil price", 5))[0] == 17  # matches in both languages


def test_search_many_equals_search(russian_index):
    queries = ["технопарки", "oil", "ёлка", "и", "нефть oil"]
    many = russian_index.search_many(queries, 3)
    for query, (found, scores) in zip(queries, many):
        one = russian_index.search(query, 3)
        np.testing.assert_array_equal(found, one[0])
        np.testing.assert_array_equal(scores, one[1])


def test_ties_are_broken_by_row_order():
    index = LexicalIndex.build(np.array([5, 3, 9, 1]), ["same text", "other", "same text", "same text"])
    found, scores = index.search("text", 2)
    assert found.tolist() == [5, 9] and scores[0] == scores[1]


@pytest.fixture(scope="module")
def wide_index() -> tuple[LexicalIndex, np.ndarray]:
    """200 documents with big, scattered ids; document i mentions 'river' i % 7 + 1 times."""
    rng = np.random.default_rng(42)
    ids = rng.choice(10**12, size=200, replace=False).astype(np.int64)
    texts = [" ".join(["river"] * (i % 7 + 1) + ["bank"] * (i % 3) + ["filler"] * (i % 11)) for i in range(200)]
    texts[17] = "nothing relevant here"
    return LexicalIndex.build(ids, texts), ids


def test_allowed_filters_before_ranking(wide_index):
    index, ids = wide_index
    rng = np.random.default_rng(1)
    allowed = rng.choice(ids, size=30, replace=False)
    found, scores = index.search("river bank", 10, allowed=allowed)
    assert len(found) == 10  # k allowed docs match, so k come back
    assert set(found.tolist()) <= set(allowed.tolist())
    # the same as ranking everything and keeping the allowed ones
    all_found, all_scores = index.search("river bank", len(ids))
    keep = np.isin(all_found, allowed)
    np.testing.assert_array_equal(found, all_found[keep][:10])
    np.testing.assert_array_equal(scores, all_scores[keep][:10])


def test_allowed_edge_cases(wide_index):
    index, ids = wide_index
    few = np.array([ids[17], ids[3], ids[3], 123], dtype=np.int64)  # a non-match, a repeat, an unknown id
    assert ids_of(index.search("river", 10, allowed=few)) == [ids[3]]
    assert ids_of(index.search("river", 10, allowed=np.array([], dtype=np.int64))) == []
    assert ids_of(index.search("river", 10, allowed=np.array([]))) == []
    assert ids_of(index.search("river", 0)) == []
    with pytest.raises(InvalidArgumentError):
        index.search("river", -1)
    with pytest.raises(InvalidArgumentError):
        index.search("river", 3, allowed=np.array([1.5]))


def test_scores_for_given_ids(wide_index):
    index, ids = wide_index
    picked = ids[[17, 0, 6, 199]]
    got = index.scores("river", picked)
    full = dict(zip(*index.search("river", len(ids))))
    assert got[0] == 0
    np.testing.assert_array_equal(got[1:], [full[i] for i in picked[1:]])
    assert index.scores("и", picked).tolist() == [0, 0, 0, 0]
    with pytest.raises(InvalidArgumentError, match="not in the lexical index"):
        index.scores("river", np.array([ids[0], 7]))


def test_build_rejects_bad_input():
    with pytest.raises(InvalidArgumentError):
        LexicalIndex.build(np.array([1, 2]), ["one text"])
    with pytest.raises(InvalidArgumentError):
        LexicalIndex.build(np.array([1, 1]), ["a text", "b text"])
    with pytest.raises(InvalidArgumentError):
        LexicalIndex.build(np.array([1]), ["text"], method="bm25+")
    with pytest.raises(InvalidArgumentError):
        LexicalIndex.build(np.array([1]), ["text"], b=1.5)
    with pytest.raises(EmptyCorpusError):
        LexicalIndex.build(np.array([], dtype=np.int64), [])


def test_only_stopword_corpus_builds_and_finds_nothing():
    index = LexicalIndex.build(np.array([1, 2]), ["и в на", "the of"])
    assert len(index) == 2 and index.config()["n_terms"] == 0
    assert ids_of(index.search("и", 3)) == []


# -------------------------------------------------------------------------- persistence


def test_save_load_round_trip(tmp_path, wide_index, russian_index):
    for index in (wide_index[0], russian_index):
        folder = tmp_path / f"idx{len(index)}"
        written = index.save(folder)
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written)  # no temp files left
        queries = ["river bank", "filler", "технопарки Москвы", "нефть oil", "ёлка", "и"]
        before = index.search_many(queries, 5)
        for mmap in (False, True):
            loaded = LexicalIndex.load(folder, mmap=mmap)
            assert len(loaded) == len(index) and loaded.config() == index.config()
            for (f1, s1), (f2, s2) in zip(before, loaded.search_many(queries, 5)):
                np.testing.assert_array_equal(f1, f2)
                np.testing.assert_array_equal(s1, s2)
            np.testing.assert_array_equal(loaded.scores("river", index.ids), index.scores("river", index.ids))


def test_saved_files_hold_no_pickle(tmp_path, russian_index):
    written = russian_index.save(tmp_path)
    assert {p.suffix for p in written} == {".json", ".npy"}
    for path in written:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            assert array.dtype != object
        else:
            json.loads(path.read_text(encoding="utf-8"))
    manifest = json.loads((tmp_path / "bm25.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "ragkit-bm25" and manifest["analyzer"]["name"] == "ru-en-snowball"


def _one_line_format_error(folder: Path) -> str:
    with pytest.raises(IndexFormatError) as info:
        LexicalIndex.load(folder)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["bm25_data.npy", "bm25_indices.npy", "bm25_indptr.npy", "bm25_ids.npy", "bm25_tf.npy"])
def test_damaged_arrays_raise_format_error(tmp_path, russian_index, name):
    russian_index.save(tmp_path)
    path = tmp_path / name
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # truncated
    assert name in _one_line_format_error(tmp_path)
    path.write_bytes(b"\x00" * len(raw))  # same size, header gone
    assert name in _one_line_format_error(tmp_path)
    with open(path, "wb") as fh:  # a pickled object array smuggled in, size patched to match
        np.save(fh, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    manifest = json.loads((tmp_path / "bm25.json").read_text(encoding="utf-8"))
    manifest["files"][name] = path.stat().st_size
    (tmp_path / "bm25.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert name in _one_line_format_error(tmp_path)
    path.unlink()
    assert "missing" in _one_line_format_error(tmp_path)


def test_damaged_manifest_or_vocab_raise_format_error(tmp_path, russian_index):
    russian_index.save(tmp_path)
    manifest_path = tmp_path / "bm25.json"
    good = manifest_path.read_text(encoding="utf-8")
    manifest_path.write_text(good[:40], encoding="utf-8")
    _one_line_format_error(tmp_path)
    for key, value in [("format_version", 99), ("format", "other"), ("n_docs", 3), ("k1", "big")]:
        manifest_path.write_text(json.dumps({**json.loads(good), key: value}), encoding="utf-8")
        _one_line_format_error(tmp_path)
    newer = json.loads(good)
    newer["analyzer"]["version"] = 3  # a future analysis this ragkit cannot read
    manifest_path.write_text(json.dumps(newer), encoding="utf-8")
    assert "rebuild" in _one_line_format_error(tmp_path)
    manifest_path.write_text(good, encoding="utf-8")
    vocab = tmp_path / "bm25_vocab.json"
    vocab.write_bytes(b"[" + b" " * (vocab.stat().st_size - 1))  # same size, not JSON
    _one_line_format_error(tmp_path)
    manifest_path.unlink()
    assert "missing" in _one_line_format_error(tmp_path)
    assert "missing" in _one_line_format_error(tmp_path / "nowhere")


def test_import_stays_light():
    code = (
        "import sys, ragkit, ragkit.lexical.bm25, ragkit.lexical.analysis;"
        "print(sorted({'bm25s', 'Stemmer', 'scipy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------- evaluation (slow)


def _load_beir(root: Path) -> tuple[list[dict], dict[str, str], dict[str, set[str]]]:
    corpus = root / "corpus.jsonl"
    opener = open if corpus.exists() else gzip.open
    with opener(corpus if corpus.exists() else root / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh if line.strip()]
    qrels: dict[str, set[str]] = {}
    with open(root / "qrels" / "test.tsv", encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t")
        next(rows)  # header
        for qid, did, score in rows:
            if int(score) > 0:
                qrels.setdefault(qid, set()).add(did)
    with open(root / "queries.jsonl", encoding="utf-8") as fh:
        queries = {q["_id"]: q["text"] for q in map(json.loads, fh) if q["_id"] in qrels}
    return docs, queries, qrels


def _ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(10, len(relevant))))
    return dcg / ideal


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "minimum"),
    [("xquad/ru", 0.950), ("xquad/en", 0.965), ("news-ru/ng-title2doc", 0.730)],
)
def test_ndcg_on_shared_data(name, minimum):
    from conftest import shared_data

    docs, queries, qrels = _load_beir(shared_data(name))
    texts = [f"{d.get('title') or ''} {d['text']}" for d in docs]
    index = LexicalIndex.build(np.arange(len(docs), dtype=np.int64), texts)
    qids = sorted(queries)
    runs = index.search_many([queries[q] for q in qids], 10)
    per_query = [_ndcg_at_10([docs[i]["_id"] for i in found], qrels[q]) for q, (found, _) in zip(qids, runs)]
    score = float(np.mean(per_query))
    print(f"nDCG@10 {name}: {score:.4f} over {len(qids)} queries")
    assert score >= minimum


# ------------------------------------------------------------------ bm25s and incremental updates


def _bm25s_matrix(texts: list[str], analyzer: Analyzer, k1: float, b: float, method: str) -> dict[str, np.ndarray]:
    """bm25s's own build over the same analysed terms: the reference the weights must equal."""
    import bm25s

    vocab: dict[str, int] = {}
    doc_terms = [[vocab.setdefault(t, len(vocab)) for t in terms] for terms in analyzer.terms_batch(texts)]
    model = bm25s.BM25(k1=k1, b=b, method=method, backend="numpy")
    with np.errstate(divide="ignore", invalid="ignore"):
        model.index((doc_terms, vocab), create_empty_token=False, show_progress=False)
    return {key: np.asarray(model.scores[key]) for key in ("data", "indices", "indptr")}


NEWS = [
    "Мэр Москвы рассказал: технопарки Москвы растут, технопарк за технопарком.",
    "В лесу родилась ёлочка, в лесу она росла. Новогодняя ёлка.",
    "Нефть подорожала на фоне новостей из Москва-Сити; oil prices rose.",
    "и в на",
    "Число технопарков в регионах выросло в 2024 году.",
]


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0)])
@pytest.mark.parametrize("blocks", ["one block", "many blocks"])
def test_weights_equal_bm25s_bit_for_bit(method, k1, b, blocks, monkeypatch):
    if blocks == "many blocks":  # texts analysed and entries weighted a few at a time, as a big corpus is
        monkeypatch.setattr(bm25, "_ANALYSE_BLOCK", 7)
        monkeypatch.setattr(bm25, "_ENTRY_BLOCK", 50)
    texts = random_corpus(seed=3, n_docs=120) + NEWS
    index = LexicalIndex.build(np.arange(len(texts)), texts, k1=k1, b=b, method=method)
    expected = _bm25s_matrix(texts, index.analyzer, k1, b, method)
    for key in ("indices", "indptr", "data"):
        np.testing.assert_array_equal(index._matrix[key], expected[key], err_msg=key)
    assert index._matrix["data"].dtype == np.float32
    assert list(index._vocab) == list(dict.fromkeys(t for terms in index.analyzer.terms_batch(texts) for t in terms))


def _scores_by_id(index: LexicalIndex, queries: list[str]) -> dict[str, dict[int, float]]:
    return {q: dict(zip(index.ids.tolist(), index.score_all(q).tolist())) for q in queries}


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("blocks", ["one block", "many blocks"])
def test_updated_equals_a_fresh_build(method, seed, blocks, monkeypatch):
    if blocks == "many blocks":
        monkeypatch.setattr(bm25, "_ANALYSE_BLOCK", 3)
        monkeypatch.setattr(bm25, "_ENTRY_BLOCK", 40)
    rng = np.random.default_rng(seed)
    texts = random_corpus(seed=seed, n_docs=80) + NEWS + ["castle castle unicorn"]  # 'unicorn' only here
    ids = rng.choice(10**9, size=len(texts), replace=False).astype(np.int64)
    old = LexicalIndex.build(ids, texts, method=method)
    # keep 70 rows in a shuffled order, drop the rest (the 'unicorn' row among them), add new texts
    order = rng.permutation(len(texts))
    kept = order[:70]
    kept = kept[kept != len(texts) - 1]
    added = ["dragon harbour harbour", "Новые технопарки открылись в Казани.", "the of", "river river market"]
    layout = np.concatenate([kept[:30], [-1, -1], kept[30:], [-1, -1]])
    new_ids = np.arange(5000, 5000 + layout.size, dtype=np.int64)
    reuse = np.where(layout >= 0, ids[np.maximum(layout, 0)], -1)
    updated = old.updated(new_ids, reuse, added)
    it = iter(added)
    fresh_texts = [texts[r] if r >= 0 else next(it) for r in layout]
    fresh = LexicalIndex.build(new_ids, fresh_texts, method=method)

    cfg_u, cfg_f = updated.config(), fresh.config()
    assert cfg_u == cfg_f  # same rows, vocabulary size (unused 'unicorn' gone) and postings
    assert "unicorn" not in updated._vocab and "dragon" in updated._vocab
    queries = ["river", "castle market", "dragon harbour", "технопарки Москвы", "unicorn", "ёлка oil", "и"]
    assert _scores_by_id(updated, queries) == _scores_by_id(fresh, queries)  # exactly equal
    for q in queries:
        for a, b in zip(updated.search(q, 10), fresh.search(q, 10)):
            np.testing.assert_array_equal(a, b)
    # an updated index saves and loads like a built one, and updates again
    again = updated.updated(new_ids[:5], new_ids[:5], [])
    first_five = LexicalIndex.build(new_ids[:5], fresh_texts[:5], method=method)
    assert again.config() == first_five.config()
    assert _scores_by_id(again, queries) == _scores_by_id(first_five, queries)


def test_updated_rejects_bad_layouts(wide_index):
    index, ids = wide_index
    with pytest.raises(InvalidArgumentError, match="new rows"):
        index.updated(np.array([1, 2]), np.array([ids[0], -1]), [])
    with pytest.raises(InvalidArgumentError, match="once"):
        index.updated(np.array([1, 2]), np.array([ids[0], ids[0]]), [])
    with pytest.raises(InvalidArgumentError, match="unknown ids"):
        index.updated(np.array([1]), np.array([7]), [])
    with pytest.raises(EmptyCorpusError):
        index.updated(np.array([], dtype=np.int64), np.array([], dtype=np.int64), [])


def test_format_version_1_still_loads_and_searches(tmp_path, russian_index):
    """A folder written before term counts were stored: searchable; an update must re-analyse."""
    russian_index.save(tmp_path)
    manifest = json.loads((tmp_path / "bm25.json").read_text(encoding="utf-8"))
    manifest["format_version"] = 1
    del manifest["files"]["bm25_tf.npy"]
    (tmp_path / "bm25_tf.npy").unlink()
    (tmp_path / "bm25.json").write_text(json.dumps(manifest), encoding="utf-8")
    old = LexicalIndex.load(tmp_path)
    assert not old.has_counts and old.config() == russian_index.config()
    for q in ("технопарки", "нефть oil"):
        np.testing.assert_array_equal(old.score_all(q), russian_index.score_all(q))
    with pytest.raises(InvalidArgumentError, match="no term counts"):
        old.updated(old.ids, old.ids, [])


def test_counts_out_of_order_are_refused():
    """from_counts writes each entry to its column's place, which needs entries sorted by (column, row)."""
    from ragkit.lexical.bm25 import TermCounts

    good = bm25.count_terms(Analyzer(), ["castle river", "river market"])
    assert LexicalIndex.from_counts(np.arange(2), [good]).config()["n_postings"] == 4
    flipped = TermCounts(good.terms, good.cols[::-1].copy(), good.rows[::-1].copy(), good.tf[::-1].copy(), 2)
    with pytest.raises(InvalidArgumentError, match="sorted by"):
        LexicalIndex.from_counts(np.arange(2), [flipped])
