"""The pymorphy3 analysis of Russian tokens (Analyzer(russian="pymorphy3")) against references:
pymorphy3's own most probable normal forms on a word list, a few lemmas checked by hand, and
Snowball left in charge of English. Real pymorphy3 with its Russian dictionaries."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.lexical.analysis import Analyzer
from ragkit.lexical.bm25 import LexicalIndex

import pymorphy3  # noqa: E402  (a core dependency)

WORDS = ("выборы выборов губернатора губернаторы кошками бежали людей столицы столицей москве "
         "пошёл шёл ежей окна окнами стекло стекла сказала говорят новых новейшими лучшего "
         "правительство правительства депутаты депутатам решения решил решили").split()
BY_HAND = {"кошками": "кошка", "бежали": "бежать", "губернатора": "губернатор", "окнами": "окно",
           "сказала": "сказать", "депутатам": "депутат", "пошёл": "пойти", "москве": "москва"}


def test_lemmas_match_pymorphy3_on_a_word_list():
    morph = pymorphy3.MorphAnalyzer()
    analyzer = Analyzer(russian="pymorphy3", stopwords=False)
    expected = [morph.parse(w)[0].normal_form.replace("ё", "е") for w in WORDS]
    assert analyzer.terms(" ".join(WORDS)) == expected
    got = dict(zip(WORDS, analyzer.terms(" ".join(WORDS))))
    assert {w: got[w] for w in BY_HAND} == BY_HAND
    # Forms that Snowball keeps apart share a lemma: that is the point of lemmas.
    for pair in ("шёл идти", "лучшего хороший", "людей человек"):
        assert len(set(Analyzer(russian="snowball", stopwords=False).terms(pair))) == 2
        assert len(set(Analyzer(russian="pymorphy3", stopwords=False).terms(pair))) == 1


def test_stopwords_english_and_numbers_unchanged():
    lemmas, stems = Analyzer(russian="pymorphy3"), Analyzer()
    text = "Он и она running quickly в 2024 году COVID-19"
    assert [t for t in lemmas.terms(text) if t.isascii()] == [t for t in stems.terms(text) if t.isascii()]
    assert "он" not in lemmas.terms(text) and "2024" in lemmas.terms(text)


def test_index_round_trip_keeps_the_analysis(tmp_path):
    texts = ["Губернаторы обсудили выборы", "Кошка бежала по крыше", "Новые окна в школе"]
    index = LexicalIndex.build(np.arange(3), texts, analyzer=Analyzer(russian="pymorphy3"))
    index.save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex")
    assert loaded.analyzer.russian == "pymorphy3" and loaded.config()["analyzer"]["russian"] == "pymorphy3"
    assert loaded.search("кошками", 3)[0].tolist() == [1]
    assert loaded.search("губернатор", 3)[0].tolist() == [0]
    assert loaded.search("лучшие школы", 3)[0].tolist() == [2]  # школе -> школа


def test_unknown_analysis_is_refused():
    from ragkit.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        Analyzer(russian="mystem")
