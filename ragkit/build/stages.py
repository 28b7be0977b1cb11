"""The build stages: collect documents, cut passages, embed (cached), BM25, vectors, query encoder.

Each stage is a function of its inputs; :mod:`ragkit.build.pipeline` runs them in order and
commits the result as a new generation.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.build.options import BuildOptions
from ragkit.build.reuse import Kept
from ragkit.documents import Document
from ragkit.encoders.cache import CACHE_NAME, EmbeddingCache
from ragkit.encoders.embedder import Embedder
from ragkit.errors import EmptyCorpusError, InvalidArgumentError, ModelMismatchError
from ragkit.ingest.chunking import MIN_MAX_TOKENS, Chunker
from ragkit.ingest.loaders import LoadReport, iter_documents
from ragkit.ingest.report import display_path
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.progress import Progress
from ragkit.vectors.faiss_index import VectorIndex

# A title longer than this share of the passage budget is not prefixed to passages.
_MAX_TITLE_SHARE = 0.25


Load = Callable[[list[str], LoadReport, Progress], list[Document]]


def collect(
    sources: Iterable[str | os.PathLike[str]] | Iterable[Document], progress: Progress, allow_empty: bool = False,
    load: Load | None = None,
) -> tuple[list[Document], LoadReport, list[str]]:
    """The documents of ``sources`` (paths, read by ``load``, default here; or Document objects),
    what loading saw, and the paths as the manifest records them."""
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
            docs = (load or load_here)(source_paths, report, progress)
    if not docs and not (allow_empty and not items):
        detail = f" ({report.summary(reasons=3)})" if report.files or report.skipped else ""
        raise EmptyCorpusError(f"nothing to index: no readable document with text{detail}")
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise InvalidArgumentError(f"duplicate document id {d.id!r}")
        seen.add(d.id)
    return docs, report, [display_path(p) for p in source_paths]  # as the manifest can hold them (UTF-8)


def load_here(paths: list[str], report: LoadReport, progress: Progress) -> list[Document]:
    """Every document of ``paths``, read in this process (:func:`ragkit.ingest.loaders.iter_documents`)."""
    progress.start("Loading", None)
    docs = list(iter_documents(paths, report))
    progress.finish()
    return docs


def chunk(  # noqa: ANN202
    docs: list[Document], embedder: Embedder, options: BuildOptions, progress: Progress, kept: Kept | None = None
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
        spans.append(doc_spans)
        prefixed.append(has_prefix)
        progress.advance()
    progress.finish()
    texts = passage_texts(docs, spans, prefixed)
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


def passage_texts(docs: Sequence[Document], spans: Sequence[Sequence[tuple[int, int]]],
                  prefixed: Sequence[bool]) -> list[str]:
    """The texts :func:`chunk` gives to embed: each passage, after its document's title and a
    newline where the title is prefixed."""
    return [(d.title + "\n" if p else "") + d.text[s:e] for d, doc_spans, p in zip(docs, spans, prefixed)
            for s, e in doc_spans]


def pick(texts: Sequence[str], rows: Sequence[int] | np.ndarray) -> list[str]:
    """``texts[i]`` for each of ``rows``, read in one go where the sequence can (``take``: a store's)."""
    take = getattr(texts, "take", None)
    return take(rows) if take is not None else [texts[int(i)] for i in rows]


def passage_cache_tag(embedder: Any) -> str:  # noqa: ANN401
    """The embedder's passage cache key: optional in the protocol, "" (float32 vectors) when absent."""
    return str(getattr(embedder, "passage_cache_tag", "") or "")


def embed(root: Path, texts: list[str], embedder: Embedder, progress: Progress,
          encode: Callable[..., np.ndarray] | None = None, label: str = "Embedding") -> tuple[np.ndarray, int]:
    """Vectors of ``texts``, from the cache where possible; returns (vectors, number embedded).

    ``encode(texts, progress=...)`` embeds the texts the cache lacks (default: the embedder's
    ``embed_passages``; an executor's runs them on its workers).
    """
    cache = EmbeddingCache(root / CACHE_NAME, embedder.name, embedder.dimension, embedder.passage_prompt,
                           passage_cache_tag(embedder))
    try:
        keys = cache.keys(texts)
        vectors = np.empty((len(texts), embedder.dimension), dtype=np.float32)
        missing = cache.fill(keys, range(len(texts)), vectors)
        progress.start(label, len(missing))
        if missing:
            fresh = (encode or embedder.embed_passages)([texts[i] for i in missing], progress=progress.advance)
            if fresh.shape != (len(missing), embedder.dimension):
                raise ModelMismatchError.dimensions(embedder.name, fresh.shape[-1], root, embedder.dimension)
            vectors[missing] = fresh
            cache.put([keys[i] for i in missing], fresh)
        progress.finish()
        return vectors, len(missing)
    finally:
        cache.close()


def lexical(
    docs: list[Document], texts: list[str], ids: np.ndarray, doc_rows: list[int], kept: Kept | None,
    reused: np.ndarray | None,
) -> tuple[LexicalIndex, LexicalIndex]:
    """BM25 over passages (``ids``: their passage ids) and over whole documents (ids: document row ids).

    With ``kept`` (an update) and ``reused`` (each passage's id in the current generation, -1
    for new ones), kept documents take their term counts over from the current indexes and only
    the text of the others is analysed; the scores equal a fresh build's.
    """
    doc_ids = np.asarray(doc_rows, dtype=np.int64)
    if kept is None or reused is None or not (kept.lexical.has_counts and kept.doc_lexical.has_counts):
        return LexicalIndex.build(ids, texts), LexicalIndex.build(doc_ids, DocumentTexts(docs))
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


class DocumentTexts(Sequence[str]):
    """What the document-level BM25 index reads of each of ``docs``, made as it is read (the
    index analyses a block at a time), so a build never holds a second copy of the corpus."""

    def __init__(self, docs: Sequence[Document]) -> None:
        self._docs = docs

    def __len__(self) -> int:
        return len(self._docs)

    def __getitem__(self, i):  # noqa: ANN001, ANN204 - an index or a slice, as a Sequence takes
        if isinstance(i, slice):
            return [_document_text(d) for d in self._docs[i]]
        return _document_text(self._docs[i])


def _document_text(doc: Document) -> str:
    """What the document-level BM25 index reads: the title (unless the text starts with it) and text."""
    return doc.text if not doc.title or doc.text.startswith(doc.title) else f"{doc.title}\n{doc.text}"


def write_vectors(path: Path, ids: np.ndarray, vectors: np.ndarray, options: BuildOptions,
                  progress: Progress, texts: Sequence[str] = (), embedder: Embedder | None = None,
                  fill: Callable[[VectorIndex, np.ndarray, np.ndarray, Progress], VectorIndex | None] | None = None,
                  ) -> dict[str, Any]:
    """Build, tune and save the vector index; returns its manifest entry (type, factory, tuning).

    An approximate type is tuned on snippets of the passages embedded as queries (see
    :func:`ragkit.vectors.ann.tune`), or on the passage vectors themselves without texts or model.
    ``fill(index, ids, vectors, progress)`` may return the trained index with the vectors added
    elsewhere (an executor's workers, in shards), or None to leave that to this function.

    ``auto`` beyond exact search's size measures the candidate types on samples of these
    vectors first (:mod:`ragkit.vectors.select`) and keeps the one built only if it beats exact
    search on the whole collection. The tuning record says how long tuning and the trials took
    (``tuning_seconds``) against the whole vector stage (``vector_seconds``).
    """
    from ragkit.vectors import select
    from ragkit.vectors.ann import factory_for, query_snippets, training_sample, tune

    started = time.perf_counter()
    n, dimension = vectors.shape
    factory = factory_for(options.index_type, n, dimension)
    choosing = select.applies(options.index_type, n, dimension)
    query_vectors = None
    if (choosing or factory != "Flat") and embedder is not None and len(texts):
        snippets = query_snippets(texts, words=_snippet_words(embedder))
        query_vectors = embedder.embed_queries(snippets) if snippets else None
    selection: dict[str, Any] | None = None
    if choosing:
        progress.start("Measuring index types", None)
        selection = select.choose(vectors, select.trial_queries(vectors, query_vectors), options.recall)
        factory = factory_for(selection["kind"], n, dimension)
    index = VectorIndex.create(dimension, factory)
    step = 65_536
    staged = not index.exact or n > step
    if not index.exact:
        progress.start("Training", None)
        index.train(training_sample(vectors, factory))
    if staged:
        progress.start("Indexing", n)
    filled = fill(index, ids, vectors, progress) if fill is not None else None
    if filled is not None:
        index = filled
    else:
        index.add_in_pieces(ids, vectors, progress.advance)
    if not index.exact:
        progress.start(f"Tuning to recall@10 >= {options.recall:g}", None)
    limit = selection["exact_ms"] / 1000 if selection else None
    tuning = tune(index, vectors, ids, options.recall, query_vectors=query_vectors, cost_limit=limit)
    index.params = tuning.params
    record = tuning.to_json()
    if selection is not None:
        t0 = time.perf_counter()
        if not index.exact:
            index, selection["final"] = select.guard(index, vectors, ids, select.trial_queries(vectors, query_vectors),
                                                     tuning.reached)
            if index.exact:  # the approximate type lost to exact search at full size (or missed the target)
                factory = "Flat"
                record = {**tune(index, vectors, ids, options.recall).to_json(), "fell_back_from": record}
        selection["seconds"] = round(selection["seconds"] + time.perf_counter() - t0, 2)
        record["selection"] = selection
    record["tuning_seconds"] = round(tuning.seconds + (selection["seconds"] if selection else 0.0), 3)
    record["vector_seconds"] = round(time.perf_counter() - started, 3)
    if staged:
        progress.start("Writing", None)
    index.save(path)
    return {"index_type": options.index_type, "factory": factory, "search": index.params, "tuning": record}


def _snippet_words(embedder: Any) -> tuple[int, int]:  # noqa: ANN401
    """Words per tuning snippet: fewer for a static model (see :func:`ragkit.vectors.ann.query_snippets`)."""
    from ragkit.encoders.static import StaticEncoder
    from ragkit.vectors.ann import STATIC_SNIPPET_WORDS

    query_encoder = getattr(embedder, "query_encoder", None)
    return STATIC_SNIPPET_WORDS if query_encoder is not None and isinstance(query_encoder(), StaticEncoder) else (4, 12)


def vector_entry(path: Path, ids: np.ndarray, vectors: np.ndarray, current: Any, changed: int,  # noqa: ANN401
                 options: BuildOptions, progress: Progress, texts: Sequence[str], embedder: Any,  # noqa: ANN401
                 write_vectors: Callable[..., dict[str, Any]], started: float) -> dict[str, Any]:
    """The vector file of a build or an update, and its manifest entry: refilled where little
    changed since ``current`` (:mod:`ragkit.build.refill`), else written by ``write_vectors`` (an
    executor's), with the tuning's share of the build's seconds since ``started``."""
    from ragkit.build.refill import refill_or_write

    def write(vector_options: BuildOptions) -> dict[str, Any]:
        entry = write_vectors(path, ids, vectors, vector_options, progress, texts, embedder)
        tuning_share(entry, time.perf_counter() - started)
        entry["index_type"] = options.index_type
        return entry

    return refill_or_write(path, ids, vectors, current, changed, options, progress, write)


def tuning_share(entry: dict[str, Any], build_seconds: float) -> None:
    """Record in a vector entry's tuning record the build's seconds so far (chunking, embedding,
    BM25, vectors) and the share of them that tuning and type trials took."""
    record = entry.get("tuning") or {}
    record["build_seconds"] = round(build_seconds, 3)
    record["share"] = round(record.get("tuning_seconds", 0.0) / build_seconds, 4) if build_seconds > 0 else 0.0


def query_encoder(root: Path, embedder: Embedder) -> dict[str, str] | None:
    """Export (or reuse) the ONNX query encoder of this model; None where it cannot be exported."""
    import logging

    if not isinstance(embedder, Embedder):  # test fakes
        return None
    from ragkit.errors import OnnxEncoderError, OnnxExportUnsupported
    from ragkit.encoders.onnx_runtime import read_config

    described = f"{embedder.name}\0{embedder.dimension}\0{embedder.query_prompt}\0{embedder.passage_prompt}"
    key = hashlib.sha256(described.encode())
    name = f"query-encoder-{key.hexdigest()[:12]}"
    try:
        if (root / name).is_dir():
            config = read_config(root / name)
            if config.get("model", {}).get("name") == embedder.name:
                return {"dir": name}
    except OnnxEncoderError:
        pass
    if not embedder.exports_onnx:
        return None  # ONNX-backed or static (numpy) embedders: already torch-free
    try:
        from ragkit.encoders.onnx_export import export_onnx

        export_onnx(embedder.model, root / name, model_name=embedder.name,
                    query_prompt=embedder.query_prompt, passage_prompt=embedder.passage_prompt)
    except (OnnxExportUnsupported, ImportError) as exc:
        logging.getLogger("ragkit").info("no ONNX query encoder for %s: %s", embedder.name, exc)
        return None
    return {"dir": name}
