"""Writing an index folder: load -> chunk -> embed (cached) -> write a new generation -> commit.

Data files get generation-numbered names and the manifest is replaced last, atomically, so a
crash or an error at any point leaves the previous index intact and searchable. One writer at
a time holds the folder's lock; readers never take it. Updates (:func:`update_index`) write a
whole new generation too, but their cost follows what changed: documents they keep keep their
stored passage spans (no re-chunking), their vectors come from the embedding cache, and their
BM25 term counts are taken over from the current lexical indexes (no re-analysis); only new or
changed documents are chunked, embedded and analysed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.ingest.chunking import MIN_MAX_TOKENS, Chunker
from ragkit.documents import Document
from ragkit.encoders.embedder import Embedder
from ragkit.encoders.cache import CACHE_NAME, EmbeddingCache
from ragkit.errors import EmptyCorpusError, IndexLockedError, InvalidArgumentError, ModelMismatchError
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.ingest.loaders import LoadReport, load_documents, source_files
from ragkit.format.manifest import MANIFEST_NAME, fsync_dir, new_manifest, read_manifest, write_manifest
from ragkit.progress import NoProgress, Progress
from ragkit.store.sqlite import Store, StoredDocument
from ragkit.vectors.faiss_index import VectorIndex

# A title longer than this share of the passage budget is not prefixed to passages.
_MAX_TITLE_SHARE = 0.25
_DATA_PREFIXES = ("vectors-", "store-", "lexical-", "doclexical-", "query-encoder-")


@dataclass(frozen=True)
class BuildOptions:
    """How passages are cut and indexed. ``max_tokens=None`` fills the model's window."""

    index_type: str = "auto"  # auto | flat | hnsw | hnsw-sq8 | ivf-sq8 | ivfpq | a FAISS factory string
    recall: float = 0.95  # recall@10 target the search parameters of an approximate type are tuned to
    max_tokens: int | None = None
    overlap_tokens: int = 0
    title_prefix: bool = True
    query_encoder: bool = True  # export an ONNX query encoder for torch-free searches

    def __post_init__(self) -> None:
        if not self.index_type or not self.index_type.strip():
            raise InvalidArgumentError("--index-type must not be empty")
        if not 0.0 < self.recall <= 1.0:
            raise InvalidArgumentError(f"--recall must be in (0, 1], got {self.recall!r}")
        if self.max_tokens is not None and self.max_tokens < MIN_MAX_TOKENS:
            raise InvalidArgumentError(f"--max-tokens must be at least {MIN_MAX_TOKENS}")
        if self.overlap_tokens < 0:
            raise InvalidArgumentError("--overlap must be >= 0")


@dataclass
class BuildResult:
    path: Path
    documents: int
    passages: int
    report: LoadReport = field(default_factory=LoadReport)
    embedded: int = 0  # passages embedded by the model (the rest came from the cache)
    added: int = 0
    removed: int = 0
    unchanged: bool = False  # the corpus and settings matched the index: nothing was written


@dataclass
class _Kept:
    """What an update takes over from the current generation for the documents it keeps."""

    documents: dict[str, StoredDocument]  # kept documents only, by id
    lexical: LexicalIndex
    doc_lexical: LexicalIndex
    chunker: dict[str, Any]  # the current chunker settings (an update keeps them)
    query_encoder: dict[str, str] | None  # the current ONNX query encoder, reused as it is
    encoder_files: dict[str, Any] = field(default_factory=dict)  # its recorded checksums
    vectors: VectorIndex | None = None  # the current exact vectors (None: take them from the cache)


