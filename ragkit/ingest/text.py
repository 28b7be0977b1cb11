"""Plain text files (``.txt``, ``.md``: one article a file) and how their bytes are decoded.

Text files are decoded by :func:`read_text`: a BOM (UTF-8, UTF-16) wins, then strict UTF-8,
then a small check for Russian in cp1251 or KOI8-R (see :func:`_decode_russian`, because
charset-normalizer guesses badly on short Russian texts), then charset-normalizer.

A text file is one article and is read whole, so a file larger than
:data:`~ragkit.ingest.report.MAX_TEXT_BYTES` (10 MiB, a long book) is skipped, by its size,
before a byte of it is read, with the reason "larger than 10 MiB ...; split it". Splitting it
into ``name#part`` documents was the other choice; it was declined because the rest of a build
holds every document, passage and vector in memory anyway, and a 100 MB file is some 100,000
passages (more in Russian), an hour or more of CPU embedding: a dump like that is better cut
into its articles (or JSONL, one article a line) by the person who knows where its articles
end. (A file that grows between the size check and the read is read whole once: the check is
by ``stat``.)
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from ragkit.documents import Document
from ragkit.errors import RagkitError
from ragkit.ingest.report import MAX_TEXT_BYTES, LoadReport, display_path, os_error_reason, too_large_reason

__all__ = ["NotTextError", "iter_text_file", "read_text", "first_sentence_title", "iso_date", "valid_date"]

_TITLE_MAX = 150


class NotTextError(RagkitError, ValueError):
    """The bytes are not text ragkit can decode: binary data or an unknown encoding."""


def read_text(path: str | os.PathLike[str]) -> str:
    """Decode a text file; newlines become ``\\n``.

    Raises ``OSError`` when the file cannot be read and :class:`NotTextError` (a
    ``ValueError``) when its bytes are binary or in an encoding that cannot be detected.
    """
    return _decode(Path(path).read_bytes())


_DATE_HEADER = re.compile(r"date[ \t]+(\d{4}-\d{2}-\d{2})(?=\s|$)", re.IGNORECASE)
_ISO_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:$|[T ]\d)")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_SENTENCE_END = re.compile(r"[.!?](?=\s+[^\s\w]*[^\W_a-zа-яё]|\s*$)")


def iter_text_file(
    path: Path, doc_id: str, report: LoadReport, stem: str
) -> Iterator[tuple[str, Document]]:
    """The one document of a ``.txt``/``.md`` file (``stem``: the title when the text gives none)."""
    location = str(path)
    try:
        size = os.stat(path).st_size
        raw = None if size > MAX_TEXT_BYTES else read_text(path)
    except OSError as exc:
        report._skip(location, os_error_reason(exc))
        return
    except NotTextError as exc:
        report._skip(location, str(exc))
        return
    if raw is None:
        report._skip(location, too_large_reason(size))
        return
    if not raw.strip():
        report._skip(location, "empty file" if not raw else "empty file (only whitespace)")
        return
    text, date = _split_date_header(raw.strip())
    if not text:
        report._skip(location, "no text after the date header")
        return
    title = first_sentence_title(text, markdown=path.name.lower().endswith(".md")) or stem
    yield location, Document(id=display_path(doc_id), text=text, title=display_path(title), date=date,
                             source=display_path(path))


def _split_date_header(text: str) -> tuple[str, str | None]:
    """``"date 2025-10-22 Body"`` -> ``("Body", "2025-10-22")``; an invalid date stays put."""
    match = _DATE_HEADER.match(text)
    if match is None:
        return text, None
    date = valid_date(match.group(1))
    if date is None:
        return text, None
    return text[match.end() :].lstrip(), date


def iso_date(value: object) -> str | None:
    """The ISO date a string starts with (``2025-10-22``, ``2025-10-22T08:00``), or None."""
    if not isinstance(value, str):
        return None
    match = _ISO_DATE.match(value.strip())
    return valid_date(match.group(1)) if match else None


def valid_date(value: str) -> str | None:
    try:
        return _dt.date.fromisoformat(value).isoformat()
    except ValueError:
        return None


def first_sentence_title(text: str, *, markdown: bool) -> str:
    """The first line if short and not the whole text, else the first sentence; "" if no letters."""
    if not any(ch.isalpha() for ch in text):
        return ""
    first, newline, rest = text.partition("\n")
    first = first.strip()
    if markdown:
        heading = _MD_HEADING.match(first)
        if heading:
            first = heading.group(1).strip()
    if newline and len(first) <= _TITLE_MAX and any(ch.isalpha() for ch in first):
        return first
    flat = " ".join(f"{first}\n{rest}".split())
    end = _SENTENCE_END.search(flat)
    sentence = flat[: end.end()] if end else flat
    if len(sentence) <= _TITLE_MAX:
        return sentence
    cut = sentence[: _TITLE_MAX - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-–—") + "…"


# --------------------------------------------------------------------------- decoding

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
# Control characters allowed in text; any other C0/C1 control counts as garbage, and in a
# guessed decoding also unassigned, private-use and surrogate code points and U+FFFD.
_TEXT_CONTROLS = frozenset("\t\n\r\f\v")
_GUESSED_GARBAGE = ("Cc", "Cs", "Co", "Cn")
_MAX_GARBAGE_SHARE = 0.005


def _decode(data: bytes) -> str:
    if not data:
        return ""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(codec)
            except UnicodeDecodeError:
                message = f"not valid {codec.upper()} text despite its byte-order mark"
                raise NotTextError(message) from None
            return _checked(text, guessed=False)
    if b"\x00" in data:
        raise NotTextError("binary data (contains NUL bytes)")
    try:
        return _checked(data.decode("utf-8"), guessed=False)
    except UnicodeDecodeError:
        pass
    return _checked(_decode_russian(data) or _decode_detected(data), guessed=True)


def _decode_detected(data: bytes) -> str:
    from charset_normalizer import from_bytes  # lazy: only non-UTF-8 files need it

    best = from_bytes(data).best()
    if best is None:
        raise NotTextError("binary data or unknown text encoding")
    return str(best)


def _checked(text: str, *, guessed: bool) -> str:
    """Normalise newlines; refuse text with too many control (or, if guessed, invalid) characters.

    Valid UTF-8 is only checked for control characters: unassigned code points there are
    more likely newer Unicode (emoji) than garbage.
    """
    bad = _GUESSED_GARBAGE if guessed else ("Cc",)
    garbage = sum(1 for ch in text if ch not in _TEXT_CONTROLS and unicodedata.category(ch) in bad)
    if guessed:
        garbage += text.count("\ufffd")
    if garbage and garbage > _MAX_GARBAGE_SHARE * len(text):
        raise NotTextError(f"binary data ({garbage} control or invalid characters)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# Russian in a single-byte encoding. charset-normalizer often misreads short Russian texts
# (a sentence in KOI8-R comes back as Shift-JIS, "Привет, мир!" in cp1251 as cp1125), so
# for non-UTF-8 bytes the two common Russian encodings are tried first and scored:
#   + each letter of a Cyrillic word that is one of the ten most frequent Russian letters
#     (about two thirds of the letters of Russian text, about a third of a text read with
#     the other codec);
#   - each letter of a word whose case shape is not lower, Title or UPPER (the other codec
#     swaps the cases: "Мэр" in cp1251 read as KOI8-R is "мЩП"), or that mixes Cyrillic and
#     other letters (French "voilà" -> "voilа" in cp1251);
#   - each other non-ASCII character that is not common typography (KOI8-R box drawing).
# The score is divided by the letters of Cyrillic words plus the junk characters; a text with
# under a quarter of its letters in Cyrillic words scores -1 (an "à" in English text is "а"
# in cp1251). The better reading wins if it reaches _RUSSIAN_MIN_SCORE; on a tie, the one with
# more lower-case letters (most Russian text is lower case), then cp1251. Otherwise the bytes
# go to charset-normalizer. Only the first _RUSSIAN_SAMPLE bytes are scored. On Russian news
# sentences cut from shared/data this reads over 99 % of cp1251 and KOI8-R samples right (the
# misses are fragments like "км." or "А.П."), and whole articles 100 %.
_RUSSIAN_CODECS = ("cp1251", "koi8_r")
_RUSSIAN_COMMON = frozenset("оеаинтсрвл")
_RUSSIAN_MIN_SCORE = 0.25
_RUSSIAN_SAMPLE = 1 << 16
_TYPOGRAPHY = frozenset("«»„“”‘’‚—–…№•·°±§©®™\u00a0\u2009\u202f")
_WORD = re.compile(r"[^\W\d_]+")


def _decode_russian(data: bytes) -> str | None:
    """The cp1251 or KOI8-R reading of ``data`` if it is clearly Russian, else None."""
    sample = data[:_RUSSIAN_SAMPLE]
    ranked = []
    for preference, codec in enumerate(_RUSSIAN_CODECS):
        try:
            text = sample.decode(codec)
        except UnicodeDecodeError:  # cp1251 leaves 0x98 undefined
            continue
        lower = sum(1 for ch in text if ch.islower())
        ranked.append((_russian_score(text), lower, -preference, codec))
    if not ranked:
        return None
    score, _, _, codec = max(ranked)
    if score < _RUSSIAN_MIN_SCORE:
        return None
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None


def _is_cyrillic(ch: str) -> bool:
    return "\u0400" <= ch <= "\u04ff"


def _russian_score(text: str) -> float:
    good = bad = total = other = 0
    for word in _WORD.findall(text):
        cyrillic = sum(1 for ch in word if _is_cyrillic(ch))
        if not cyrillic:
            other += len(word)
            continue
        total += len(word)
        if cyrillic < len(word) or not (word.islower() or word.isupper() or word.istitle()):
            bad += len(word)
        else:
            good += sum(1 for ch in word if ch.lower() in _RUSSIAN_COMMON)
    if not total or total * 3 < other:  # under a quarter Cyrillic: not for this check to decide
        return -1.0
    junk = sum(1 for ch in text if ch >= "\x80" and not ch.isalpha() and ch not in _TYPOGRAPHY)
    total += junk
    return (good - bad - junk) / total
