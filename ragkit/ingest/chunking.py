"""Sentence-aware chunking: documents become passages that fit the model's token window.

Text is split into sentences with a small rule set for Russian and English
(:func:`split_sentences`), and whole sentences are packed greedily into passages of at most
``max_tokens`` tokens as counted by the embedding model's own tokenizer (a
:class:`~ragkit.ingest.tokens.TokenCounter`). Budgets exclude the model's special tokens: the caller
subtracts them (and any prompt or title prefix) from the model's window.

Guarantees, for any text: every span ``(start, end)`` counts at most the budget, is non-empty
and trimmed of whitespace; starts strictly increase; every non-whitespace character lies in
some span; without overlap the spans are disjoint. A sentence longer than the budget is cut at
token boundaries (preferably after whitespace or punctuation), never dropped or truncated.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ragkit.documents import Document, Passage
from ragkit.ingest.tokens import TokenCounter

__all__ = ["Chunker", "ChunkerConfig", "MIN_MAX_TOKENS", "split_sentences"]

MIN_MAX_TOKENS = 8
"""The smallest token budget a chunker accepts."""

# --------------------------------------------------------------------------------------------
# Sentence splitting
# --------------------------------------------------------------------------------------------

# Every character str.splitlines() breaks on; a line break always ends a sentence.
_LINE_RE = re.compile(r"[^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")
_CLOSERS = "»\"”’')]"
_OPENERS = "«\"“„‘'(["
_DASHES = "—–‒―-"
# A run of sentence-final marks, optional closing quotes/brackets, then whitespace.
_BOUNDARY_RE = re.compile(
    r"(?P<term>[.!?…]+)(?P<close>[" + re.escape(_CLOSERS) + r"]*)\s+"
)
_LEADING_PUNCT_RE = re.compile(r"^[\W_]+")
# Dotted abbreviations and initials written without spaces: U.S, e.g, т.е, А.С, н.э
_DOTTED_RE = re.compile(r"(?:[^\W\d_]{1,2}\.)+[^\W\d_]{1,2}")

# Words that a period after them does not end a sentence (compared in lower case, without
# the final period). Single letters (initials, "т. е.", "г.", "д.") are handled separately.
_ABBREVIATIONS = frozenset(
    {
        # Russian
        "т.е", "т.д", "т.п", "т.к", "т.н", "н.э", "и.о",
        "гг", "вв", "ул", "им", "руб", "коп", "долл", "млн", "млрд", "трлн", "тыс",
        "св", "стр", "рис", "см", "др", "пр", "проф", "акад", "доц", "обл", "пос",
        "ст", "тел", "ок", "гл", "корп", "кв", "пер", "просп", "наб", "пл", "чел",
        "зам", "ген", "ред", "изд",
        # English
        "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e",
        "u.s", "u.k", "inc", "ltd", "co", "corp", "dept", "approx", "mt", "ft",
        "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    }
)
# Abbreviations only when a number follows: "No. 5", "Fig. 3", "Vol. 2", "pp. 10".
_ABBREVIATIONS_BEFORE_NUMBER = frozenset({"no", "nos", "fig", "vol", "pp"})


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``, in order.

    Spans are trimmed of surrounding whitespace and together contain every non-whitespace
    character. A sentence ends at a line break, or at ``.``, ``!``, ``?``, ``…`` (or a run
    such as ``?!`` or ``...``), optionally followed by closing quotes or brackets, then
    whitespace and an upper-case letter, digit, opening quote or a dialogue dash followed by
    an upper-case word. A period after an initial (``А. С. Пушкин``) or a known
    abbreviation (``т. е.``, ``млн.``, ``Mr.``, ``U.S.``) does not end a sentence; decimal
    numbers, URLs and e-mail addresses are never split because no whitespace follows the dot.
    """
    spans: list[tuple[int, int]] = []
    for line in _LINE_RE.finditer(text):
        line_start, line_end = line.span()
        piece_start = line_start
        for match in _BOUNDARY_RE.finditer(text, line_start, line_end):
            if _ends_sentence(text, match, line_start, line_end):
                _append_trimmed(spans, text, piece_start, match.end("close"))
                piece_start = match.end()
        _append_trimmed(spans, text, piece_start, line_end)
    return spans


def _ends_sentence(text: str, match: re.Match[str], line_start: int, line_end: int) -> bool:
    following = match.end()  # first non-space character after the boundary, if any
    if following >= line_end:
        return False  # the line break ends the sentence anyway
    char = text[following]
    if char in _DASHES:
        # Dialogue: "— Куда? — спросила она." goes on; "Он ушёл. — Куда?" starts anew.
        pos = following
        while pos < line_end and (text[pos] in _DASHES or text[pos].isspace()):
            pos += 1
        if pos >= line_end or text[pos].islower():
            return False
    elif not (char in _OPENERS or char.isdigit() or (char.isalpha() and not char.islower())):
        return False  # lower case or other punctuation: the sentence goes on
    if match.group("term") != "." or match.group("close"):
        return True
    word_start = match.start()
    while word_start > line_start and not text[word_start - 1].isspace():
        word_start -= 1
    at_line_start = not text[line_start:word_start].strip()
    return not _is_abbreviation(text[word_start : match.start()], char, at_line_start)


