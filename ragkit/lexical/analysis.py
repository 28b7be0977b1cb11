"""Text analysis for BM25: Unicode-safe tokens, then Snowball stems chosen per token by script.

Pipeline of :meth:`Analyzer.terms` (documents and queries alike):

1. Compatibility-decompose (NFKD, so NFKC's foldings apply: ``ﬁ`` -> ``fi``, ``²`` -> ``2``) and
   casefold; drop combining marks (stress marks such as U+0301, accents: ``café`` -> ``cafe``,
   ``ё`` -> ``е``) but keep ``й``/``ў``; recompose (NFC). Plain Russian/English text takes a
   fast path with the same tokens.
2. Tokens are maximal runs of letters and digits (``\\w`` minus ``_``). Hyphens, apostrophes and
   all other punctuation separate tokens: ``северо-западный`` -> ``северо``, ``западный``;
   ``COVID-19`` -> ``covid``, ``19``; ``Obama's`` -> ``obama`` (+ ``s``, dropped). Indexing the
   joined compound as well, or only the compound, changed nDCG@10 by less than 0.003 either
   way on xquad ru/en and news-ru, so the simplest rule stays. Single letters are dropped
   (Russian ones are all stopwords anyway); numbers of any length are kept.
3. Each token picks its language by script: a token with a Cyrillic letter gets the Russian
   stopword list and Snowball stemmer, a Latin token the English ones (bm25s's lists, folded
   the same way), anything else (numbers, other scripts) is kept as it is. Mixed-language
   corpora and queries need no per-document language detection.
   ``russian="pymorphy3"`` replaces the Russian Snowball stem by pymorphy3's most probable
   lemma (normal form, ``ё`` folded); measured against Snowball in benchmarks/selection.py.

Analysed forms are cached per surface token, so a corpus pays for each distinct word once; pymorphy3
lemmas are also cached per process, shared by every Analyzer.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections import ChainMap
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from ragkit.errors import InvalidArgumentError, RagkitError

__all__ = ["Analyzer", "detect_language"]

RUSSIAN = ("snowball", "pymorphy3")
DEFAULT_RUSSIAN = "pymorphy3"  # chosen by benchmarks/selection.py (lexical stage)


class MissingPackageError(RagkitError):
    """An optional package that this analysis needs is not installed."""

ANALYZER_NAME = "ru-en-snowball"
# Version 2 adds the "russian" key (pymorphy3 lemmas); Snowball analyses are still written as
# version 1, so older ragkit versions open them, and refuse (rebuild) a lemma index they cannot read.
ANALYZER_VERSION = 2
ANALYZER_VERSIONS = (1, 2)

_TOKEN = re.compile(r"[^\W_]+")
# Combining diacritical marks (basic, extended, supplement, for symbols, half marks).
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_CYRILLIC = re.compile("[\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f]")
_LATIN = re.compile("[a-z\u00c0-\u024f\u1e00-\u1eff]")
_LETTER = re.compile(r"[^\W\d_]")
# Characters whose NFKD form adds nothing for tokens: ASCII, basic Cyrillic, common punctuation.
_PLAIN = re.compile("[^\x00-\x7f\u0430-\u044f\u0451\u00a0\u00ab\u00bb\u2010-\u2015\u2018-\u201f\u2026]")
_CACHE_LIMIT = 200_000  # distinct surface tokens kept; the cache is emptied when it is full
_DETECT_CHARS = 10_000  # detect_language looks at this many leading characters


def _normalize(text: str) -> str:
    """Casefold ``text`` and drop accents and stress marks, keeping ``й``; ``ё`` becomes ``е``."""
    folded = text.casefold()
    if _PLAIN.search(folded) is None:  # fast path: nothing that NFKD would turn into word chars
        return folded.replace("ё", "е")
    return _normalize_full(text)


def _normalize_full(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).casefold()
    # NFKD splits й into и + breve; re-join it before the marks go (same for Belarusian ў).
    folded = folded.replace("и\u0306", "й").replace("у\u0306", "ў")
    return unicodedata.normalize("NFC", _MARKS.sub("", folded))


def detect_language(text: str) -> str:
    """``"ru"`` or ``"en"`` when Cyrillic or Latin letters make up most letters, else ``"und"``.

    Only the first 10,000 characters are looked at; a script must hold over half of all letters.
    """
    sample = text[:_DETECT_CHARS].lower()
    letters = len(_LETTER.findall(sample))
    if letters == 0:
        return "und"
    cyrillic = len(_CYRILLIC.findall(sample))
    latin = len(_LATIN.findall(sample))
    if cyrillic * 2 > letters:
        return "ru"
    if latin * 2 > letters:
        return "en"
    return "und"


# UTF-8 byte classes for document_language: Cyrillic lead bytes (U+0400-U+052F), Latin letters
# (ASCII, and the lead bytes of U+00C0-U+024F), lead bytes of other scripts' letters (Greek to
# Arabic, Indic, CJK); every other byte (continuations, digits, punctuation, symbols) is dropped.
_SCRIPT_BYTES = bytes(
    ord("c") if 0xD0 <= b <= 0xD4 else
    ord("l") if (0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A or 0xC3 <= b <= 0xC9) else
    ord("o") if (0xCE <= b <= 0xCF or 0xD5 <= b <= 0xE1 or 0xE3 <= b <= 0xED) else
    ord(".")
    for b in range(256)
)


def document_language(text: str, chars: int = 2000) -> str:
    """:func:`detect_language` of a document's first ``chars`` characters, counted on UTF-8 bytes.

    Run once per document at index time, so it must cost microseconds: the three regular
    expressions of :func:`detect_language` took 130-390 us a shared-set document (2,000
    characters), 6 minutes at 1M documents. Agreement with it is tested on every shared corpus.
    """
    classes = text[:chars].encode("utf-8", "surrogatepass").translate(_SCRIPT_BYTES)
    cyrillic, latin, other = classes.count(b"c"), classes.count(b"l"), classes.count(b"o")
    letters = cyrillic + latin + other
    if letters == 0:
        return "und"
    if cyrillic * 2 > letters:
        return "ru"
    if latin * 2 > letters:
        return "en"
    return "und"


def _stopword_set(words: Iterable[str]) -> frozenset[str]:
    return frozenset(_normalize(w) for w in words)


class Analyzer:
    """Turns text into BM25 terms; documents and queries must go through the same Analyzer.

    ``stem`` applies the Snowball stemmers; ``stopwords`` drops Russian and English stopwords.
    An Analyzer may be shared between threads.
    """

    def __init__(self, stem: bool = True, stopwords: bool = True, stopword_list: Iterable[str] | None = None,
                 russian: str = DEFAULT_RUSSIAN) -> None:
        """``stopword_list`` replaces bm25s's Russian and English lists (an index stores the list
        it was built with, so searching it needs neither bm25s nor its import time).
        ``russian``: ``snowball`` (stems) or ``pymorphy3`` (lemmas; needs the package)."""
        if russian not in RUSSIAN:
            raise InvalidArgumentError(f"unknown Russian analysis {russian!r} (choose from {', '.join(RUSSIAN)})")
        self.stem = bool(stem)
        self.russian = russian if self.stem else "snowball"  # without stemming the choice has no effect
        self.stopwords = bool(stopwords)
        self._cache: dict[str, str] = {}  # surface token -> term, "" for a dropped token
        self._lock = threading.Lock()
        self._stemmers: dict[str, Any] | None = None
        self._stop: frozenset[str] = frozenset()
        if self.stopwords and stopword_list is not None:
            self._stop = _stopword_set(stopword_list)
        elif self.stopwords:
            from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_RUSSIAN

            self._stop = _stopword_set(STOPWORDS_RUSSIAN) | _stopword_set(STOPWORDS_EN)

    def __repr__(self) -> str:
        return f"Analyzer(stem={self.stem}, stopwords={self.stopwords}, russian={self.russian!r})"

    def config(self) -> dict[str, object]:
        """A JSON-able description, stored in index manifests to check the analysis on load."""
        return {
            "name": ANALYZER_NAME,
            "version": ANALYZER_VERSION if self.russian != "snowball" else 1,
            "stem": self.stem,
            "stopwords": self.stopwords,
            "stopword_list": sorted(self._stop),
            "russian": self.russian,
        }

    def terms(self, text: str) -> list[str]:
        """The analysed terms of one text, in text order (repeats kept)."""
        return self.terms_batch([text])[0]

    def terms_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """The analysed terms of each text; faster than calling :meth:`terms` in a loop."""
        tokens = [_TOKEN.findall(_normalize(text)) for text in texts]
        # The cache is never emptied in place, only replaced, so `cache` stays valid here.
        cache = self._cache
        missing = set(chain.from_iterable(tokens)).difference(cache)
        get = cache.__getitem__
        if missing:
            resolved = self._resolve(missing)
            if self._cache is not cache:  # replaced meanwhile: look in both
                get = ChainMap(resolved, cache).__getitem__
        return [[term for term in map(get, doc) if term] for doc in tokens]

    def _resolve(self, tokens: set[str]) -> dict[str, str]:
        """Analyse tokens not in the cache and remember them."""
        out: dict[str, str] = {}
        groups: dict[str, list[str]] = {"russian": [], "english": []}
        for token in tokens:
            if token in self._stop or (len(token) == 1 and not token.isdigit()):
                out[token] = ""
            elif not self.stem or token.isdigit():
                out[token] = token
            elif _CYRILLIC.search(token):
                groups["russian"].append(token)
            elif _LATIN.search(token):
                groups["english"].append(token)
            else:
                out[token] = token
        with self._lock:
            if self.stem:
                stemmers = self._get_stemmers()
                for language, words in groups.items():
                    if words:
                        out.update(zip(words, stemmers[language](words)))
            if len(self._cache) + len(out) > _CACHE_LIMIT:
                self._cache = {}
            self._cache.update(out)
        return out

    def _get_stemmers(self) -> dict[str, Any]:
        """language -> a function from a list of words to their terms."""
        if self._stemmers is None:
            import Stemmer  # PyStemmer

            self._stemmers = {
                language: Stemmer.Stemmer(language, 0).stemWords for language in ("russian", "english")
            }
            if self.russian == "pymorphy3":
                self._stemmers["russian"] = _pymorphy_lemmas()
        return self._stemmers


def _pymorphy_lemmas() -> Any:
    _morph()  # fails here, with the line to install it, when pymorphy3 is missing

    def lemmas(words: list[str]) -> list[str]:
        return [_lemma(w) for w in words]

    return lemmas


@functools.lru_cache(maxsize=1)
def _morph() -> Any:
    """One pymorphy3 analyser per process (its dictionaries take ~0.2 s and memory to load)."""
    try:
        import pymorphy3
    except ImportError as exc:
        raise MissingPackageError("Russian lemmas need pymorphy3: pip install 'pymorphy3>=2.0,<3' pymorphy3-dicts-ru") from exc
    return pymorphy3.MorphAnalyzer()


@functools.lru_cache(maxsize=_CACHE_LIMIT)
def _lemma(word: str) -> str:
    """pymorphy3's most probable normal form of ``word``, ``ё`` folded; remembered for every Analyzer
    of the process (the passage and document indexes, each generation a server reloads)."""
    return _morph().parse(word)[0].normal_form.replace("ё", "е")
