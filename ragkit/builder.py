"""Building an index folder: load -> chunk -> embed -> write a new generation -> commit.

Data files get generation-numbered names and the manifest is replaced last, atomically, so a
crash or an error at any point leaves the previous index intact and searchable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chunking import MIN_MAX_TOKENS, Chunker
from .documents import Document
from .embedding import Embedder
from .errors import EmptyCorpusError, InvalidArgumentError
from .lexical import LexicalIndex
from .loaders import LoadReport, load_documents, source_files
from .manifest import MANIFEST_NAME, fsync_dir, new_manifest, write_manifest
from .progress import NoProgress, Progress
from .store import Store
from .vectors import VectorIndex

# A title longer than this share of the passage budget is not prefixed to passages.
_MAX_TITLE_SHARE = 0.25


@dataclass(frozen=True)
class BuildOptions:
    """How passages are cut and indexed. ``max_tokens=None`` fills the model's window."""

    factory: str = "Flat"
    max_tokens: int | None = None
    overlap_tokens: int = 0
    title_prefix: bool = True

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 8:
            raise InvalidArgumentError("--max-tokens must be at least 8")
        if self.overlap_tokens < 0:
            raise InvalidArgumentError("--overlap must be >= 0")


@dataclass
class BuildResult:
    path: Path
    documents: int
    passages: int
    report: LoadReport = field(default_factory=LoadReport)