def _is_abbreviation(word: str, next_char: str, at_line_start: bool) -> bool:
    core = _LEADING_PUNCT_RE.sub("", word)
    if not core:
        return False
    if len(core) == 1 and core.isalpha():
        return True  # initials (С. Собянин, J. R. R. Tolkien) and т. е., г., д.
    lower = core.lower()
    if lower in _ABBREVIATIONS or _DOTTED_RE.fullmatch(core):
        return True
    if lower in _ABBREVIATIONS_BEFORE_NUMBER:
        return next_char.isdigit()
    # A list marker at the start of a line: "1. Введение".
    return at_line_start and core.isdigit() and len(core) <= 3


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _append_trimmed(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    start, end = _trim(text, start, end)
    if start < end:
        spans.append((start, end))


# --------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------


def _check_budget(max_tokens: int, overlap_tokens: int) -> None:
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be at least {MIN_MAX_TOKENS}, got {max_tokens}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must not be negative, got {overlap_tokens}")
    if overlap_tokens >= max_tokens // 2:
        raise ValueError(
            f"overlap_tokens must be less than half of max_tokens ({max_tokens // 2}), "
            f"got {overlap_tokens}"
        )


@dataclass(frozen=True, slots=True)
class ChunkerConfig:
    """Chunker settings as stored with an index.

    ``max_tokens`` None means: the model's window minus its special tokens and the prompt,
    decided by the caller that knows the model.
    """

    max_tokens: int | None = None
    overlap_tokens: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens is None:
            if self.overlap_tokens < 0:
                raise ValueError(
                    f"overlap_tokens must not be negative, got {self.overlap_tokens}"
                )
        else:
            _check_budget(self.max_tokens, self.overlap_tokens)


_Unit = tuple[int, int, int]  # start, end, tokens: a sentence or a piece of a long one


class Chunker:
    """Packs whole sentences into passages of at most ``max_tokens`` tokens.

    ``max_tokens`` excludes the special tokens the model adds. With ``overlap_tokens``, a
    passage begins with as many whole trailing sentences of the previous one as fit in
    ``overlap_tokens`` (none if the last sentence alone is bigger).
    """

    def __init__(self, counter: TokenCounter, max_tokens: int, overlap_tokens: int = 0) -> None:
        _check_budget(max_tokens, overlap_tokens)
        self.counter = counter
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens

    def __repr__(self) -> str:
        return (
            f"Chunker(max_tokens={self.max_tokens}, overlap_tokens={self.overlap_tokens}, "
            f"counter={type(self.counter).__name__})"
        )

    def spans(self, text: str, max_tokens: int | None = None) -> list[tuple[int, int]]:
        """Character spans of the passages of ``text``; ``[]`` for blank text.

        ``max_tokens`` replaces the budget for this call (for example one reduced by a title
        prefix); it must be at least ``MIN_MAX_TOKENS``. The overlap is reduced to less than
        half of such a budget if it would not be.
        """
        budget = self.max_tokens if max_tokens is None else max_tokens
        if budget < MIN_MAX_TOKENS:
            raise ValueError(f"max_tokens must be at least {MIN_MAX_TOKENS}, got {budget}")
        overlap = min(self.overlap_tokens, max(0, budget // 2 - 1))
        sentences = split_sentences(text)
        if not sentences:
            return []
        counts = self.counter.count([text[s:e] for s, e in sentences])
        units: list[_Unit] = []
        for (start, end), tokens in zip(sentences, counts, strict=True):
            if tokens <= budget:
                units.append((start, end, tokens))
            else:
                units.extend(self._split_long(text, start, end, budget))
        return self._pack(text, units, budget, overlap)

    def passages(self, doc: Document, max_tokens: int | None = None) -> list[Passage]:
        """The passages of ``doc``: ``passage.text == doc.text[passage.start:passage.end]``."""
        return [
            Passage(doc_id=doc.id, start=start, end=end, text=doc.text[start:end])
            for start, end in self.spans(doc.text, max_tokens)
        ]

    # ---- packing sentences ----------------------------------------------------------------

    def _pack(
        self, text: str, units: list[_Unit], budget: int, overlap: int
    ) -> list[tuple[int, int]]:
        """Greedy packing by summed sentence counts, then each passage verified by a real count.

        A passage is (first, last, must): units first..last, where ``must`` is the first unit
        no earlier passage covers (units before it are overlap). Plan the whole document on
        the estimates and verify all multi-unit passages in one batch; if one is over budget
        (the tokenizer is not additive over that join), continue passage by passage from there.
        """
        counts = [tokens for _, _, tokens in units]
        n = len(counts)

        def choose(first: int, must: int) -> tuple[int, int]:
            total = sum(counts[first : must + 1])
            while first < must and total > budget:  # overlap must leave room for new text
                total -= counts[first]
                first += 1
            last = must
            while last + 1 < n and total + counts[last + 1] <= budget:
                last += 1
                total += counts[last]
            return first, last

        def following(first: int, last: int) -> tuple[int, int] | None:
            if last + 1 >= n:
                return None
            must = start = last + 1
            total = 0
            if overlap > 0:  # keep start > first: every passage starts later than the last
                while start - 1 > first and total + counts[start - 1] <= overlap:
                    start -= 1
                    total += counts[start]
            return start, must

        def span(first: int, last: int) -> tuple[int, int]:
            return units[first][0], units[last][1]

        def joined(first: int, last: int) -> str:
            return text[units[first][0] : units[last][1]]

        plan: list[tuple[int, int, int]] = []
        state = following(-1, -1) if n else None
        while state is not None:
            first, last = choose(*state)
            plan.append((first, last, state[1]))
            state = following(first, last)

        several = [i for i, (first, last, _) in enumerate(plan) if last > first]
        actual = self.counter.count([joined(plan[i][0], plan[i][1]) for i in several])
        over = next((i for i, tokens in zip(several, actual) if tokens > budget), None)
        if over is None:
            return [span(first, last) for first, last, _ in plan]

        out = [span(first, last) for first, last, _ in plan[:over]]
        state = (plan[over][0], plan[over][2])
        while state is not None:
            must = state[1]
            first, last = choose(*state)
            while last > first and self.counter.count([joined(first, last)])[0] > budget:
                if last > must:
                    last -= 1  # the last sentence moves to the next passage
                else:
                    first += 1  # drop overlap before new text
            out.append(span(first, last))
            state = following(first, last)
        return out

    # ---- sentences longer than the budget -------------------------------------------------

    def _split_long(self, text: str, start: int, end: int, budget: int) -> list[_Unit]:
        """Cut ``text[start:end]`` at token boundaries into pieces of at most ``budget`` tokens.

        Cut positions are token starts; a cut right after whitespace or punctuation in the
        second half of the window is preferred. Every piece is counted for real: cutting
        inside a word can change how its parts tokenize, and the window shrinks until it fits.
        """
        length = end - start
        # Group tokens by start position: cuts[g] is a position, per[g] the tokens starting
        # in [cuts[g], cuts[g + 1]). cuts[0] is the sentence start, cuts[-1] its end.
        cuts = [start]
        per = [0]
        for token_start, _ in sorted(self.counter.offsets(text[start:end])):
            position = start + min(max(token_start, 0), length - 1)
            if position > cuts[-1]:
                cuts.append(position)
                per.append(1)
            else:
                per[-1] += 1
        cuts.append(end)
        groups = len(per)

        pieces: list[_Unit] = []
        k = 0
        while k < groups:
            total, m = 0, k
            while m < groups and total + per[m] <= budget:
                total += per[m]
                m += 1
            if m == k:
                m = k + 1  # many tokens at one position: left to the character cut below
            elif m < groups:
                m = _preferred_cut(text, cuts, k, m)
            while True:
                piece_start, piece_end = _trim(text, cuts[k], cuts[m])
                tokens = self.counter.count([text[piece_start:piece_end]])[0]
                if tokens <= budget or m == k + 1:
                    break
                m = max(k + 1, m - (tokens - budget))
            if piece_start == piece_end:
                pass  # whitespace only
            elif tokens <= budget:
                pieces.append((piece_start, piece_end, tokens))
            else:
                pieces.extend(self._split_chars(text, piece_start, piece_end, budget))
            k = m
        return pieces

    def _split_chars(self, text: str, start: int, end: int, budget: int) -> list[_Unit]:
        """Last resort for a single token position that counts over budget: cut by characters.

        Binary search for a long prefix that fits (token counts are not monotonic in the
        length, so the search keeps a prefix known to fit rather than the longest one).
        """

        def fit(stop: int) -> tuple[int, int]:
            trimmed_end = _trim(text, start, stop)[1]
            return trimmed_end, self.counter.count([text[start:trimmed_end]])[0]

        pieces: list[_Unit] = []
        while start < end:
            start = _trim(text, start, end)[0]
            if start >= end:
                break
            piece_end, tokens = fit(end)
            if tokens <= budget:
                pieces.append((start, piece_end, tokens))
                break
            lo, hi = start + 1, end
            piece_end, tokens = fit(lo)
            if tokens > budget:
                raise ValueError(
                    f"the character {text[start]!r} alone counts {tokens} tokens, "
                    f"more than the budget of {budget}"
                )
            while hi - lo > 1:
                mid = (lo + hi) // 2
                mid_end, mid_tokens = fit(mid)
                if mid_tokens <= budget:
                    lo, piece_end, tokens = mid, mid_end, mid_tokens
                else:
                    hi = mid
            pieces.append((start, piece_end, tokens))
            start = lo
        return pieces


def _preferred_cut(text: str, cuts: list[int], k: int, m: int) -> int:
    """The last cut in the second half of groups k..m that follows whitespace or punctuation."""
    lowest = k + max(1, (m - k + 1) // 2)
    for g in range(m, lowest - 1, -1):
        before = text[cuts[g] - 1]
        if before.isspace() or unicodedata.category(before).startswith("P"):
            return g
    return m
