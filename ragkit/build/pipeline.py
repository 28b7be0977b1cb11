"""Writing an index folder: load -> chunk -> embed (cached) -> write a new generation -> commit.

Data files get generation-numbered names and the manifest is replaced last, atomically, so a
crash or an error at any point leaves the previous index intact and searchable. One writer at
a time holds the folder's lock; readers never take it. A build streams its corpus through the
executor a unit at a time (:mod:`ragkit.build.stream`). Updates (:func:`update_index`) write a
whole new generation too, but their cost follows what changed (:mod:`ragkit.build.reuse`).
The stages themselves live in :mod:`ragkit.build.stages`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.build import stages, stream
from ragkit.build.executor import Executor, LocalExecutor
from ragkit.build.generation import Written, commit_generation, names_of
from ragkit.build.options import BuildOptions, BuildResult, options_of
from ragkit.build.refill import Current, in_place, in_place_applies
from ragkit.build.reuse import Kept, RecordedModel, passage_ids, reused_passages
from ragkit.documents import Document
from ragkit.encoders.embedder import Embedder
from ragkit.errors import EmptyCorpusError, InvalidArgumentError
from ragkit.format.layout import next_generation, writer_lock
from ragkit.format.manifest import read_manifest
from ragkit.ingest.loaders import source_files
from ragkit.lexical.bm25 import LexicalIndex
from ragkit.progress import NoProgress, Progress
from ragkit.store.sqlite import Store

__all__ = ["BuildOptions", "BuildResult", "build_index", "ensure_index", "update_index", "writer_lock"]


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
    executor: Executor | None = None,
) -> BuildResult:
    """Build the index folder ``path`` from files/folders or Document objects.

    An index already there is replaced by a new generation; passages whose text did not
    change are not embedded again. When the index was built from the same paths, their
    content is unchanged (same hash) and the settings are the same, nothing is written
    (``BuildResult.unchanged``) unless ``force``. ``executor`` runs the heavy stages (default:
    this process; :class:`ragkit.build.ray_executor.RayExecutor` runs them on a Ray cluster).
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
    executor = executor or LocalExecutor()
    corpus = stream.plan(items, executor.unit_sizes())
    if embedder is None and model is None:
        from ragkit.encoders.registry import default_model

        model = default_model(stream.sample(corpus))
    with writer_lock(root, wait, on_wait):
        result = stream.write(root, corpus, embedder or Embedder(model), options, progress, executor,
                              sources={"paths": corpus.paths, "fingerprint": fingerprint})
    result.report = corpus.report
    return result


def _unchanged(root: Path, paths: list[str], fingerprint: str, model: str | None,
               options: BuildOptions) -> BuildResult | None:
    """The result of a build that has nothing to do, or None when the index must be (re)built."""
    from ragkit.encoders.registry import same_model
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
        and options_of(manifest).language_vectors == options.language_vectors
        and options.max_tokens in (None, chunker.get("max_tokens"))
        and same_model(manifest["model"]["name"], model)
    )
    if not same_settings or recorded.get("paths") != paths or recorded.get("fingerprint") != fingerprint:
        return None
    counts = manifest["counts"]
    return BuildResult(root, counts["documents"], counts["passages"], unchanged=True)


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
    executor: Executor | None = None,
) -> BuildResult:
    """Upsert documents (same id: replaced) and remove documents by id or source glob.

    The index keeps its model and chunking settings; only new or changed passages are embedded.
    """
    from ragkit.format.checksums import check

    progress = progress or NoProgress()
    root = Path(path)
    if isinstance(add, (str, os.PathLike)):
        add = [add]
    new_docs, report, source_paths = stages.collect(add, progress, allow_empty=True,
                                                    load=(executor or LocalExecutor()).load)
    with writer_lock(root, wait, on_wait, create=False):
        manifest = read_manifest(root)
        # every byte taken over is verified, never laundered: the full check reads (and hashes,
        # without the GIL) every file while this thread reads the documents; a file that fails
        # it is the error reported, whatever the reading met
        with ThreadPoolExecutor(1, thread_name_prefix="ragkit-verify") as beside:
            verified = beside.submit(check, root, manifest["files"], full=True)
            try:
                existing, dropped, replaced, docs, kept, model = _current(root, manifest, embedder, new_docs,
                                                                          remove, remove_source)
            except BaseException:
                verified.result()
                raise
            verified.result()
        options = options_of(manifest)
        old_paths = (manifest.get("sources") or {}).get("paths") or []
        sources = {"paths": sorted(set(old_paths) | set(source_paths)), "fingerprint": None}
        result = _write_update(root, docs, model, options, progress, sources=sources, kept=kept,  # type: ignore[arg-type]
                        executor=executor)
    result.report = report
    result.added = len(new_docs)
    result.removed = len([d for d in existing if d.id in dropped or d.id in replaced])
    return result


