"""The postings-only lexical top-k equals the exhaustive scoring of every row, ties and filters included.

The reference is the exhaustive path (:meth:`Index._lexical_vector` and
:func:`ragkit.search.ranking.top`, or ``Index.exhaustive_lexical = True``); the fast one is
:func:`ragkit.search.lexical_topk.mixed_scores`, the default. Equality is exact: same ids,
same order, the same float scores bit for bit. Dense scores come from the DETERMINISTIC FAKE
embedder (FakeHashEmbedder): these tests are about BM25 candidates, not retrieval quality.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit import Document, Filters, Index, build_index
from ragkit.build.options import BuildOptions
from ragkit.lexical.analysis import Analyzer
from ragkit.lexical import bm25
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.search.fusion import FusionConfig
from ragkit.search.lexical_topk import DocumentPassages, ScanScores, mixed_scores
from ragkit.search.ranking import best, mix_lexical, top, top_two
from ragkit.testing import FakeHashEmbedder

WORDS = ["метро", "станция", "ёлка", "город", "новость", "парк", "school", "river", "market", "2024"]
DOC_WEIGHTS = (0.0, 0.3, 0.7, 0.85, 1.0)


def _doc(i: int, body: str, source: str, date: str) -> Document:
    return Document(f"d{i}", body, title=f"Заголовок {i % 3}", date=date, source=source)


def _corpus() -> list[Document]:
    rng = np.random.default_rng(7)
    docs = []
    for i in range(40):
        sentences = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) + "." for _ in range(int(rng.integers(1, 7)))]
        docs.append(_doc(i, " ".join(sentences), f"/archive/{'ru' if i % 2 else 'world'}/d{i}.txt", f"{2020 + i % 5}-03-01"))
    # ties: identical documents, and a document repeating one sentence (identical passages)
    same = "Новость о метро и станции. Новость о метро и станции. Новость о метро и станции."
    docs += [_doc(100 + i, same, f"/archive/copies/c{i}.txt", "2023-06-0" + str(1 + i)) for i in range(4)]
    docs.append(_doc(200, " ".join(["Рынок у реки, рынок у парка."] * 12), "/archive/ru/long.txt", "2024-01-01"))
    return docs


@pytest.fixture(autouse=True, params=[0, 10**9], ids=["sorted-postings", "marked-postings"])
def _both_ways_of_finding_the_rows(request, monkeypatch):
    """Every test twice: the query's rows found by sorting its postings, and by marking them."""
    monkeypatch.setattr(bm25, "_SORT_OR_SCAN", request.param)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = tmp_path_factory.mktemp("topk")
    embedder = FakeHashEmbedder()
    build_index(_corpus(), path, embedder=embedder, options=BuildOptions(max_tokens=24))
    with Index.open(path, embedder=embedder) as idx:
        yield idx


QUERIES = ["метро станция", "новость о метро", "ёлка", "market river", "рынок у реки", "город парк 2024",
           "Заголовок", "school", "метро метро метро", "несуществующееслово", "и в на", "!!!", "2024 unknownword метро"]
FILTERS = [None, Filters(source="ru/*"), Filters(since="2023-01-01"), Filters(source="/archive/copies/*"),
           Filters(since="2030-01-01"), Filters(source="world/*", until="2021-12-31")]


def _assert_same(fast, reference, ids, n, allowed_rows):
    got, want = fast.top(ids, n, allowed_rows), reference.top(ids, n, allowed_rows)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])  # exact: the same float32 scores
    assert got[1].dtype == want[1].dtype == np.float32
    return got


def test_every_row_scores_as_in_the_exhaustive_vector(index):
    rows = np.arange(len(index.lexical))
    matched_any = 0
    for query in QUERIES:
        for weight in DOC_WEIGHTS:
            reference = ScanScores(*index._lexical_vector(query, weight))
            fast = index._lexical_scores(query, weight)
            np.testing.assert_array_equal(fast.at(rows), reference.vector)  # bit for bit, zeros included
            assert fast.leads == reference.leads == top_two(index.doc_lexical.score_all(query).astype(np.float64))
            matched_any += int(fast.matched_rows().size > 0)
    assert matched_any > len(DOC_WEIGHTS) * 8  # most queries match something


def test_top_k_with_filters_and_any_k(index):
    ids = index.lexical.ids
    ties_at_cut = 0
    for query in QUERIES:
        for weight in DOC_WEIGHTS:
            reference = ScanScores(*index._lexical_vector(query, weight))
            fast = index._lexical_scores(query, weight)
            for filters in FILTERS:
                allowed_rows = index._allowed_rows(index.allowed(filters))
                values = reference.vector if allowed_rows is None else reference.vector[allowed_rows]
                values = np.sort(values[values > 0])[::-1]
                for n in sorted({1, 2, 3, 5, 10, max(1, values.size - 1), values.size + 1, values.size + 7, len(ids) + 3}):
                    for batch in (1, 3, 64):  # how many documents give the bound: small ones prune
                        fast.first_batch = batch
                        got = _assert_same(fast, reference, ids, n, allowed_rows)
                        assert len(got[0]) == min(n, values.size)
                    ties_at_cut += int(values.size > n and values[n] == values[n - 1])
    assert ties_at_cut > 0  # the corpus does produce ties at the cut


