"""The build stages over one batch, as a worker runs them, and the merge of their results.

A worker gets a unit of file pieces to read (:func:`load_pieces`), of documents, or of passage texts;
it rebuilds the encoder from its picklable spec (:func:`worker_embedder`), and returns a
partial result that the driver merges in batch order: each file's documents and skips (in the
order :func:`ragkit.ingest.loaders.merged_documents` needs); passage spans per document, and
BM25 term counts (:class:`TermCounts`) of the batch's passages and documents; or the vectors of
a batch of texts. Merged in order, the parts give exactly what the in-process stages give over
the whole corpus: chunking is per document, and term counts merge into the same vocabulary
order, so the BM25 arrays are bit-identical. Parts travel as JSON or ``.npz`` bytes (no pickle).
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ragkit.build import stages
from ragkit.build.options import BuildOptions
from ragkit.build.reuse import Kept
from ragkit.documents import Document
from ragkit.build.units import Piece, load_piece
from ragkit.encoders.base import usable_cores
from ragkit.encoders.cache import CachedKeys
from ragkit.encoders.embedder import Embedder, EncoderSpec
from ragkit.encoders.registry import recorded_backend
from ragkit.ingest.loaders import FileLoad
from ragkit.lexical.analysis import Analyzer
from ragkit.lexical.bm25 import LexicalIndex, TermCounts, count_terms
from ragkit.progress import NoProgress

_DOC_FIELDS = ("id", "text", "title", "date", "source", "url")  # what chunking reads
_ALL_FIELDS = (*_DOC_FIELDS, "metadata", "pages")  # a loaded document, whole


def encoder_spec(embedder: Any) -> EncoderSpec:  # noqa: ANN401 - Embedder or RecordedModel
    """What a worker needs to build the same passage encoder (picklable): the model, its passage
    backend and prompts; never a path on the driver (the index's query encoder is not needed)."""
    own = getattr(embedder, "spec", None)
    if callable(own):
        return replace(own(), query_encoder=None)
    recorded = embedder.describe()
    return EncoderSpec(model=str(recorded["name"]), backend=recorded_backend(recorded),
                       query_prompt=recorded.get("query_prompt") or "",
                       passage_prompt=recorded.get("passage_prompt") or "")


def worker_embedder(spec: EncoderSpec) -> Embedder:
    """The encoder of ``spec``, built in a worker process (the one place workers make one)."""
    return spec.build()


@dataclass
class ChunkPart:
    """What chunking one batch of documents gives: spans, title prefixes, settings, term counts."""

    spans: list[list[tuple[int, int]]]
    prefixed: list[bool]
    settings: dict[str, Any]
    passages: TermCounts  # of the batch's passage texts, in order
    documents: TermCounts  # of the batch's document texts (the document-level BM25)


def chunk_batch(docs: list[Document], embedder: Embedder, options: BuildOptions) -> ChunkPart:
    return _chunked(docs, embedder, options)[0]


def _chunked(docs: list[Document], embedder: Embedder, options: BuildOptions,
             beside: Callable[[list[str]], Any] | None = None) -> tuple[ChunkPart, list[str], Any]:
    """The part of ``docs``, their passage texts, and what ``beside(texts)`` gives: run on this
    thread while the BM25 terms are counted on another where the process has a second core
    (the tokenizer and the lemma dictionary spend much of their time without the GIL)."""
    spans, texts, prefixed, settings = stages.chunk(docs, embedder, options, NoProgress())
    if beside is None:
        return ChunkPart(spans, prefixed, settings, *_counts(docs, texts)), texts, None
    if usable_cores() < 2:  # a Ray actor of one CPU: one thread
        counts = _counts(docs, texts)
        return ChunkPart(spans, prefixed, settings, *counts), texts, beside(texts)
    with ThreadPoolExecutor(1, thread_name_prefix="ragkit-count") as pool:
        counting = pool.submit(_counts, docs, texts)
        other = beside(texts)
        return ChunkPart(spans, prefixed, settings, *counting.result()), texts, other


def _counts(docs: list[Document], texts: list[str]) -> tuple[TermCounts, TermCounts]:
    analyzer = _analyzer()
    return count_terms(analyzer, texts), count_terms(analyzer, [stages._document_text(d) for d in docs])


@functools.lru_cache(maxsize=1)
def _analyzer() -> Analyzer:
    """One analyzer a process: its cache of analysed tokens serves every unit the process counts
    (one a unit started each unit cold: NG's texts counted in 20 units took 1.9-2.3 s of CPU
    with an analyzer a unit, 1.6-2.3 s with one)."""
    return Analyzer()


@dataclass(frozen=True)
class UnitWork:
    """What a worker does with each unit of a streamed build besides reading and cutting it:
    the build's options, which passages the driver's embedding cache holds (those are not
    embedded again), and whether to tell each document's language (mixed-language archives)."""

    options: BuildOptions
    cached: CachedKeys | None = None
    languages: bool = False


@dataclass
class UnitResult:
    """What one unit gives (:func:`run_unit`): every document its pieces hold, cut, counted,
    hashed for reprints and embedded, before the driver's duplicate-id pass."""

    loads: list[FileLoad | None]  # each piece's load (None: this machine does not see the file); [] for documents
    part: ChunkPart  # spans, title prefixes, chunker settings, BM25 term counts
    languages: list[str]  # each document's language ([] unless asked)
    keys: np.ndarray  # reprint keys of each document (ragkit.ingest.dedup.document_keys)
    embedded: np.ndarray  # positions of the passages embedded here (the others are in the cache)
    vectors: np.ndarray  # their vectors, unit length


def run_unit(unit: list[Piece] | list[Document], embedder: Embedder, work: UnitWork) -> UnitResult:
    """Read a unit (file pieces, or Document objects) and do its work."""
    if unit and isinstance(unit[0], Piece):
        loads = load_pieces(unit)  # type: ignore[arg-type]
        docs = [doc for load in loads if load is not None for _, doc in load.documents]
        return UnitResult(loads, *unit_work(docs, embedder, work))
    return UnitResult([], *unit_work(unit, embedder, work))  # type: ignore[arg-type]


def unit_work(docs: list[Document], embedder: Embedder, work: UnitWork
              ) -> tuple[ChunkPart, list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Cut, count, hash and embed ``docs``: (part, languages, reprint keys, embedded positions, vectors)."""
    from ragkit.build.languages import languages_of
    from ragkit.ingest.dedup import body, document_keys

    def rest(texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        held = work.cached.holds(texts) if work.cached is not None else np.zeros(len(texts), dtype=bool)
        embedded = np.flatnonzero(~held)
        vectors = (embedder.embed_passages([texts[i] for i in embedded]) if embedded.size
                   else np.zeros((0, int(embedder.dimension)), dtype=np.float32))
        return (languages_of(docs) if work.languages else [], document_keys([body(d) for d in docs]), embedded,
                np.ascontiguousarray(vectors, dtype=np.float32))

    part, _, others = _chunked(docs, embedder, work.options, rest)
    return (part, *others)


def narrowed(result: UnitResult, docs: list[Document], keep: list[bool]) -> UnitResult:
    """``result`` for the documents of ``docs`` (its documents) that ``keep`` marks: what the
    driver's duplicate-id pass let through. Term counts are taken again (a dropped document's
    terms must not enter the vocabulary's order); spans, keys and vectors are selected, not remade."""
    part = result.part
    kept_docs = [d for d, k in zip(docs, keep) if k]
    spans = [s for s, k in zip(part.spans, keep) if k]
    prefixed = [p for p, k in zip(part.prefixed, keep) if k]
    passage_kept = np.repeat(np.asarray(keep, dtype=bool), [len(s) for s in part.spans])
    new_position = np.cumsum(passage_kept) - 1
    taken = passage_kept[result.embedded]
    counts = _counts(kept_docs, stages.passage_texts(kept_docs, spans, prefixed))
    return UnitResult(result.loads, ChunkPart(spans, prefixed, part.settings, *counts),
                      [x for x, k in zip(result.languages, keep) if k] if result.languages else [],
                      result.keys[np.asarray(keep, dtype=bool)], new_position[result.embedded[taken]],
                      result.vectors[taken])


def embed_batch(texts: list[str], embedder: Embedder) -> np.ndarray:
    return embedder.embed_passages(texts)


# ------------------------------------------------------------------------------- transport

def pack_documents(docs: list[Document]) -> bytes:
    return json.dumps([[getattr(d, f) for f in _DOC_FIELDS] for d in docs], ensure_ascii=False).encode("utf-8")


def unpack_documents(data: bytes) -> list[Document]:
    return [Document(*row) for row in json.loads(bytes(data).decode("utf-8"))]


def load_pieces(pieces: list[Piece]) -> list[FileLoad | None]:
    """What each piece gives (:func:`ragkit.build.units.load_piece`); None for a file this machine
    does not see (the driver reads that one: a cluster without a shared filesystem still builds)."""
    return [load_piece(p) if os.path.lexists(p.path) else None for p in pieces]


def pack_loads(loads: list[FileLoad | None]) -> bytes:
    """File loads as JSON (every document field; paths keep their undecodable bytes)."""
    rows = [None if load is None else
            [[[location, *(getattr(doc, f) for f in _ALL_FIELDS)] for location, doc in load.documents],
             load.skips, load.skips_before] for load in loads]
    return _json_bytes(rows)


def unpack_loads(data: bytes) -> list[FileLoad | None]:
    out: list[FileLoad | None] = []
    for row in _from_json_bytes(data):
        if row is None:
            out.append(None)
            continue
        documents = [(r[0], Document(*r[1:-1], pages=tuple(r[-1]))) for r in row[0]]
        out.append(FileLoad(documents, [(loc, why) for loc, why in row[1]], [int(n) for n in row[2]]))
    return out


def _json_bytes(value: Any) -> bytes:  # noqa: ANN401
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _from_json_bytes(data: bytes) -> Any:  # noqa: ANN401
    return json.loads(bytes(data).decode("utf-8", "surrogatepass"))


def _json_array(value: Any) -> np.ndarray:  # noqa: ANN401
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def pack_part(part: ChunkPart) -> bytes:
    return _npz(_part_arrays(part))


def unpack_part(data: bytes) -> ChunkPart:
    return _part_of(_arrays(data))


def pack_result(result: UnitResult) -> bytes:
    """A unit's result as ``.npz`` bytes (the loads and languages as JSON inside it; no pickle)."""
    return _npz({**_part_arrays(result.part), "loads": np.frombuffer(pack_loads(result.loads), dtype=np.uint8),
                 "languages": _json_array(result.languages), "keys": result.keys,
                 "embedded": np.asarray(result.embedded, dtype=np.int64), "vectors": result.vectors})


def unpack_result(data: bytes) -> UnitResult:
    a = _arrays(data)
    return UnitResult(unpack_loads(a["loads"].tobytes()), _part_of(a), json.loads(a["languages"].tobytes()),
                      a["keys"], a["embedded"], a["vectors"])


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _part_arrays(part: ChunkPart) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "span_counts": np.asarray([len(s) for s in part.spans], dtype=np.int64),
        "spans": np.asarray([p for s in part.spans for p in s], dtype=np.int64).reshape(-1, 2),
        "prefixed": np.asarray(part.prefixed, dtype=bool),
        "settings": _json_array(part.settings),
    }
    for key, counts in (("p", part.passages), ("d", part.documents)):
        arrays.update({f"{key}_terms": _json_array(counts.terms), f"{key}_cols": counts.cols,
                       f"{key}_rows": counts.rows, f"{key}_tf": counts.tf,
                       f"{key}_n": np.asarray([counts.n_rows], dtype=np.int64)})
    return arrays


def _part_of(a: dict[str, np.ndarray]) -> ChunkPart:
    bounds = np.concatenate(([0], np.cumsum(a["span_counts"])))
    pairs = [tuple(map(int, p)) for p in a["spans"].tolist()]
    spans = [pairs[bounds[i]:bounds[i + 1]] for i in range(len(a["span_counts"]))]

    def counts(key: str) -> TermCounts:
        terms = [sys.intern(t) for t in json.loads(a[f"{key}_terms"].tobytes())]  # one string a term, not a part
        return TermCounts(terms, a[f"{key}_cols"], a[f"{key}_rows"],
                          a[f"{key}_tf"], int(a[f"{key}_n"][0]))

    return ChunkPart(spans, [bool(x) for x in a["prefixed"]], json.loads(a["settings"].tobytes()),
                     counts("p"), counts("d"))


# ---------------------------------------------------------------------------------- merges

def chunked_kept(docs: list[Document], parts: list[ChunkPart], kept: Kept | None) -> Kept:
    """``kept`` (or nothing) plus the documents chunked by workers, as stored documents.

    :func:`ragkit.build.stages.chunk` given this takes every span from it, so it assembles the
    passages exactly as over the whole corpus and never loads the tokenizer.
    """
    from ragkit.store.sqlite import StoredDocument

    stored = dict(kept.documents) if kept is not None else {}
    chunked = [d for d in docs if d.id not in stored]
    flat = [(s, p) for part in parts for s, p in zip(part.spans, part.prefixed)]
    for doc, (spans, prefixed) in zip(chunked, flat):
        stored[doc.id] = StoredDocument(-1, prefixed, [(-1, s, e) for s, e in spans])
    settings = kept.chunker if kept is not None and kept.chunker else (parts[0].settings if parts else {})
    return Kept(stored, None, None, settings, None)  # type: ignore[arg-type]  # only documents and chunker are read


def merged_lexical(docs: list[Document], texts: list[str], ids: np.ndarray, doc_rows: list[int], kept: Kept | None,
                   reused: np.ndarray | None, parts: list[ChunkPart]) -> tuple[LexicalIndex, LexicalIndex]:
    """The BM25 indexes from the workers' term counts, equal to :func:`ragkit.build.stages.lexical`'s."""
    doc_ids = np.asarray(doc_rows, dtype=np.int64)
    if kept is None:
        return (LexicalIndex.from_counts(ids, [p.passages for p in parts]),
                LexicalIndex.from_counts(doc_ids, [p.documents for p in parts]))
    same_analysis = kept.lexical.analyzer.config() == kept.doc_lexical.analyzer.config() == Analyzer().config()
    if reused is None or not (kept.lexical.has_counts and kept.doc_lexical.has_counts and same_analysis):
        return stages.lexical(docs, texts, ids, doc_rows, kept, reused)
    reuse_docs = [kept.documents[d.id].row if d.id in kept.documents else -1 for d in docs]
    return (kept.lexical.updated(ids, reused, counts=[p.passages for p in parts]),
            kept.doc_lexical.updated(doc_ids, np.asarray(reuse_docs, dtype=np.int64),
                                     counts=[p.documents for p in parts]))