def _current(root: Path, manifest: dict[str, Any], embedder: Embedder | None, new_docs: list[Document],
             remove: Iterable[str], remove_source: str | None) -> tuple[list[Document], set[str], set[str],
                                                                        list[Document], Kept, RecordedModel]:
    """What an update reads from the current generation: (its documents, the ids dropped, the ids
    replaced, the next generation's documents, what it keeps, its model)."""
    from ragkit.ingest.dedup import known_keys
    from ragkit.search.index import Index
    from ragkit.store.filters import Filters

    with Index.open(root, embedder=embedder) as current:
        existing = current.store.documents()
        dropped = set(remove)
        unknown = sorted(dropped - {d.id for d in existing})
        if unknown:
            raise InvalidArgumentError(f"no document with id {unknown[0]!r} in {root}")
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
        kept = Kept({d.id: stored[d.id] for d in kept_docs}, current.lexical, current.doc_lexical,
                    manifest.get("chunker") or {}, encoder, encoder_files,
                    current.vectors if current.vectors.exact else None,
                    Current(current.vectors, dict(manifest["vectors"]), int(manifest["counts"]["passages"]),
                            root / manifest["vectors"]["file"]))
        kept.id_space = current.id_space
        kept.language_vectors = list((manifest.get("language_vectors") or {}).get("indexes") or [])
        kept.duplicates = known_keys(current.store, manifest.get("duplicates"), [stored[d.id].row for d in kept_docs])
        model = RecordedModel(manifest["model"], given=embedder,
                              query_encoder=root / encoder["dir"] if encoder is not None else None)
    return existing, dropped, replaced, docs, kept, model


