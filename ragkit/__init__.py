"""ragkit: index article collections and search them.

    >>> import ragkit
    >>> ragkit.build_index(["seeds/"], "index/")
    >>> idx = ragkit.Index.open("index/")
    >>> for r in idx.search("технопарки Москвы", k=3):
    ...     print(r.rank, round(r.score, 3), r.title)

Importing ragkit is cheap: numpy, FAISS, sentence-transformers and torch load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragkit._version import __version__
from ragkit.documents import Document, Passage, SearchResult, search_response
from ragkit.errors import (
    EmptyCorpusError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    InvalidArgumentError,
    ModelLoadError,
    ModelMismatchError,
    OnnxEncoderError,
    OnnxExportUnsupported,
    RagkitError,
    StorageError,
)

if TYPE_CHECKING:
    from ragkit.eval.beir import load_beir
    from ragkit.build.options import BuildOptions, BuildResult
    from ragkit.build.executor import LocalExecutor
    from ragkit.build.pipeline import build_index, update_index
    from ragkit.build.ray_executor import RayExecutor
    from ragkit.encoders.embedder import Embedder
    from ragkit.eval.metrics import EvalResult, evaluate
    from ragkit.store.filters import Filters
    from ragkit.search.fusion import FusionConfig
    from ragkit.search.index import Index
    from ragkit.ingest.loaders import LoadReport, load_documents

__all__ = [
    "BuildOptions",
    "BuildResult",
    "Document",
    "Embedder",
    "EmptyCorpusError",
    "EvalResult",
    "Filters",
    "FusionConfig",
    "Index",
    "IndexFormatError",
    "IndexLockedError",
    "IndexNotFoundError",
    "InvalidArgumentError",
    "LoadReport",
    "LocalExecutor",
    "ModelLoadError",
    "ModelMismatchError",
    "OnnxEncoderError",
    "OnnxExportUnsupported",
    "Passage",
    "RagkitError",
    "RayExecutor",
    "SearchResult",
    "StorageError",
    "__version__",
    "build_index",
    "evaluate",
    "update_index",
    "load_beir",
    "load_documents",
    "search_response",
]

_LAZY = {
    "BuildOptions": "build.options",
    "BuildResult": "build.options",
    "build_index": "build.pipeline",
    "update_index": "build.pipeline",
    "LocalExecutor": "build.executor",
    "RayExecutor": "build.ray_executor",
    "Embedder": "encoders.embedder",
    "EvalResult": "eval.metrics",
    "evaluate": "eval.metrics",
    "Index": "search.index",
    "Filters": "store.filters",
    "FusionConfig": "search.fusion",
    "LoadReport": "ingest.loaders",
    "load_documents": "ingest.loaders",
    "load_beir": "eval.beir",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragkit' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"ragkit.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
