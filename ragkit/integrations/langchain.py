"""A ragkit index as a LangChain retriever (``pip install 'ragkit[langchain]'``).

    >>> from ragkit.integrations.langchain import RagkitRetriever
    >>> retriever = RagkitRetriever(index="index/", k=4)
    >>> docs = retriever.invoke("технопарки Москвы", filters={"since": "2025-01-01"})
    >>> docs[0].metadata["title"], docs[0].metadata["score"]

Each result is a ``Document`` whose ``page_content`` is the passage text and whose metadata
holds ``doc_id``, ``title``, ``date``, ``source``, ``url``, ``start``, ``end`` (the passage's
span in its document), ``rank``, ``score``, ``scores`` and ``mode``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ragkit.integrations._common import IndexHandle, SearchOptions, build, metadata, missing_extra, passage_id, ragkit_document

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import Field, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise missing_extra("langchain", "LangChain", exc) from exc

__all__ = ["RagkitRetriever"]


class RagkitRetriever(BaseRetriever):
    """Retrieve passages from a ragkit index (hybrid BM25 + dense search by default).

    ``index`` is the index folder (opened on first use, then kept) or an open ``ragkit.Index``.
    ``k``, ``mode``, ``filters``, ``per_doc`` and ``fusion`` are the options of
    ``ragkit.Index.search``; ``filters`` may be a ``ragkit.Filters`` or a mapping of
    ``since``/``until``/``source``, ``fusion`` a ``ragkit.FusionConfig`` or a mapping of its
    fields. Each may also be passed to ``invoke``/``ainvoke`` for one call.
    """

    index: Any = Field(description="index folder or an open ragkit.Index")
    k: int = 4
    mode: str = "hybrid"
    filters: Any = None
    per_doc: int | None = 3
    fusion: Any = None

    _handle: IndexHandle = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._handle = IndexHandle(self.index)
        self._options()  # bad options fail here, not at the first query

    def _options(self, **changes: Any) -> SearchOptions:
        own = SearchOptions.of(k=self.k, mode=self.mode, filters=self.filters, per_doc=self.per_doc, fusion=self.fusion)
        return own.override(**changes)

    def _documents(self, results: Iterable[Any]) -> list[Document]:
        return [Document(page_content=r.text, metadata=metadata(r), id=passage_id(r)) for r in results]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **options: Any
    ) -> list[Document]:
        """``options``: any of k, mode, filters, per_doc, fusion, for this call only."""
        return self._documents(self._handle.search(query, self._options(**options)))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **options: Any
    ) -> list[Document]:
        """As :meth:`_get_relevant_documents`; the search runs in a worker thread."""
        return self._documents(await self._handle.asearch(query, self._options(**options)))

    @classmethod
    def from_documents(cls, documents: Iterable[Document], index_dir: str | os.PathLike[str], *,
                       model: str | None = None, **options: Any) -> RagkitRetriever:
        """Build a ragkit index at ``index_dir`` from LangChain documents and retrieve from it.

        Each document's id (``Document.id``, else metadata ``doc_id`` or ``id``), ``title``,
        ``date`` (ISO), ``source`` and ``url`` metadata are kept; other metadata is dropped.
        ``model`` None picks the model by the corpus language. ``options`` go to the retriever.
        """
        docs = (ragkit_document(d.page_content, d.metadata, d.id, i) for i, d in enumerate(documents))
        return cls(index=build(docs, index_dir, model), **options)