def test_unknown_and_empty_queries_match_nothing(index):
    for query in ("несуществующееслово", "и в на", "!!!", "", "   "):
        fast = index._lexical_scores(query, 0.85)
        assert fast.matched_rows().size == 0 and fast.leads == (0.0, 0.0)
        assert fast.top(index.lexical.ids, 10, None)[0].size == 0
        scores, rows = index.lexical.score_matches(query)
        assert rows.size == 0 and not scores.any()


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_search_results_equal_the_exhaustive_path(index, mode):
    fusions = [None, FusionConfig(adaptive=2.0), FusionConfig(dense_candidates=False, candidates=5), FusionConfig(doc_weight=0.0)]
    for query in QUERIES[:9] + ["2024 unknownword метро"]:
        for fusion in fusions:
            for filters in FILTERS[:4]:
                runs = []
                for exhaustive in (True, False):
                    index.exhaustive_lexical = exhaustive
                    try:
                        allowed = index.allowed(filters)
                        ranked = index.rank_passages([query], 7, mode=mode, allowed=allowed, fusion=fusion)[0]
                        found = index.search(query, k=6, mode=mode, filters=filters, fusion=fusion)
                    finally:
                        index.exhaustive_lexical = False
                    runs.append((ranked, [(r.doc_id, r.start, r.score, r.scores) for r in found]))
                (slow, slow_found), (fast, fast_found) = runs
                np.testing.assert_array_equal(fast.ids, slow.ids)
                np.testing.assert_array_equal(fast.scores, slow.scores)
                assert fast.components.keys() == slow.components.keys()
                for name in fast.components:
                    np.testing.assert_array_equal(fast.components[name], slow.components[name])
                assert fast_found == slow_found


def test_best_keeps_the_lowest_rows_among_ties_at_the_cut():
    values = np.array([0.0, 2.0, 1.0, 1.0, 3.0, 1.0, 1.0, 0.0, 2.0])
    rows = np.arange(values.size)
    ids = rows + 100
    got_ids, got_values = best(ids, rows, values, 4)
    assert got_ids.tolist() == [104, 101, 108, 102] and got_values.tolist() == [3.0, 2.0, 2.0, 1.0]
    assert top(ids, values, 4, None)[0].tolist() == [104, 101, 108, 102]
    assert top(ids, values, 5, np.array([2, 3, 5, 6, 7]))[0].tolist() == [102, 103, 105, 106]
    assert best(ids, rows, values, 0)[0].size == 0


@given(values=st.lists(st.integers(0, 4), min_size=0, max_size=40), n=st.integers(1, 45))
def test_best_is_the_sorted_prefix(values, n):
    v = np.asarray(values, dtype=np.float64)
    rows = np.arange(v.size)
    expected = sorted((-x, r) for r, x in enumerate(values) if x > 0)[:n]
    got_ids, got_values = best(rows * 3, rows, v, n)
    assert got_ids.tolist() == [3 * r for _, r in expected]
    assert got_values.tolist() == [float(-x) for x, _ in expected]


def test_document_passages_lists_each_documents_rows():
    doc_rows = np.array([2, 0, 2, 2, 4, 0])
    csr = DocumentPassages(doc_rows, 6)
    members, counts = csr.of(np.array([0, 1, 2, 4, 5]))
    assert members.tolist() == [1, 5, 0, 2, 3, 4] and counts.tolist() == [2, 0, 3, 1, 0]
    assert csr.of(np.zeros(0, dtype=np.int64))[0].size == 0


