"""Load articles from files and folders, each file by its type (see :data:`SUPPORTED_SUFFIXES`).

Everything here is forgiving about *files* and strict about *results*: a missing path, an
unreadable, binary, broken or hostile file, an empty file, a broken JSONL line or a duplicate
id never raises; it is recorded in :class:`LoadReport` (``skipped``) and loading goes on with
the next one. Each type has its module: :mod:`~ragkit.ingest.text` (``.txt``, ``.md``),
:mod:`~ragkit.ingest.jsonl`, :mod:`~ragkit.ingest.html` (saved pages),
:mod:`~ragkit.ingest.warc` (web archives), :mod:`~ragkit.ingest.pdf` and
:mod:`~ragkit.ingest.word` (``.docx``). The last four need the ``formats`` extra; without it
their files are skipped with the ``pip install`` line as the reason.

Memory stays bounded whatever the files hold. Only regular files are read: a FIFO, socket or
device in a folder (or a link to one) is skipped, never opened, so a named pipe cannot hang
a run and a link to ``/dev/zero`` cannot fill memory. Folders are walked without recursion, so
any depth of nesting is read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.documents import Document
from ragkit.ingest.report import LoadReport, MissingExtraError, display_path, library_error_reason, os_error_reason
from ragkit.ingest.text import NotTextError, iter_text_file, read_text

__all__ = [
    "SUPPORTED_SUFFIXES",
    "FileLoad",
    "LoadReport",
    "MergedStream",
    "NotTextError",
    "iter_documents",
    "load_documents",
    "load_file",
    "merged_documents",
    "planned_files",
    "read_text",
    "source_files",
]

SUPPORTED_SUFFIXES = (".txt", ".md", ".jsonl", ".jsonl.gz", ".html", ".htm", ".warc", ".warc.gz", ".pdf", ".docx")

# What each type is called in a skip reason when its library throws.
_KIND = {".html": "HTML page", ".htm": "HTML page", ".warc": "web archive", ".warc.gz": "web archive",
         ".pdf": "PDF", ".docx": "Word document"}

Loader = Callable[[Path, str, LoadReport, str], Iterator[tuple[str, Document]]]


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
    for path, doc_id in _files(paths, report):
        yield from _unique(_guarded(path, doc_id, report), seen_ids, report)


@dataclass
class FileLoad:
    """One file's documents (with their locations) and skips, in the order its loader met them:
    ``skips_before[i]`` of the skips came before document ``i``. What a worker of a distributed
    build returns for a file (:func:`load_file`); :func:`merged_documents` puts them together."""

    documents: list[tuple[str, Document]] = field(default_factory=list)
    skips: list[tuple[str, str]] = field(default_factory=list)
    skips_before: list[int] = field(default_factory=list)


def planned_files(paths: Iterable[str | os.PathLike[str]], report: LoadReport) -> list[tuple[Path, str, int]]:
    """The files :func:`iter_documents` would load, as ``(file, default id, skips before it)``:
    the walk's skips go in ``report`` meanwhile, and the count says where each file's own
    skips fall among them."""
    return [(path, doc_id, len(report.skipped)) for path, doc_id in _files(paths, report)]


def load_file(path: str | os.PathLike[str], doc_id: str,
              span: tuple[int, int | None, int] | None = None) -> FileLoad:
    """Everything one planned file gives (see :func:`planned_files`); never raises for a file.

    ``span``: ``(start, end, first_line)``, only bytes ``[start, end)`` of a plain JSONL file, its
    lines numbered from ``first_line`` (see :func:`ragkit.ingest.jsonl.iter_jsonl`), so that a big
    file can be read in pieces. A span for any other type is a caller's mistake: ValueError.
    """
    path = Path(path)
    if span is not None and _suffix(path.name) != ".jsonl":
        raise ValueError(f"only a plain JSONL file can be read by byte range, not {display_path(path)}")
    report = LoadReport()
    load = FileLoad()
    for location, doc in _guarded(path, doc_id, report, span):
        load.documents.append((location, doc))
        load.skips_before.append(len(report.skipped))
    load.skips = report.skipped
    return load


def merged_documents(planned: list[tuple[Path, str, int]], loads: Iterable[FileLoad],
                     report: LoadReport) -> Iterator[Document]:
    """The documents of the planned files loaded elsewhere, one :class:`FileLoad` per file in plan
    order: exactly what :func:`iter_documents` yields, with the same ids and the same report."""
    stream = MergedStream(report)
    for (_, _, before), load in zip(planned, loads, strict=True):
        yield from stream._take(before, load)
    stream.finish()


class MergedStream:
    """:func:`merged_documents`, one piece at a time: a streaming build takes each piece's load as
    it arrives and lets it go, instead of holding every file's load until the last one is read.

    ``report`` already holds the walk's skips (from :func:`planned_files`). Pieces come in plan
    order: a whole file, or the line ranges of one file in order, each with the file's own
    ``skips_before``. Together they give exactly the documents and report of :func:`iter_documents`.
    """

    def __init__(self, report: LoadReport) -> None:
        self._report = report
        self._walk, report.skipped = report.skipped, []
        self._taken = 0
        self._seen_ids: dict[str, str] = {}

    def take(self, skips_before: int, load: FileLoad) -> list[Document]:
        """The documents of the next piece that pass the duplicate-id pass; its skips, and the walk's
        skips before its file, go into the report in the order :func:`iter_documents` meets them."""
        return list(self._take(skips_before, load))

    def finish(self) -> None:
        """Put the walk's skips after the last file into the report."""
        self._report.skipped.extend(self._walk[self._taken:])
        self._taken = len(self._walk)

    def _take(self, skips_before: int, load: FileLoad) -> Iterator[Document]:
        if skips_before > self._taken:  # the ranges of one file share it: only the first catches up
            self._report.skipped.extend(self._walk[self._taken:skips_before])
            self._taken = skips_before
        shown = 0
        for (location, doc), skips in zip(load.documents, load.skips_before):
            self._report.skipped.extend(load.skips[shown:skips])
            shown = skips
            yield from _unique([(location, doc)], self._seen_ids, self._report)
        self._report.skipped.extend(load.skips[shown:])


