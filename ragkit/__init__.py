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

from ._version import __version__
from .documents import Document, Passage, SearchResult, search_response
from .errors import (
    EmptyCorpusError,
    IndexFormatError,
    IndexNotFoundError,
    InvalidArgumentError,
    ModelLoadError,
    ModelMismatchError,
    RagkitError,
)

if TYPE_CHECKING:
    from .beir import load_beir
    from .builder import BuildOptions, BuildResult, build_index, update_index
    from .embedding import Embedder
    from .evaluation import EvalResult, evaluate
    from .filters import Filters
    from .fusion import FusionConfig
    from .index import Index
    from .loaders import LoadReport, load_documents

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
    "IndexNotFoundError",
    "InvalidArgumentError",
    "LoadReport",
    "ModelLoadError",
    "ModelMismatchError",
    "Passage",
    "RagkitError",
    "SearchResult",
    "__version__",
    "build_index",
    "evaluate",
    "update_index",
    "load_beir",
    "load_documents",
    "search_response",
]

_LAZY = {
    "BuildOptions": "builder",
    "BuildResult": "builder",
    "build_index": "builder",
    "update_index": "builder",
    "Embedder": "embedding",
    "EvalResult": "evaluation",
    "evaluate": "evaluation",
    "Index": "index",
    "Filters": "filters",
    "FusionConfig": "fusion",
    "LoadReport": "loaders",
    "load_documents": "loaders",
    "load_beir": "beir",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragkit' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
