"""The last step every writer shares: a generation's file names, its manifest, and the commit.

A build (:mod:`ragkit.build.stream`) and an update (:func:`ragkit.build.pipeline.update_index`)
write their files differently; once they are written, both name them in one manifest the same
way and commit it here (:func:`ragkit.format.layout.commit`: the manifest replaced atomically,
stale files removed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.build import stages
from ragkit.build.options import BuildOptions
from ragkit.build.reuse import Kept
from ragkit.format.layout import commit, fsync_file
from ragkit.format.manifest import new_manifest


def names_of(generation: int) -> dict[str, str]:
    """The file names of a generation's vector index, store and two BM25 folders."""
    return {
        "vectors": f"vectors-{generation:06d}.faiss",
        "store": f"store-{generation:06d}.sqlite",
        "lexical": f"lexical-{generation:06d}",
        "doclexical": f"doclexical-{generation:06d}",
    }


@dataclass
class Written:
    """What a writer wrote of a generation, as the manifest records it."""

    chunker: dict[str, Any]
    vectors: dict[str, Any]  # the vector stage's entry (type, factory, search, tuning)
    lexical: dict[str, Any]  # the passage BM25 index's config
    counts: dict[str, int]  # documents, passages, passage_ids
    duplicates: dict[str, Any]
    language_vectors: list[dict[str, Any]]  # the second indexes' entries
    language_files: list[str]  # and the names they wrote


def commit_generation(root: Path, generation: int, names: dict[str, str], embedder: Any,  # noqa: ANN401
                      options: BuildOptions, written: Written, sources: dict[str, Any],
                      kept: Kept | None = None) -> None:
    """fsync the generation's files, export (or keep) the query encoder, write the manifest and commit.

    ``kept``: an update's; the current query encoder then stays, with its checksums.
    """
    from ragkit.format.checksums import record

    for key in ("vectors", "store"):
        fsync_file(root / names[key])
    for i, name in enumerate(written.language_files):
        names[f"language_vectors.{i}"] = name
        if name.startswith("vectors-"):
            fsync_file(root / name)
    recorded: dict[str, Any] = {}
    if kept is not None:  # same model: the current encoder stays, with its checksums
        query_encoder = kept.query_encoder
        recorded = kept.encoder_files
    else:
        query_encoder = stages.query_encoder(root, embedder) if options.query_encoder else None
    if query_encoder is not None:
        names["query_encoder"] = query_encoder["dir"]
    manifest: dict[str, Any] = new_manifest(
        generation=generation,
        model=embedder.describe(),
        chunker=written.chunker,
        vectors={"file": names["vectors"], "dimension": embedder.dimension, **written.vectors},
        store={"file": names["store"]},
        lexical={"dir": names["lexical"], "documents_dir": names["doclexical"], **written.lexical},
        counts=written.counts,
        query_encoder=query_encoder,
        duplicates=written.duplicates,
        language_vectors={"enabled": options.language_vectors, "indexes": written.language_vectors},
        sources=sources,
        files={**record(root, [n for n in names.values() if not (recorded and n == names.get("query_encoder"))]),
               **recorded},
    )
    commit(root, manifest, keep=set(names.values()))