def corpus_fingerprint(paths: Sequence[str | os.PathLike[str]]) -> str:
    """A content hash of every file the paths expand to: unchanged corpus, unchanged hash."""
    digest = hashlib.sha256()
    for f in source_files(paths):
        digest.update(str(f.resolve()).encode("utf-8", "surrogateescape") + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def build_index(
    sources: Iterable[str | os.PathLike[str]] | Iterable[Document],
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    embedder: Embedder | None = None,
    options: BuildOptions | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Build (or rebuild) the index folder ``path`` from files/folders or Document objects."""
    from filelock import FileLock

    options = options or BuildOptions()
    progress = progress or NoProgress()
    root = Path(path)
    items = list(sources)
    report = LoadReport()
    source_paths: list[str] = []
    if items and all(isinstance(x, Document) for x in items):
        docs: list[Document] = items  # type: ignore[assignment]
        report.documents = len(docs)
    else:
        if any(isinstance(x, Document) for x in items):
            raise InvalidArgumentError("give either paths or Document objects, not both")
        source_paths = [str(Path(p).resolve()) for p in items]  # type: ignore[arg-type]
        progress.start("Loading", None)
        docs, report = load_documents(source_paths)
        progress.finish()
    if not docs:
        detail = f" ({report.summary()})" if report.files or report.skipped else ""
        raise EmptyCorpusError(f"nothing to index: no readable document with text{detail}")
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise InvalidArgumentError(f"duplicate document id {d.id!r}")
        seen.add(d.id)

    embedder = embedder or Embedder(model)
    counter = embedder.token_counter()
    window = embedder.max_tokens - counter.special_tokens
    prompt_tokens = counter.count([embedder.passage_prompt])[0] if embedder.passage_prompt else 0
    budget = window - prompt_tokens
    if options.max_tokens is not None:
        budget = min(budget, options.max_tokens)
    if budget < MIN_MAX_TOKENS:
        raise InvalidArgumentError(f"model window of {embedder.max_tokens} tokens leaves no room for passages")
    chunker = Chunker(counter, budget, min(options.overlap_tokens, budget // 2 - 1))

    progress.start("Chunking", len(docs))
    title_tokens = counter.count([d.title for d in docs]) if options.title_prefix else [0] * len(docs)
    spans: list[list[tuple[int, int]]] = []
    embed_texts: list[str] = []
    for doc, t_tokens in zip(docs, title_tokens):
        prefix = ""
        fits = t_tokens + 1 <= budget * _MAX_TITLE_SHARE and budget - t_tokens - 1 >= MIN_MAX_TOKENS
        if options.title_prefix and doc.title and fits and not doc.text.startswith(doc.title):
            prefix = doc.title + "\n"
        doc_spans = chunker.spans(doc.text, budget - (t_tokens + 1 if prefix else 0))
        spans.append(doc_spans)
        embed_texts.extend(prefix + doc.text[s:e] for s, e in doc_spans)
        progress.advance()
    progress.finish()

    progress.start("Embedding", len(embed_texts))
    vectors = embedder.embed_passages(embed_texts, progress=progress.advance)
    progress.finish()

    progress.start("Writing", None)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        generation = _next_generation(root)
        vec_name, store_name = f"vectors-{generation:06d}.faiss", f"store-{generation:06d}.sqlite"
        store = Store.create(root / store_name)
        rows: list[tuple[int, int, int, int]] = []
        doc_rows: list[int] = []
        pid = 0
        for doc, doc_spans in zip(docs, spans):
            rowid = store.add_document(doc)
            doc_rows.append(rowid)
            for s, e in doc_spans:
                rows.append((pid, rowid, s, e))
                pid += 1
        store.add_passages(rows)
        store.commit()
        store.close()
        lexical_name, doc_lexical_name = f"lexical-{generation:06d}", f"doclexical-{generation:06d}"
        progress.start("BM25", None)
        lexical = LexicalIndex.build(np.arange(len(embed_texts), dtype=np.int64), embed_texts)
        lexical.save(root / lexical_name)
        doc_texts = [d.text if not d.title or d.text.startswith(d.title) else f"{d.title}\n{d.text}" for d in docs]
        LexicalIndex.build(np.asarray(doc_rows, dtype=np.int64), doc_texts).save(root / doc_lexical_name)
        index = VectorIndex.create(embedder.dimension, options.factory)
        index.add(np.arange(len(embed_texts), dtype=np.int64), vectors)
        index.save(root / vec_name)
        for name in (vec_name, store_name):
            _fsync_file(root / name)
        progress.finish()
        manifest: dict[str, Any] = new_manifest(
            generation=generation,
            model=embedder.describe(),
            chunker={
                "tokenizer": embedder.name,
                "max_tokens": budget,
                "overlap_tokens": chunker.overlap_tokens,
                "title_prefix": options.title_prefix,
                "sentence_splitter": "ragkit.chunking/1",
            },
            vectors={"file": vec_name, "factory": options.factory, "dimension": embedder.dimension},
            store={"file": store_name},
            lexical={"dir": lexical_name, "documents_dir": doc_lexical_name, **lexical.config()},
            counts={"documents": len(docs), "passages": len(embed_texts)},
            sources={"paths": source_paths, "fingerprint": corpus_fingerprint(source_paths) if source_paths else None},
        )
        write_manifest(root, manifest)
        _remove_stale(root, keep={MANIFEST_NAME, vec_name, store_name, lexical_name, doc_lexical_name})
    progress.finish()
    return BuildResult(root, len(docs), len(embed_texts), report)


def _next_generation(root: Path) -> int:
    numbers = [0]
    for f in root.iterdir():
        stem = f.name.split(".")[0]
        if "-" in stem and stem.rsplit("-", 1)[1].isdigit():
            numbers.append(int(stem.rsplit("-", 1)[1]))
    return max(numbers) + 1


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    fsync_dir(path.parent)


def _remove_stale(root: Path, keep: set[str]) -> None:
    """Delete data files of older generations (never anything ragkit did not write)."""
    import shutil

    for f in root.iterdir():
        if f.name in keep:
            continue
        if f.is_file() and f.name.startswith(("vectors-", "store-")) and f.suffix in (".faiss", ".sqlite"):
            f.unlink(missing_ok=True)
        elif f.is_dir() and not f.is_symlink() and f.name.startswith(("lexical-", "doclexical-")):
            shutil.rmtree(f, ignore_errors=True)


def ensure_index(
    path: str | os.PathLike[str],
    corpus: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> bool:
    """Make sure ``path`` holds an index of the folder ``corpus``; (re)build when missing or stale.

    An index that was built from other sources is left alone. Returns True when it built.
    """
    from .errors import IndexNotFoundError
    from .manifest import read_manifest

    root, corpus_path = Path(path), str(Path(corpus).resolve())
    try:
        manifest = read_manifest(root)
    except IndexNotFoundError:
        manifest = None
    if manifest is not None:
        sources = manifest.get("sources") or {}
        if sources.get("paths") != [corpus_path]:
            return False
        if sources.get("fingerprint") == corpus_fingerprint([corpus_path]):
            return False
    model = manifest["model"]["name"] if manifest else None
    build_index([corpus_path], root, model=model, progress=progress)
    return True
