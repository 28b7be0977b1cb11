"""The knobs of benchmarks/selection.py: re-weighted BM25 against a fresh build, the adaptive
dense weight, the per-mode document share and the document/passage mix (pure logic, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.errors import InvalidArgumentError
from ragkit.lexical.analysis import Analyzer
from ragkit.lexical.bm25 import DEFAULT_K1, LexicalIndex
from ragkit.search.fusion import DEFAULT_DOC_WEIGHT, DEFAULT_LEXICAL_DOC_WEIGHT, FusionConfig
from ragkit.search.ranking import mix_lexical, top_two

TEXTS = ["Губернатор области объявил выборы", "Выборы мэра пройдут осенью, выборы важны",
         "The mayor election is in autumn", "Новая линия метро открыта", "metro metro line"]


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.5, 0.3), (2.0, 1.0)])
def test_reweighted_equals_a_fresh_build(k1, b):
    analyzer = Analyzer(russian="snowball")
    base = LexicalIndex.build(np.arange(5), TEXTS, analyzer=analyzer)
    fresh = LexicalIndex.build(np.arange(5), TEXTS, analyzer=analyzer, k1=k1, b=b)
    again = base.reweighted(k1=k1, b=b)
    for query in ("выборы", "metro line", "губернатор выборы мэра"):
        assert np.array_equal(again.score_all(query), fresh.score_all(query))
    assert again.config()["k1"] == k1 and base.config()["k1"] == DEFAULT_K1 == 1.5
    with pytest.raises(InvalidArgumentError):
        base.reweighted(b=2.0)


def test_adaptive_weight_shrinks_when_bm25_leads():
    fixed, adaptive = FusionConfig(), FusionConfig(adaptive=2.0)
    assert fixed.query_weight(0.3, (10.0, 5.0)) == 0.3
    assert adaptive.query_weight(0.3, (10.0, 5.0)) == pytest.approx(0.3 * 0.25)
    assert adaptive.query_weight(0.3, (10.0, 10.0)) == pytest.approx(0.3)  # a tie: dense keeps its say
    assert adaptive.query_weight(0.3, (0.0, 0.0)) == 0.3  # no BM25 match at all
    assert adaptive.query_weight(0.0, (10.0, 1.0)) == 0.0
    with pytest.raises(InvalidArgumentError):
        FusionConfig(adaptive=-1.0)


def test_document_share_per_mode_unless_given():
    assert FusionConfig().doc_weight_for("lexical") == DEFAULT_LEXICAL_DOC_WEIGHT == 0.85
    assert FusionConfig().doc_weight_for("hybrid") == DEFAULT_DOC_WEIGHT == 0.7
    assert FusionConfig(doc_weight=0.2).doc_weight_for("lexical") == 0.2


def test_mix_lexical_and_top_two():
    passage = np.array([2.0, 1.0, 0.0, 4.0])
    document = np.array([3.0, 6.0])
    rows = np.array([0, 0, 1, 1])  # passages 0, 1 in document 0; 2, 3 in document 1
    assert np.array_equal(mix_lexical(passage, document, rows, 0.0), passage)
    mixed = mix_lexical(passage, document, rows, 0.5)
    assert np.allclose(mixed, 0.5 * passage / 4.0 + 0.5 * document[rows] / 6.0)
    whole = mix_lexical(passage, document, rows, 1.0)
    assert whole[3] > whole[2] > whole[0] > whole[1]  # document first, then the passage's own score
    assert top_two(np.array([1.0, 5.0, 3.0])) == (5.0, 3.0)
    assert top_two(np.array([2.0])) == (2.0, 0.0) and top_two(np.zeros(0)) == (0.0, 0.0)