_ANALYZER = Analyzer()
_word = st.sampled_from(["alpha", "beta", "gamma", "delta", "школа", "реки", "7"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    passages=st.lists(st.lists(_word, min_size=0, max_size=5), min_size=1, max_size=25),
    extra_docs=st.lists(st.lists(_word, min_size=1, max_size=4), min_size=0, max_size=3),
    data=st.data(),
)
def test_random_corpora_and_queries(passages, extra_docs, data):
    """Random small corpora (many repeated words, so many ties), random documents over them,
    documents without passages, random queries (unknown words too), filters, k and doc shares."""
    n = len(passages)
    texts = [" ".join(words) for words in passages]
    n_groups = data.draw(st.integers(1, n))
    group = np.sort(np.asarray(data.draw(st.lists(st.integers(0, n_groups - 1), min_size=n, max_size=n))))
    doc_texts = [" ".join(t for t, g in zip(texts, group) if g == d) for d in range(n_groups)]
    for d in data.draw(st.lists(st.integers(0, n_groups - 1), max_size=2)):  # documents whose text is not their passages'
        doc_texts[d] = data.draw(st.sampled_from(["gamma", "7 7", "zzz"]))
    doc_texts += [" ".join(words) for words in extra_docs]  # documents that have no passage
    if not any(texts) or not any(doc_texts):
        return
    perm = np.asarray(data.draw(st.permutations(list(range(n)))))
    ids = perm * 5 + 11  # ids in another order than rows
    passages_index = LexicalIndex.build(ids, texts, _ANALYZER)
    documents = LexicalIndex.build(np.arange(1, len(doc_texts) + 1), doc_texts, _ANALYZER)
    doc_rows = documents.rows_of(group + 1)
    csr = DocumentPassages(doc_rows, len(documents))
    query = " ".join(data.draw(st.lists(st.sampled_from(["alpha", "beta", "gamma", "школы", "река", "7", "zzz"]),
                                        min_size=0, max_size=4)))
    weight = data.draw(st.sampled_from(DOC_WEIGHTS))
    by_doc = documents.score_all(query).astype(np.float64)
    vector = mix_lexical(passages_index.score_all(query).astype(np.float64), by_doc, doc_rows, weight)
    reference = ScanScores(vector, top_two(by_doc))
    fast = mixed_scores(query, passages_index, documents, csr, weight)
    np.testing.assert_array_equal(fast.at(np.arange(n)), vector)
    assert fast.leads == reference.leads
    allowed_rows = None
    if data.draw(st.booleans()):
        allowed_rows = np.unique(np.asarray(data.draw(st.lists(st.integers(0, n - 1), max_size=n)), dtype=np.int64))
    k = data.draw(st.integers(1, n + 3))
    fast.first_batch = data.draw(st.sampled_from([1, 2, 3, 64]))
    _assert_same(fast, reference, passages_index.ids, k, allowed_rows)


def test_a_passage_whose_document_does_not_match_can_lead():
    """A passage matching the query in a document that does not (its text differs) scores by its
    own BM25 alone; with a small document share it beats the passages of matching documents."""
    texts = ["alpha", "alpha beta beta", "gamma alpha", "delta"]
    doc_texts = ["alpha", "something else", "gamma alpha", "delta"]
    passages_index = LexicalIndex.build(np.arange(4), texts, _ANALYZER)
    documents = LexicalIndex.build(np.arange(1, 5), doc_texts, _ANALYZER)
    doc_rows = np.arange(4)
    for weight in (0.3, 0.85):
        fast = mixed_scores("alpha beta", passages_index, documents, DocumentPassages(doc_rows, 4), weight)
        by_doc = documents.score_all("alpha beta").astype(np.float64)
        vector = mix_lexical(passages_index.score_all("alpha beta").astype(np.float64), by_doc, doc_rows, weight)
        for batch in (1, 64):
            fast.first_batch = batch
            for k in (1, 2, 4):
                _assert_same(fast, ScanScores(vector, top_two(by_doc)), passages_index.ids, k, None)
        assert (fast.top(passages_index.ids, 1, None)[0][0] == 1) == (weight == 0.3)


def test_score_matches_gives_the_rows_with_a_posting(tmp_path):
    texts = ["alpha beta beta", "gamma", "alpha gamma delta", "", "beta delta delta delta", "alpha"] * 3
    built = LexicalIndex.build(np.arange(len(texts)) * 2, texts, _ANALYZER)
    built.save(tmp_path / "bm25")
    for lexical in (built, LexicalIndex.load(tmp_path / "bm25", mmap=True)):
        for query in ("alpha", "beta delta", "gamma alpha beta delta", "unknown", "alpha alpha", ""):
            scores, rows = lexical.score_matches(query)
            np.testing.assert_array_equal(scores, lexical.score_all(query))
            terms = set(_ANALYZER.terms(query))
            expected = [r for r, text in enumerate(texts) if terms & set(_ANALYZER.terms(text))]
            assert rows.dtype == np.int64 and rows.tolist() == expected


def test_lemmas_are_cached_per_process_with_the_same_terms():
    """A second Analyzer (the document index's, a reloaded generation's) finds the pymorphy3
    lemmas of the first one's words in the process cache; the terms are those pymorphy3 gives."""
    import pymorphy3

    from ragkit.lexical import analysis

    query = "Московские станции метро открылись после ремонта зданий"
    first = Analyzer(russian="pymorphy3", stopwords=False).terms(query)
    hits = analysis._lemma.cache_info().hits
    second = Analyzer(russian="pymorphy3", stopwords=False).terms(query)
    assert second == first
    assert analysis._lemma.cache_info().hits >= hits + len(set(first))
    morph = pymorphy3.MorphAnalyzer()
    assert first == [morph.parse(w)[0].normal_form.replace("ё", "е") for w in query.lower().split()]
