"""What a build is asked to do (:class:`BuildOptions`) and what it did (:class:`BuildResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.errors import InvalidArgumentError
from ragkit.ingest.chunking import MIN_MAX_TOKENS
from ragkit.ingest.loaders import LoadReport


@dataclass(frozen=True)
class BuildOptions:
    """How passages are cut and indexed. ``max_tokens=None`` fills the model's window."""

    index_type: str = "auto"  # auto | flat | hnsw | hnsw-sq8 | ivf-sq8 | ivfpq | a FAISS factory string
    recall: float = 0.95  # recall@10 target the search parameters of an approximate type are tuned to
    max_tokens: int | None = None
    overlap_tokens: int = 0
    title_prefix: bool = True
    query_encoder: bool = True  # export an ONNX query encoder for torch-free searches
    language_vectors: bool = True  # a second model for a minority language the main one does not read

    def __post_init__(self) -> None:
        if not self.index_type or not self.index_type.strip():
            raise InvalidArgumentError("index_type must not be empty", param="index_type")
        if not 0.0 < self.recall <= 1.0:
            raise InvalidArgumentError(f"recall must be in (0, 1], got {self.recall!r}", param="recall")
        if self.max_tokens is not None and self.max_tokens < MIN_MAX_TOKENS:
            raise InvalidArgumentError(f"max_tokens must be at least {MIN_MAX_TOKENS}", param="max_tokens")
        if self.overlap_tokens < 0:
            raise InvalidArgumentError("overlap_tokens must be >= 0", param="overlap_tokens")


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


def options_of(manifest: dict[str, Any]) -> BuildOptions:
    """The build options an index was made with, to rebuild or update it the same way."""
    chunker = manifest.get("chunker", {})
    vectors = manifest["vectors"]
    return BuildOptions(index_type=vectors.get("index_type", vectors["factory"]),
                        recall=float((vectors.get("tuning") or {}).get("target", 0.95)),
                        max_tokens=chunker.get("max_tokens"),
                        overlap_tokens=int(chunker.get("overlap_tokens", 0)),
                        title_prefix=bool(chunker.get("title_prefix", True)),
                        language_vectors=bool((manifest.get("language_vectors") or {}).get("enabled", True)))