class _RecordedModel:
    """An index's embedder as its manifest records it, loaded only when it must work.

    An update reads name, dimension, window and prompts from the manifest; the model (and its
    tokenizer) is loaded only to chunk or embed new text, so removing documents loads neither.
    """

    def __init__(self, load: Callable[[], Embedder], recorded: dict[str, Any]) -> None:
        self._load = load
        self._embedder: Embedder | None = None
        self._recorded = dict(recorded)
        self.name: str = recorded["name"]
        self.dimension = int(recorded["dimension"])
        self.max_tokens = int(recorded["max_tokens"])
        self.query_prompt: str = recorded.get("query_prompt") or ""
        self.passage_prompt: str = recorded.get("passage_prompt") or ""

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._load()
        return self._embedder

    def describe(self) -> dict[str, Any]:
        return dict(self._recorded)

    def token_counter(self) -> Any:  # noqa: ANN401
        return self.embedder.token_counter()

    def embed_passages(self, passages: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.embedder.embed_passages(passages, progress=progress)


def corpus_fingerprint(paths: Sequence[str | os.PathLike[str]]) -> str:
    """A content hash of every file the paths expand to: unchanged corpus, unchanged hash."""
    digest = hashlib.sha256()
    for f in source_files(paths):
        digest.update(str(f.resolve()).encode("utf-8", "surrogateescape") + b"\0")
        try:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:  # the loader skips it with a reason; the hash still notes it
            digest.update(f"\0unreadable {exc.errno}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


@contextmanager
def writer_lock(root: Path, wait: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the index folder's writer lock; wait for it (telling ``on_wait``) or fail at once."""
    from filelock import FileLock, Timeout

    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise IndexLockedError(f"another ragkit process is writing {root}; try again later") from None
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build_index(
    sources: Iterable[str | os.PathLike[str]] | Iterable[Document],
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    embedder: Embedder | None = None,
    options: BuildOptions | None = None,
    progress: Progress | None = None,
    wait: bool = True,
    on_wait: Callable[[], None] | None = None,
    force: bool = False,
) -> BuildResult:
    """Build the index folder ``path`` from files/folders or Document objects.

    An index already there is replaced by a new generation; passages whose text did not
    change are not embedded again. When the index was built from the same paths, their
    content is unchanged (same hash) and the settings are the same, nothing is written
    (``BuildResult.unchanged``) unless ``force``.
    """
    progress = progress or NoProgress()
    root = Path(path)
    options = options or BuildOptions()
    if isinstance(sources, (str, os.PathLike)):  # one path, not an iterable of characters
        sources = [sources]
    items = list(sources)
    paths = [str(Path(p).resolve()) for p in items] if items and not any(isinstance(x, Document) for x in items) else []
    fingerprint = corpus_fingerprint(paths) if paths else None
    if not force and fingerprint is not None:
        unchanged = _unchanged(root, paths, fingerprint, model or (embedder.name if embedder else None), options)
        if unchanged is not None:
            return unchanged
    docs, report, source_paths = _collect(items, progress)
    if embedder is None and model is None:
        model = default_model(docs)
    with writer_lock(root, wait, on_wait):
        result = _write(root, docs, embedder or Embedder(model), options, progress,
                        sources={"paths": source_paths, "fingerprint": fingerprint})
    result.report = report
    return result


def _unchanged(root: Path, paths: list[str], fingerprint: str, model: str | None, options: BuildOptions) -> BuildResult | None:
    """The result of a build that has nothing to do, or None when the index must be (re)built."""
    from ragkit.encoders.embedder import same_model
    from ragkit.errors import RagkitError

    try:
        manifest = read_manifest(root)
    except RagkitError:
        return None
    recorded = manifest.get("sources") or {}
    chunker = manifest.get("chunker") or {}
    same_settings = (
        manifest["vectors"].get("index_type", manifest["vectors"].get("factory")) == options.index_type
        and (manifest["vectors"].get("tuning") or {}).get("target", options.recall) == options.recall
        and chunker.get("overlap_tokens") == options.overlap_tokens
        and chunker.get("title_prefix") == options.title_prefix
        and options.max_tokens in (None, chunker.get("max_tokens"))
        and same_model(manifest["model"]["name"], model)
    )
    if not same_settings or recorded.get("paths") != paths or recorded.get("fingerprint") != fingerprint:
        return None
    counts = manifest["counts"]
    return BuildResult(root, counts["documents"], counts["passages"], unchanged=True)


def _options_of(manifest: dict[str, Any]) -> BuildOptions:
    """The build options an index was made with, to rebuild or update it the same way."""
    chunker = manifest.get("chunker", {})
    vectors = manifest["vectors"]
    return BuildOptions(index_type=vectors.get("index_type", vectors["factory"]),
                        recall=float((vectors.get("tuning") or {}).get("target", 0.95)),
                        max_tokens=chunker.get("max_tokens"),
                        overlap_tokens=int(chunker.get("overlap_tokens", 0)),
                        title_prefix=bool(chunker.get("title_prefix", True)))


def default_model(docs: Sequence[Document]) -> str:
    """The dense model for a corpus: navec-ru where most documents are Russian, else MiniLM.

    all-MiniLM-L6-v2 cannot read Russian (xquad/ru dense 0.150) and spends ~6 tokens a Russian
    word; navec-ru reads it (0.849) and embeds thousands of passages a second.
    """
    from ragkit.lexical.analysis import detect_language
    from ragkit.encoders.embedder import DEFAULT_MODEL
    from ragkit.encoders.static import NAME as RUSSIAN_MODEL

    step = max(1, len(docs) // 500)
    sample = docs[::step]
    russian = sum(detect_language(f"{d.title} {d.text[:2000]}") == "ru" for d in sample)
    return RUSSIAN_MODEL if russian * 2 > len(sample) else DEFAULT_MODEL


def update_index(
    path: str | os.PathLike[str],
    *,
    add: Iterable[str | os.PathLike[str]] | Iterable[Document] = (),
    remove: Iterable[str] = (),
    remove_source: str | None = None,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    wait: bool = True,
    on_wait: Callable[[], None] | None = None,
) -> BuildResult:
    """Upsert documents (same id: replaced) and remove documents by id or source glob.

    The index keeps its model and chunking settings; only new or changed passages are embedded.
    """
    from ragkit.store.filters import Filters
    from ragkit.search.index import Index

    progress = progress or NoProgress()
    root = Path(path)
    if isinstance(add, (str, os.PathLike)):
        add = [add]
    new_docs, report, source_paths = _collect(add, progress, allow_empty=True)
    with writer_lock(root, wait, on_wait):
        manifest = read_manifest(root)
        with Index.open(root, embedder=embedder) as current:
            existing = current.store.documents()
            unknown = sorted(set(remove) - {d.id for d in existing})
            if unknown:
                raise InvalidArgumentError(f"no document with id {unknown[0]!r} in {root}")
            dropped = set(remove)
            if remove_source is not None:
                dropped |= set(current.store.document_ids(Filters(source=remove_source)))
            replaced = {d.id for d in new_docs}
            kept_docs = [d for d in existing if d.id not in dropped and d.id not in replaced]
            docs = kept_docs + new_docs
            if not docs:
                raise EmptyCorpusError(f"removing these documents would leave {root} empty")
            stored = current.store.document_passages()
            encoder = manifest.get("query_encoder")
            if not (isinstance(encoder, dict) and isinstance(encoder.get("dir"), str) and (root / encoder["dir"]).is_dir()):
                encoder = None
            encoder_files = {k: v for k, v in (manifest.get("files") or {}).items()
                             if encoder is not None and k.startswith(encoder["dir"] + "/")}
            kept = _Kept({d.id: stored[d.id] for d in kept_docs}, current.lexical, current.doc_lexical,
                         manifest.get("chunker") or {}, encoder, encoder_files,
                         current.vectors if current.vectors.exact else None)
            model = _RecordedModel(lambda: current.embedder, manifest["model"])
        options = _options_of(manifest)
        old_paths = (manifest.get("sources") or {}).get("paths") or []
        sources = {"paths": sorted(set(old_paths) | set(source_paths)), "fingerprint": None}
        result = _write(root, docs, model, options, progress, sources=sources, kept=kept)  # type: ignore[arg-type]
    result.report = report
    result.added = len(new_docs)
    result.removed = len([d for d in existing if d.id in dropped or d.id in replaced])
    return result


def _collect(
    sources: Iterable[str | os.PathLike[str]] | Iterable[Document], progress: Progress, allow_empty: bool = False
) -> tuple[list[Document], LoadReport, list[str]]:
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
        docs = []
        if source_paths:
            progress.start("Loading", None)
            docs, report = load_documents(source_paths)
            progress.finish()
    if not docs and not (allow_empty and not items):
        detail = f" ({report.summary()})" if report.files or report.skipped else ""
        raise EmptyCorpusError(f"nothing to index: no readable document with text{detail}")
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise InvalidArgumentError(f"duplicate document id {d.id!r}")
        seen.add(d.id)
    return docs, report, source_paths


def _chunk(  # noqa: ANN202
    docs: list[Document], embedder: Embedder, options: BuildOptions, progress: Progress, kept: _Kept | None = None
):
    """Passage spans per document, the texts to embed, whether each document's title is prefixed
    to its passages, and the chunker settings.

    Documents in ``kept`` (an update's unchanged documents; the settings are the current ones)
    keep their stored spans and title prefix; only the others are counted and cut, so an update
    that only removes documents never loads the tokenizer.
    """
    stored = [kept.documents.get(d.id) if kept is not None else None for d in docs]
    todo = [i for i, st in enumerate(stored) if st is None or st.title_prefix is None]
    title_tokens: dict[int, int] = {}
    budget = 0
    chunker: Chunker | None = None
    if todo:
        counter = embedder.token_counter()
        window = embedder.max_tokens - counter.special_tokens
        prompt_tokens = counter.count([embedder.passage_prompt])[0] if embedder.passage_prompt else 0
        budget = window - prompt_tokens
        if options.max_tokens is not None:
            budget = min(budget, options.max_tokens)
        if budget < MIN_MAX_TOKENS:
            raise InvalidArgumentError(f"model window of {embedder.max_tokens} tokens leaves no room for passages")
        chunker = Chunker(counter, budget, min(options.overlap_tokens, budget // 2 - 1))
        counts = counter.count([docs[i].title for i in todo]) if options.title_prefix else [0] * len(todo)
        title_tokens = dict(zip(todo, counts))
    progress.start("Chunking", len(docs))
    spans: list[list[tuple[int, int]]] = []
    texts: list[str] = []
    prefixed: list[bool] = []
    for i, (doc, st) in enumerate(zip(docs, stored)):
        if i in title_tokens:
            t_tokens = title_tokens[i]
            fits = t_tokens + 1 <= budget * _MAX_TITLE_SHARE and budget - t_tokens - 1 >= MIN_MAX_TOKENS
            has_prefix = bool(options.title_prefix and doc.title and fits and not doc.text.startswith(doc.title))
        else:
            has_prefix = bool(st.title_prefix)  # type: ignore[union-attr]
        if st is not None:
            doc_spans = [(start, end) for _, start, end in st.passages]
        else:
            doc_spans = chunker.spans(doc.text, budget - (title_tokens[i] + 1 if has_prefix else 0))  # type: ignore[union-attr]
        prefix = doc.title + "\n" if has_prefix else ""
        spans.append(doc_spans)
        texts.extend(prefix + doc.text[s:e] for s, e in doc_spans)
        prefixed.append(has_prefix)
        progress.advance()
    progress.finish()
    if kept is not None and kept.chunker:
        settings = dict(kept.chunker)
    else:
        settings = {
            "tokenizer": embedder.name,
            "max_tokens": budget,
            "overlap_tokens": chunker.overlap_tokens if chunker else options.overlap_tokens,
            "title_prefix": options.title_prefix,
            "sentence_splitter": "ragkit.chunking/1",
        }
    return spans, texts, prefixed, settings


def _embed(root: Path, texts: list[str], embedder: Embedder, progress: Progress) -> tuple[np.ndarray, int]:
    """Vectors of ``texts``, from the cache where possible; returns (vectors, number embedded)."""
    cache = EmbeddingCache(root / CACHE_NAME, embedder.name, embedder.dimension, embedder.passage_prompt,
                           getattr(embedder, "passage_cache_tag", ""))
    try:
        keys = cache.keys(texts)
        found = cache.get(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        vectors = np.empty((len(texts), embedder.dimension), dtype=np.float32)
        for i, k in enumerate(keys):
            if k in found:
                vectors[i] = found[k]
        progress.start("Embedding", len(missing))
        if missing:
            fresh = embedder.embed_passages([texts[i] for i in missing], progress=progress.advance)
            if fresh.shape != (len(missing), embedder.dimension):
                raise ModelMismatchError(
                    f"model {embedder.name!r} now gives {fresh.shape[-1]}-dimensional vectors; "
                    f"index {root} holds {embedder.dimension}-dimensional ones: rebuild it"
                )
            vectors[missing] = fresh
            cache.put([keys[i] for i in missing], fresh)
        progress.finish()
        return vectors, len(missing)
    finally:
        cache.close()


def _lexical(
    docs: list[Document], texts: list[str], doc_rows: list[int], kept: _Kept | None, reused: np.ndarray | None,
) -> tuple[LexicalIndex, LexicalIndex]:
    """BM25 over passages (ids: passage ids) and over whole documents (ids: document row ids).

    With ``kept`` (an update) and ``reused`` (each passage's id in the current generation, -1
    for new ones), kept documents take their term counts over from the current indexes and only
    the text of the others is analysed; the scores equal a fresh build's.
    """
    ids = np.arange(len(texts), dtype=np.int64)
    doc_ids = np.asarray(doc_rows, dtype=np.int64)
    if kept is None or reused is None or not (kept.lexical.has_counts and kept.doc_lexical.has_counts):
        return LexicalIndex.build(ids, texts), LexicalIndex.build(doc_ids, [_document_text(d) for d in docs])
    reuse_passages = reused
    new_passages = [t for t, old in zip(texts, reuse_passages.tolist()) if old < 0]
    reuse_docs: list[int] = []
    new_docs: list[str] = []
    for doc in docs:
        stored = kept.documents.get(doc.id)
        reuse_docs.append(stored.row if stored is not None else -1)
        if stored is None:
            new_docs.append(_document_text(doc))
    return (kept.lexical.updated(ids, reuse_passages, new_passages),
            kept.doc_lexical.updated(doc_ids, np.asarray(reuse_docs, dtype=np.int64), new_docs))


def _reused_passages(docs: list[Document], spans: list[list[tuple[int, int]]], kept: _Kept) -> np.ndarray:
    """For each passage of the new generation, its id in the current one (-1: a new passage)."""
    out: list[int] = []
    for doc, doc_spans in zip(docs, spans):
        stored = kept.documents.get(doc.id)
        if stored is not None:
            out.extend(pid for pid, _, _ in stored.passages)
        else:
            out.extend([-1] * len(doc_spans))
    return np.asarray(out, dtype=np.int64)


def _document_text(doc: Document) -> str:
    """What the document-level BM25 index reads: the title (unless the text starts with it) and text."""
    return doc.text if not doc.title or doc.text.startswith(doc.title) else f"{doc.title}\n{doc.text}"


def _write(
    root: Path, docs: list[Document], embedder: Embedder, options: BuildOptions, progress: Progress,
    sources: dict[str, Any], kept: _Kept | None = None,
) -> BuildResult:
    """Write ``docs`` as the next generation of ``root`` and commit it (caller holds the lock).

    ``kept``: an update's documents unchanged since the current generation, and what to reuse.
    """
    spans, texts, prefixed, chunker_settings = _chunk(docs, embedder, options, progress, kept)
    reused = _reused_passages(docs, spans, kept) if kept is not None else None
    if kept is not None and kept.vectors is not None and reused is not None:  # kept passages keep their exact vectors
        fresh = np.flatnonzero(reused < 0)
        vectors = np.empty((len(texts), kept.vectors.dimension), dtype=np.float32)
        vectors[reused >= 0] = kept.vectors.reconstruct(reused[reused >= 0])
        vectors[fresh], embedded = _embed(root, [texts[i] for i in fresh], embedder, progress)
    else:
        vectors, embedded = _embed(root, texts, embedder, progress)

    progress.start("Writing", None)
    generation = _next_generation(root)
    names = {
        "vectors": f"vectors-{generation:06d}.faiss",
        "store": f"store-{generation:06d}.sqlite",
        "lexical": f"lexical-{generation:06d}",
        "doclexical": f"doclexical-{generation:06d}",
    }
    store = Store.create(root / names["store"])
    rows: list[tuple[int, int, int, int]] = []
    doc_rows = store.add_documents(docs, prefixed)
    for rowid, doc_spans in zip(doc_rows, spans):
        rows.extend((len(rows), rowid, s, e) for s, e in doc_spans)
    store.add_passages(rows)
    store.commit()
    store.close()
    lexical, doc_lexical = _lexical(docs, texts, doc_rows, kept, reused)
    lexical.save(root / names["lexical"])
    doc_lexical.save(root / names["doclexical"])
    ids = np.arange(len(texts), dtype=np.int64)
    vector_entry = _write_vectors(root / names["vectors"], ids, vectors, options, progress, texts, embedder)
    for key in ("vectors", "store"):
        _fsync_file(root / names[key])
    recorded: dict[str, Any] = {}
    if kept is not None:  # same model: the current encoder stays, with its checksums
        query_encoder = kept.query_encoder
        recorded = kept.encoder_files
    else:
        query_encoder = _query_encoder(root, embedder) if options.query_encoder else None
    if query_encoder is not None:
        names["query_encoder"] = query_encoder["dir"]
    from ragkit.format.checksums import record

    manifest: dict[str, Any] = new_manifest(
        generation=generation,
        model=embedder.describe(),
        chunker=chunker_settings,
        vectors={"file": names["vectors"], "dimension": embedder.dimension, **vector_entry},
        store={"file": names["store"]},
        lexical={"dir": names["lexical"], "documents_dir": names["doclexical"], **lexical.config()},
        counts={"documents": len(docs), "passages": len(texts)},
        query_encoder=query_encoder,
        sources=sources,
        files={**record(root, [n for n in names.values() if not (recorded and n == names.get("query_encoder"))]),
               **recorded},
    )
    write_manifest(root, manifest)
    _remove_stale(root, keep=set(names.values()))
    progress.finish()
    return BuildResult(root, len(docs), len(texts), embedded=embedded)


def _write_vectors(path: Path, ids: np.ndarray, vectors: np.ndarray, options: BuildOptions,
                   progress: Progress, texts: Sequence[str] = (), embedder: Embedder | None = None) -> dict[str, Any]:
    """Build, tune and save the vector index; returns its manifest entry (type, factory, tuning).

    An approximate type is tuned on snippets of the passages embedded as queries (see
    :func:`ragkit.vectors.ann.tune`), or on the passage vectors themselves without texts or model.
    """
    from ragkit.vectors.ann import factory_for, query_snippets, training_sample, tune

    factory = factory_for(options.index_type, len(ids), vectors.shape[1])
    index = VectorIndex.create(vectors.shape[1], factory)
    step = 65_536
    staged = not index.exact or len(ids) > step
    if not index.exact:
        progress.start("Training", None)
        index.train(training_sample(vectors, factory))
    if staged:
        progress.start("Indexing", len(ids))
    for lo in range(0, len(ids), step):
        index.add(ids[lo:lo + step], vectors[lo:lo + step])
        progress.advance(min(step, len(ids) - lo))
    if not index.exact:
        progress.start(f"Tuning to recall@10 >= {options.recall:g}", None)
    query_vectors = None
    if not index.exact and embedder is not None and len(texts):
        snippets = query_snippets(list(texts))
        query_vectors = embedder.embed_queries(snippets) if snippets else None
    tuning = tune(index, vectors, ids, options.recall, query_vectors=query_vectors)
    index.params = tuning.params
    if staged:
        progress.start("Writing", None)
    index.save(path)
    return {"index_type": options.index_type, "factory": factory, "search": tuning.params, "tuning": tuning.to_json()}


def _query_encoder(root: Path, embedder: Embedder) -> dict[str, str] | None:
    """Export (or reuse) the ONNX query encoder of this model; None where it cannot be exported."""
    import logging

    if not isinstance(embedder, Embedder):  # test fakes
        return None
    from ragkit.encoders.onnx import OnnxEncoderError, OnnxExportUnsupported, read_config

    key = hashlib.sha256(f"{embedder.name}\0{embedder.dimension}\0{embedder.query_prompt}\0{embedder.passage_prompt}".encode())
    name = f"query-encoder-{key.hexdigest()[:12]}"
    try:
        if (root / name).is_dir():
            config = read_config(root / name)
            if config.get("model", {}).get("name") == embedder.name:
                return {"dir": name}
    except OnnxEncoderError:
        pass
    if type(embedder) is not Embedder or not hasattr(embedder.model, "modules"):
        return None  # ONNX-backed or static (numpy) embedders: already torch-free
    try:
        from ragkit.encoders.onnx import export_onnx

        export_onnx(embedder.model, root / name, model_name=embedder.name,
                    query_prompt=embedder.query_prompt, passage_prompt=embedder.passage_prompt)
    except (OnnxExportUnsupported, ImportError) as exc:
        logging.getLogger("ragkit").info("no ONNX query encoder for %s: %s", embedder.name, exc)
        return None
    return {"dir": name}


def _next_generation(root: Path) -> int:
    numbers = [0]
    for f in root.iterdir():
        stem = f.name.split(".")[0]
        if stem.startswith(_DATA_PREFIXES[:4]) and stem.rsplit("-", 1)[1].isdigit():
            numbers.append(int(stem.rsplit("-", 1)[1]))
    return max(numbers) + 1


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    fsync_dir(path.parent)


def _remove_stale(root: Path, keep: set[str]) -> None:
    """Delete data of generations before the previous one, and leftovers of killed writers.

    The previous generation stays one round longer, so a reader that opened the old manifest
    just before the commit can still load its files. Runs under the writer lock: any
    temporary file or folder found here belongs to a dead writer.
    """
    import re
    import shutil

    generations = sorted({int(m.group(1)) for f in root.iterdir() if (m := re.search(r"-(\d{6})(\.|$)", f.name))})
    previous = f"{generations[-2]:06d}" if len(generations) > 1 else None
    for f in root.iterdir():
        if f.name in keep or f.name == MANIFEST_NAME:
            continue
        leftover = f.name.startswith(".") and ".tmp-" in f.name
        stale = f.name.startswith(_DATA_PREFIXES) and not (previous and f"-{previous}" in f.name)
        if f.name.startswith("query-encoder-"):
            stale = True  # encoders are named by model, not generation: keep only the current one
        if not (leftover or stale):
            continue
        if f.is_dir() and not f.is_symlink():
            shutil.rmtree(f, ignore_errors=True)
        elif leftover or f.suffix in (".faiss", ".sqlite", ".sqlite-journal"):
            f.unlink(missing_ok=True)


def ensure_index(
    path: str | os.PathLike[str],
    corpus: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> bool:
    """Make sure ``path`` holds an index of the folder ``corpus``; (re)build when missing or stale.

    An index that was built from other sources is left alone. Returns True when it built.
    """
    from ragkit.errors import IndexNotFoundError

    root, corpus_path = Path(path), str(Path(corpus).resolve())
    try:
        manifest = read_manifest(root)
    except IndexNotFoundError:
        manifest = None
    if manifest is not None and (manifest.get("sources") or {}).get("paths") != [corpus_path]:
        return False
    model = manifest["model"]["name"] if manifest else None
    options = _options_of(manifest) if manifest else None
    return not build_index([corpus_path], root, model=model, options=options, progress=progress).unchanged