def _files(paths: Iterable[str | os.PathLike[str]], report: LoadReport) -> Iterator[tuple[Path, str]]:
    """The files to load, each real file once (a second path to it is a skip), counted in ``report``."""
    seen_files: dict[str, str] = {}
    for path, doc_id in _expand(_as_path_list(paths), report):
        real = os.path.realpath(path)
        if real in seen_files:
            report._skip(str(path), f"same file as {seen_files[real]} (already loaded)")
            continue
        seen_files[real] = str(path)
        report.files += 1
        yield path, doc_id


def _unique(located: Iterable[tuple[str, Document]], seen_ids: dict[str, str],
            report: LoadReport) -> Iterator[Document]:
    """The documents whose id is new; a later one with an id seen is a skip."""
    for location, doc in located:
        if doc.id in seen_ids:
            report._skip(location, f"duplicate id {doc.id!r} (first seen in {seen_ids[doc.id]})")
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


# --------------------------------------------------------------------------- dispatch


def _loader(suffix: str) -> Loader:
    """The loader of a file type; the optional ones are imported only when such a file is met."""
    if suffix in (".txt", ".md"):
        return iter_text_file
    if suffix in (".jsonl", ".jsonl.gz"):
        from ragkit.ingest.jsonl import iter_jsonl

        return lambda path, _id, report, stem: iter_jsonl(path, report, stem)
    if suffix in (".html", ".htm"):
        from ragkit.ingest.html import iter_html_file as loader
    elif suffix in (".warc", ".warc.gz"):
        from ragkit.ingest.warc import iter_warc as loader
    elif suffix == ".pdf":
        from ragkit.ingest.pdf import iter_pdf as loader
    else:
        from ragkit.ingest.word import iter_docx as loader
    return loader


def _guarded(path: Path, doc_id: str, report: LoadReport,
             span: tuple[int, int | None, int] | None = None) -> Iterator[tuple[str, Document]]:
    """The documents of one file (or of a line range of a plain JSONL one, see :func:`load_file`);
    whatever its library throws becomes a skip with the reason.

    The format libraries (trafilatura, lxml, warcio, pypdf, python-docx) raise many kinds of
    errors on broken or hostile files; each is reported by type and message and the run goes
    on. Documents a file gave before its error are kept.
    """
    suffix = _suffix(path.name) or ""
    ranged: Iterator[tuple[str, Document]] | None = None
    if span is not None:  # a bad range is the caller's mistake: its ValueError is not caught below
        from ragkit.ingest.jsonl import iter_jsonl

        start, end, first_line = span
        ranged = iter_jsonl(path, report, _stem(path.name), start=start, end=end, first_line=first_line)
    try:
        yield from ranged if ranged is not None else _loader(suffix)(path, doc_id, report, _stem(path.name))
    except MissingExtraError as exc:
        report._skip(str(path), str(exc))
    except OSError as exc:
        report._skip(str(path), os_error_reason(exc))
    except Exception as exc:  # noqa: BLE001 - a library's error on a bad file is a skip, never an abort
        report._skip(str(path), library_error_reason(_KIND.get(suffix, "file"), exc))


# --------------------------------------------------------------------------- finding files


def _as_path_list(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    # A lone str is an Iterable[str] too; iterating it would yield characters.
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def _suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):  # .warc.gz before .gz-less ones
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return suffix
    return None


def _stem(name: str) -> str:
    suffix = _suffix(name)
    return name[: -len(suffix)] if suffix else Path(name).stem


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
    """Depth-first, sorted, a folder's files before its subfolders; a stack, not recursion
    (``os.walk`` recurses on Python 3.11 and fails at some 1,000 nested folders)."""
    pending = [top]
    while pending:
        here = pending.pop()
        try:
            with os.scandir(here) as entries:
                names = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in entries)
        except OSError as exc:
            report._skip(str(exc.filename or here), f"cannot read folder: {exc.strerror or exc}")
            continue
        subfolders = []
        for name, is_dir in names:
            if name.startswith("."):
                continue
            entry = here / name
            if is_dir:
                subfolders.append(entry)
            elif os.path.islink(entry) and os.path.isdir(entry):
                report._skip(str(entry), _dir_link_reason(entry, here))
            elif _suffix(name) is not None:
                found = _regular_file(entry, report)
                if found:
                    yield entry, entry.relative_to(top).as_posix()
        pending.extend(reversed(subfolders))


def _regular_file(file: Path, report: LoadReport) -> bool:
    try:
        mode = os.stat(file).st_mode  # follows links; never opens the file
    except OSError as exc:
        link = os.path.islink(file)
        report._skip(str(file), _broken_link_reason(file) if link else os_error_reason(exc))
        return False
    if not stat.S_ISREG(mode):
        report._skip(str(file), _special_file_reason(file))
        return False
    return True


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