def _write_update(
    root: Path, docs: list[Document], embedder: Embedder, options: BuildOptions, progress: Progress,
    sources: dict[str, Any], kept: Kept, executor: Executor | None = None,
) -> BuildResult:
    """Write an update's ``docs`` as the next generation of ``root`` and commit it (caller holds the lock).

    ``kept``: the documents unchanged since the current generation, and what to reuse.
    ``executor``: where chunking, embedding, BM25 counting and the vector index run (default: here).
    """
    executor = executor or LocalExecutor()
    started = time.perf_counter()
    spans, texts, prefixed, chunker_settings = executor.chunk(docs, embedder, options, progress, kept)
    reused = reused_passages(docs, spans, kept)

    def encode(batch: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return executor.embed_passages(batch, embedder, progress)

    current = kept.current
    changed = 0
    if current is not None:  # passages added plus passages removed
        changed = int(np.count_nonzero(reused < 0)) + current.passages - int(np.count_nonzero(reused >= 0))
    vectors: np.ndarray | None = None
    fresh_vectors: np.ndarray | None = None
    if in_place_applies(current, changed, embedder.dimension):  # only new vectors needed
        fresh = np.flatnonzero(reused < 0)
        fresh_vectors, embedded = stages.embed(root, [texts[i] for i in fresh], embedder, progress, encode)
    elif kept.vectors is not None:  # kept passages keep their exact vectors
        fresh = np.flatnonzero(reused < 0)
        vectors = np.empty((len(texts), kept.vectors.dimension), dtype=np.float32)
        vectors[reused >= 0] = kept.vectors.reconstruct(reused[reused >= 0])
        vectors[fresh], embedded = stages.embed(root, [texts[i] for i in fresh], embedder, progress, encode)
    else:
        vectors, embedded = stages.embed(root, texts, embedder, progress, encode)

    progress.start("Writing", None)
    generation = next_generation(root)
    names = names_of(generation)
    ids = passage_ids(reused, kept.id_space)
    store = Store.create(root / names["store"])
    rows: list[tuple[int, int, int, int]] = []
    doc_rows = store.add_documents(docs, prefixed)
    for rowid, doc_spans in zip(doc_rows, spans):
        rows.extend((int(ids[len(rows)]), rowid, s, e) for s, e in doc_spans)
    store.add_passages(rows)
    from ragkit.ingest.dedup import write_for_build  # reprint groups (ragkit.ingest.dedup)

    # BM25 (array work that mostly runs without the GIL) beside the reprint groups, the store's
    # commit and the vectors: at 1M passages each side of an update takes about 20 s
    with ThreadPoolExecutor(1, thread_name_prefix="ragkit-bm25") as beside:
        lexical_job = beside.submit(_lexical, executor, root, names, docs, texts, ids, doc_rows, kept, reused)
        names["duplicates"] = f"duplicates-{generation:06d}.json"
        duplicates = write_for_build(root / names["duplicates"], docs, doc_rows, store,
                                     kept.duplicates)
        store.commit()
        store.close()
        vector_entry = _vectors(root / names["vectors"], executor, ids, vectors, fresh_vectors, reused, current,
                                changed, options, progress, texts, embedder, started)
        second = _language_vectors(root, generation, docs, spans, texts, ids, embedder, options, progress, executor,
                                   kept, reused)
        lexical = lexical_job.result()
    written = Written(chunker_settings, vector_entry, lexical.config(),
                      {"documents": len(docs), "passages": len(texts), "passage_ids": int(ids.max(initial=-1)) + 1},
                      duplicates, second[0], second[1])
    commit_generation(root, generation, names, embedder, options, written, sources, kept)
    progress.finish()
    return BuildResult(root, len(docs), len(texts), embedded=embedded)


def _language_vectors(root: Path, generation: int, docs: list[Document], spans: list[list[tuple[int, int]]],
                      texts: list[str], ids: np.ndarray, embedder: Embedder, options: BuildOptions,
                      progress: Progress, executor: Executor, kept: Kept | None,
                      reused: np.ndarray | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The second vector indexes of a mixed archive's minority languages (:mod:`ragkit.build.languages`)."""
    if not options.language_vectors:
        return [], []
    from ragkit.build import languages

    entries, written, _ = languages.write(root, generation, languages.languages_of(docs), [len(s) for s in spans],
                                          texts, ids, embedder.name, options, progress,
                                          lambda batch, model, advance: executor.embed_passages(batch, model, advance),
                                          executor.write_vectors, kept.language_vectors,
                                          reused)
    return entries, written


def _lexical(executor: Executor, root: Path, names: dict[str, str], docs: list[Document], texts: list[str],
             ids: np.ndarray, doc_rows: list[int], kept: Kept | None, reused: np.ndarray | None) -> LexicalIndex:
    """The generation's two BM25 indexes, written; returns the passage one (its config goes in the manifest)."""
    lexical, doc_lexical = executor.lexical(docs, texts, ids, doc_rows, kept, reused)
    lexical.save(root / names["lexical"])
    doc_lexical.save(root / names["doclexical"])
    return lexical


def _vectors(path: Path, executor: Executor, ids: np.ndarray, vectors: np.ndarray | None,
             fresh_vectors: np.ndarray | None, reused: np.ndarray | None, current: Current | None, changed: int,
             options: BuildOptions, progress: Progress, texts: list[str], embedder: Embedder,
             started: float) -> dict[str, Any]:
    """The generation's vector file, written: in place, refilled, or built; returns its manifest entry."""
    if vectors is None:  # an update in place: the current vectors stay where they are
        assert current is not None and reused is not None and fresh_vectors is not None
        return in_place(path, current, reused, ids, fresh_vectors, changed, progress)
    return stages.vector_entry(path, ids, vectors, current, changed, options, progress, texts, embedder,
                               executor.write_vectors, started)


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
    options = options_of(manifest) if manifest else None
    return not build_index([corpus_path], root, model=model, options=options, progress=progress).unchanged
