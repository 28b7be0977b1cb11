"""Load articles from files and folders: ``.txt``/``.md`` (one article a file) and JSONL.

Everything here is forgiving about *files* and strict about *results*: a missing path, an
unreadable or binary file, an empty file, a broken JSONL line or a duplicate id never raises;
it is recorded in :class:`LoadReport` (``skipped``) and loading goes on with the next one.

Text files are decoded by :func:`read_text`: a BOM (UTF-8, UTF-16) wins, then strict UTF-8,
then a small check for Russian in cp1251 or KOI8-R (see :func:`_decode_russian`, because
charset-normalizer guesses badly on short Russian texts), then charset-normalizer.
JSONL (plain or gzip) is UTF-8 and is streamed line by line.

Memory stays bounded whatever the files hold. Only regular files are read: a FIFO, socket or
device in a folder (or a link to one) is skipped, never opened, so a named pipe cannot hang
a run and a link to ``/dev/zero`` cannot fill memory. A text file is one article and is read
whole, so a ``.txt``/``.md`` file larger than :data:`_MAX_TEXT_BYTES` (10 MiB, a long book)
is skipped, by its size, before a byte of it is read, with the reason "larger than 10 MiB
...; split it". Splitting it into ``name#part`` documents was the other choice; it was
declined because the rest of a build holds every document, passage and vector in memory
anyway, and a 100 MB file is some 100,000 passages (more in Russian), an hour or more of CPU
embedding: a dump like that is better cut into its articles (or JSONL, one article a line) by
the person who knows where its articles end. (A file that grows between the size check and the
read is read whole once: the check is by ``stat``.) A JSONL line is capped the same way: a longer line is read in 1 MiB blocks
and dropped as ``file:LINE`` (a gzip bomb of one endless line included).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import logging
import os
import re
import stat
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ragkit.documents import Document
from ragkit.errors import RagkitError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "LoadReport",
    "NotTextError",
    "iter_documents",
    "load_documents",
    "read_text",
    "source_files",
]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".jsonl", ".jsonl.gz")

_TITLE_MAX = 150

# The largest text file (one article) and the longest JSONL line read; see the module docstring.
_MAX_TEXT_BYTES = 10 * 1024 * 1024


class NotTextError(RagkitError, ValueError):
    """The bytes are not text ragkit can decode: binary data or an unknown encoding."""


@dataclass
class LoadReport:
    """What one loading run saw: counts, and every file or line it skipped, with the reason."""

    files: int = 0
    documents: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One short line, e.g. ``"3 files, 41 documents, 2 skipped"``."""
        return (
            f"{_plural(self.files, 'file')}, {_plural(self.documents, 'document')}, "
            f"{len(self.skipped)} skipped"
        )

    def _skip(self, location: str, reason: str) -> None:
        logger.debug("skipped %s: %s", location, reason)
        self.skipped.append((location, reason))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------- public API


def iter_documents(
    paths: Iterable[str | os.PathLike[str]], report: LoadReport | None = None
) -> Iterator[Document]:
    """Yield the documents found in ``paths`` (files or folders, folders walked recursively).

    Order is deterministic: the arguments in the order given, each folder walked in sorted
    order (a folder's files before its subfolders). Ids are unique within one call: a later
    document with an id already seen is skipped. Problems are recorded in ``report``.
    """
    report = report if report is not None else LoadReport()
    seen_ids: dict[str, str] = {}
    seen_files: dict[str, str] = {}
    for path, doc_id in _expand(_as_path_list(paths), report):
        real = os.path.realpath(path)
        if real in seen_files:
            report._skip(str(path), f"same file as {seen_files[real]} (already loaded)")
            continue
        seen_files[real] = str(path)
        report.files += 1
        if _suffix(path.name) in (".jsonl", ".jsonl.gz"):
            found = _iter_jsonl(path, report)
        else:
            found = _iter_text_file(path, doc_id, report)
        for location, doc in found:
            if doc.id in seen_ids:
                first = seen_ids[doc.id]
                report._skip(location, f"duplicate id {doc.id!r} (first seen in {first})")
                continue
            seen_ids[doc.id] = location
            report.documents += 1
            yield doc


def load_documents(
    paths: Iterable[str | os.PathLike[str]],
) -> tuple[list[Document], LoadReport]:
    """Load every document of ``paths`` into a list; see :func:`iter_documents`."""
    report = LoadReport()
    documents = list(iter_documents(paths, report))
    return documents, report


