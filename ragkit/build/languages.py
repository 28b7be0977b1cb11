"""A second dense model for a mixed archive's minority language: ``language_vectors`` in the manifest.

A corpus gets one dense model, chosen by the language most of its documents are in
(:func:`ragkit.encoders.registry.default_model`). Documents in a language that model does not
read (English in a Russian archive under navec-ru, Russian in an English one under
all-MiniLM-L6-v2) would get no dense signal: queries in their language get the foreign dense
weight, 0. Where such a language holds at least :data:`MIN_DOCUMENTS` documents and
:data:`MIN_SHARE` of the corpus, the passages of its documents are embedded a second time by
that language's model into a second vector index keyed by the same passage ids, and queries in
that language take their dense side from it (:mod:`ragkit.search.routes`).

The passages are the same (cut by the main model's tokenizer), so the store, BM25 and the main
vectors do not change. The second index is small beside the main one and is written whole in
each generation from the embedding cache (which keys vectors by model): an update embeds only
its new passages there too, and refills an approximate second index that changed little with
its training and tuning kept. See benchmarks/mixed_language.py for what it gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.build import stages
from ragkit.build.options import BuildOptions
from ragkit.documents import Document
from ragkit.encoders.embedder import Embedder
from ragkit.encoders.registry import DEFAULT_BY_LANGUAGE, DEFAULT_MODEL, model_profile, same_model
from ragkit.lexical.analysis import document_language
from ragkit.progress import Progress

MIN_DOCUMENTS = 10  # fewer documents in a language do not pay for loading a second model
MIN_SHARE = 0.01  # of the corpus's documents

Encode = Callable[[Sequence[str], Any, Callable[[int], None] | None], np.ndarray]


def languages_of(docs: Sequence[Document]) -> list[str]:
    """Each document's language, from its title and first 2,000 characters."""
    return [document_language(f"{d.title} {d.text[:2000]}") for d in docs]


def model_for(language: str) -> str:
    """The model ragkit embeds ``language`` with when it is a corpus's main language."""
    return DEFAULT_BY_LANGUAGE.get(language, DEFAULT_MODEL)


def plan(languages: Sequence[str], main_model: str, recorded: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Language -> the model (a name, or a recorded model entry) of each second vector index to write.

    ``recorded``: the current generation's entries; a language keeps its recorded model.
    """
    reads, _ = model_profile(main_model)
    if reads is None:  # the main model reads every language
        return {}
    counts: dict[str, int] = {}
    for language in languages:
        counts[language] = counts.get(language, 0) + 1
    kept = {e["language"]: e for e in recorded}
    out: dict[str, Any] = {}
    for language, n in sorted(counts.items()):
        if language == "und" or language in reads or n < max(MIN_DOCUMENTS, MIN_SHARE * len(languages)):
            continue
        model = model_for(language)
        theirs, _ = model_profile(model)
        if same_model(main_model, model) or (theirs is not None and language not in theirs):
            continue
        out[language] = kept.get(language, model)  # a recorded entry keeps its model
    return out


def write(root: Path, generation: int, languages: Sequence[str], counts: Sequence[int] | np.ndarray,
          texts: Sequence[str], ids: np.ndarray, main_model: str, options: BuildOptions, progress: Progress,
          encode: Encode, write_vectors: Callable[..., dict[str, Any]],
          recorded: Sequence[dict[str, Any]] = (),
          reused: np.ndarray | None = None) -> tuple[list[dict[str, Any]], list[str], int]:
    """Write the generation's second vector indexes; returns (manifest entries, names written, passages embedded).

    ``languages``: each document's (:func:`languages_of`); ``counts``: its number of passages;
    ``texts``: the passages' texts (any sequence: a streamed build reads them from its store).
    ``encode(texts, embedder, progress)`` embeds passages (an executor's workers may);
    ``write_vectors`` is the executor's vector stage. In an update (``recorded``: the current
    entries; ``reused``: each passage's current id, -1 for a new one) an approximate second
    index that changed little is refilled with its training and tuning kept, as the main one
    is (:mod:`ragkit.build.refill`).
    """
    from ragkit.build.refill import refill_or_write
    from ragkit.build.reuse import RecordedModel

    chosen = plan(languages, main_model, recorded)
    if not chosen:
        return [], [], 0
    ends = np.cumsum(np.asarray(counts, dtype=np.int64))
    starts = ends - np.asarray(counts, dtype=np.int64)
    entries: list[dict[str, Any]] = []
    names: list[str] = []
    embedded = 0
    for language, model in chosen.items():
        encoder = model.get("query_encoder") if isinstance(model, dict) else None
        if not (isinstance(encoder, dict) and (root / str(encoder.get("dir"))).is_dir()):
            encoder = None
        if isinstance(model, dict):  # an update: the recorded model, loaded only to embed new passages
            embedder: Any = RecordedModel(model["model"], query_encoder=root / encoder["dir"] if encoder else None)
        else:
            embedder = Embedder(model)
        rows = np.concatenate([np.arange(starts[i], ends[i]) for i, lang in enumerate(languages) if lang == language])
        chosen_texts = stages.pick(texts, rows)
        vectors, n = stages.embed(root, chosen_texts, embedder, progress,
                                  lambda batch, progress=None, e=embedder: encode(batch, e, progress),
                                  label=f"Embedding {language} passages")
        embedded += n
        name = f"vectors-{language}-{generation:06d}.faiss"
        current = _current(root, model) if isinstance(model, dict) and reused is not None else None
        changed = 0
        if current is not None and reused is not None:  # its passages added plus its passages removed
            kept = int(np.count_nonzero(reused[rows] >= 0))
            changed = len(rows) - kept + max(0, current.passages - kept)
        entry = refill_or_write(root / name, ids[rows], vectors, current, changed, options, progress,
                                lambda opts: write_vectors(root / name, ids[rows], vectors, opts, progress,
                                                           chosen_texts, embedder))
        entry.pop("index_type", None)
        if encoder is None and options.query_encoder:
            encoder = stages.query_encoder(root, embedder.embedder if isinstance(embedder, RecordedModel) else embedder)
        entries.append({"language": language, "model": embedder.describe(), "file": name,
                        "documents": sum(1 for lang in languages if lang == language), "passages": int(len(rows)),
                        **entry, "query_encoder": encoder})
        names.append(name)
        if encoder is not None:
            names.append(encoder["dir"])
    return entries, names, embedded


def _current(root: Path, entry: dict[str, Any]) -> Any:  # noqa: ANN401 - a refill.Current
    """The current generation's second index of a recorded entry (the update verified its file)."""
    from ragkit.build.refill import Current
    from ragkit.vectors.faiss_index import VectorIndex

    index = VectorIndex.load(root / entry["file"], entry["factory"], int(entry["model"]["dimension"]),
                             params=entry.get("search"))
    return Current(index, {**entry, "index_type": entry["factory"]}, int(entry["passages"]))