def source_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The supported files ``paths`` expand to: recursive, sorted, each real file once.

    Missing paths and files of unsupported types are left out; this is the list to
    fingerprint a corpus with, not a report of problems (see :func:`iter_documents`).
    """
    found: dict[str, Path] = {}
    for path, _ in _expand(_as_path_list(paths), LoadReport()):
        found.setdefault(os.path.realpath(path), path)
    return sorted(found.values(), key=str)


def read_text(path: str | os.PathLike[str]) -> str:
    """Decode a text file; newlines become ``\\n``.

    Raises ``OSError`` when the file cannot be read and :class:`NotTextError` (a
    ``ValueError``) when its bytes are binary or in an encoding that cannot be detected.
    """
    return _decode(Path(path).read_bytes())


# --------------------------------------------------------------------------- finding files


def _as_path_list(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    # A lone str is an Iterable[str] too; iterating it would yield characters.
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def _suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return suffix
    return None


def _expand(paths: list[Path], report: LoadReport) -> Iterator[tuple[Path, str]]:
    """Yield ``(file, id)`` for each supported file; ``id`` is the default text-file id."""
    for path in paths:
        if os.path.isdir(path):
            yield from _walk(path, report)
        elif os.path.isfile(path):
            if _suffix(path.name) is None:
                supported = ", ".join(SUPPORTED_SUFFIXES)
                report._skip(str(path), f"unsupported file type (supported: {supported})")
            else:
                yield path, path.name
        elif os.path.islink(path) and not os.path.exists(path):
            report._skip(str(path), _broken_link_reason(path))
        elif os.path.lexists(path):
            report._skip(str(path), _special_file_reason(path))
        else:
            report._skip(str(path), "path does not exist")


def _walk(top: Path, report: LoadReport) -> Iterator[tuple[Path, str]]:
    def on_error(exc: OSError) -> None:
        report._skip(str(exc.filename or top), f"cannot read folder: {exc.strerror or exc}")

    for dirpath, dirnames, filenames in os.walk(top, onerror=on_error, followlinks=False):
        here = Path(dirpath)
        kept = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            sub = here / name
            if os.path.islink(sub):
                report._skip(str(sub), _dir_link_reason(sub, here))
                continue
            kept.append(name)
        dirnames[:] = kept  # os.walk descends into these, in this order
        for name in sorted(filenames):
            if name.startswith(".") or _suffix(name) is None:
                continue
            file = here / name
            try:
                mode = os.stat(file).st_mode  # follows links; never opens the file
            except OSError as exc:
                link = os.path.islink(file)
                report._skip(str(file), _broken_link_reason(file) if link else _os_error_reason(exc))
                continue
            if not stat.S_ISREG(mode):
                report._skip(str(file), _special_file_reason(file))
                continue
            yield file, file.relative_to(top).as_posix()


def _dir_link_reason(link: Path, parent: Path) -> str:
    target = os.path.realpath(link)
    inside = os.path.realpath(parent)
    if inside == target or inside.startswith(target.rstrip(os.sep) + os.sep):
        return "symlink loop (points to an enclosing folder); not followed"
    return "symlink to a folder; not followed"


def _special_file_reason(path: Path) -> str:
    """Why a path that exists is neither a regular file nor a folder (it is never opened)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    kind = next((name for test, name in kinds if test(mode)), None)
    return f"not a regular file ({kind}); not read" if kind else "not a regular file or folder"


def _broken_link_reason(path: Path) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == getattr(os, "ELOOP", 40) or "symbolic links" in str(exc):
            return "symlink loop"
    return "broken symlink (target does not exist)"


# --------------------------------------------------------------------------- text files

_DATE_HEADER = re.compile(r"date[ \t]+(\d{4}-\d{2}-\d{2})(?=\s|$)", re.IGNORECASE)
_ISO_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:$|[T ]\d)")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_SENTENCE_END = re.compile(r"[.!?](?=\s+[^\s\w]*[^\W_a-zа-яё]|\s*$)")


def _iter_text_file(
    path: Path, doc_id: str, report: LoadReport
) -> Iterator[tuple[str, Document]]:
    location = str(path)
    try:
        size = os.stat(path).st_size
        raw = None if size > _MAX_TEXT_BYTES else read_text(path)
    except OSError as exc:
        report._skip(location, _os_error_reason(exc))
        return
    except NotTextError as exc:
        report._skip(location, str(exc))
        return
    if raw is None:
        report._skip(location, _too_large_reason(size))
        return
    if not raw.strip():
        report._skip(location, "empty file" if not raw else "empty file (only whitespace)")
        return
    text, date = _split_date_header(raw.strip())
    if not text:
        report._skip(location, "no text after the date header")
        return
    title = _title(text, markdown=_suffix(path.name) == ".md") or _stem(path.name)
    yield location, Document(id=doc_id, text=text, title=title, date=date, source=str(path))


def _split_date_header(text: str) -> tuple[str, str | None]:
    """``"date 2025-10-22 Body"`` -> ``("Body", "2025-10-22")``; an invalid date stays put."""
    match = _DATE_HEADER.match(text)
    if match is None:
        return text, None
    date = _valid_date(match.group(1))
    if date is None:
        return text, None
    return text[match.end() :].lstrip(), date


def _valid_date(value: str) -> str | None:
    try:
        return _dt.date.fromisoformat(value).isoformat()
    except ValueError:
        return None


def _title(text: str, *, markdown: bool) -> str:
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


def _stem(name: str) -> str:
    suffix = _suffix(name)
    return name[: -len(suffix)] if suffix else Path(name).stem


def _too_large_reason(size: int) -> str:
    return (f"larger than {_mib(_MAX_TEXT_BYTES)} ({_mib(size)}), too large for one article; split it into "
            "smaller files, or into JSONL with one article a line")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.{0 if size % (1024 * 1024) == 0 else 1}f} MiB"


def _os_error_reason(exc: OSError) -> str:
    if exc.errno == getattr(os, "ELOOP", 40):
        return "symlink loop"
    return f"cannot read: {exc.strerror or exc}"


# --------------------------------------------------------------------------- JSONL


def _iter_jsonl(path: Path, report: LoadReport) -> Iterator[tuple[str, Document]]:
    """One document per non-blank line; bad lines are skipped as ``path:LINE``. UTF-8, streamed."""
    stem = _stem(path.name)
    line_no = 0
    found_any = False
    opener = gzip.open if _suffix(path.name) == ".jsonl.gz" else open
    try:
        with opener(path, "rb") as fh:
            for line_no, raw in enumerate(_bounded_lines(fh, _MAX_TEXT_BYTES), start=1):
                if raw is None:
                    found_any = True
                    report._skip(f"{path}:{line_no}", f"line longer than {_mib(_MAX_TEXT_BYTES)}; not read")
                    continue
                if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if not raw.strip():
                    continue
                found_any = True
                location = f"{path}:{line_no}"
                try:
                    doc = _jsonl_document(raw, stem, line_no, str(path))
                except _BadLine as exc:
                    report._skip(location, str(exc))
                    continue
                yield location, doc
    except (OSError, EOFError, zlib.error) as exc:
        if line_no:
            report._skip(str(path), f"cannot read after line {line_no}: {exc}")
        elif isinstance(exc, OSError):
            report._skip(str(path), _os_error_reason(exc))
        else:
            report._skip(str(path), f"cannot read: {exc}")
        return
    if not found_any:
        report._skip(str(path), "empty file")


def _bounded_lines(fh: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """The lines of ``fh``; a line over ``limit`` bytes is read in blocks, dropped, and given as None."""
    while True:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        if len(raw) > limit and not raw.endswith(b"\n"):
            while True:
                rest = fh.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
            continue
        yield raw


_SURROGATE = re.compile("[\ud800-\udfff]")


class _BadLine(ValueError):
    """A JSONL line that does not make a document; the message is the reason."""


def _jsonl_document(raw: bytes, stem: str, line_no: int, source: str) -> Document:
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _BadLine("not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _BadLine(f"bad JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(record, dict):
        raise _BadLine(f"not a JSON object but {type(record).__name__}")
    text = record.get("text")
    if text is None:
        text = record.get("content")
    if text is None:
        raise _BadLine('no "text" or "content" field')
    if not isinstance(text, str):
        raise _BadLine(f'"text" is not a string but {type(text).__name__}')
    if not text.strip():
        raise _BadLine("empty text")
    doc = Document(
        id=_jsonl_id(record, stem, line_no),
        text=text,
        title=_scalar_str(record.get("title")).strip(),
        date=_jsonl_date(record.get("date")),
        source=source,
        url=record["url"] if isinstance(record.get("url"), str) and record["url"] else None,
    )
    # JSON may escape lone surrogates ("\ud800"): not text, and no tokenizer accepts them.
    if any(_SURROGATE.search(v) for v in (doc.id, doc.text, doc.title, doc.url or "")):
        raise _BadLine("unpaired surrogate escape in a string")
    return doc


def _jsonl_id(record: dict[str, object], stem: str, line_no: int) -> str:
    for key in ("_id", "id"):
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            raise _BadLine(f'"{key}" is not a JSON scalar')
        doc_id = _scalar_str(value)
        if doc_id.strip():
            return doc_id
    return f"{stem}:{line_no}"


def _scalar_str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _jsonl_date(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    match = _ISO_DATE.match(value.strip())
    return _valid_date(match.group(1)) if match else None


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
