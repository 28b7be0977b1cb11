"""A ragkit index as a LlamaIndex retriever (``pip install 'ragkit[llama-index]'``).

    >>> from ragkit.integrations.llama_index import RagkitRetriever
    >>> retriever = RagkitRetriever(index="index/", similarity_top_k=4)
    >>> for hit in retriever.retrieve("технопарки Москвы"):
    ...     print(round(hit.score, 3), hit.node.metadata["title"], hit.node.start_char_idx)

Each result is a ``NodeWithScore`` holding a ``TextNode``: the passage text, its id
(``doc_id:start-end``), its span in the document (``start_char_idx``/``end_char_idx``), the
document as its source (``node.ref_doc_id``) and the metadata of the LangChain adapter
(``doc_id``, ``title``, ``date``, ``source``, ``url``, ``start``, ``end``, ``rank``, ``score``,
``scores``, ``mode``). Only title, date, source and url are shown to the LLM and embedders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ragkit import InvalidArgumentError

from ragkit.integrations._common import (FiltersLike, FusionLike, IndexHandle, SearchOptions, build, metadata, missing_extra, passage_id,
                      ragkit_document)

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import Document, NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.types import FilterCondition, MetadataFilter, MetadataFilters
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise missing_extra("llama-index", "LlamaIndex", exc) from exc

__all__ = ["RagkitRetriever"]

_HIDDEN_KEYS = ["doc_id", "start", "end", "rank", "score", "scores", "mode"]


class RagkitRetriever(BaseRetriever):
    """Retrieve passages from a ragkit index (hybrid BM25 + dense search by default).

    ``index`` is the index folder (opened on first use, then kept) or an open ``ragkit.Index``;
    ``similarity_top_k`` is the number of passages, as in LlamaIndex's own retrievers.
    ``mode``, ``filters``, ``per_doc`` and ``fusion`` are the options of ``ragkit.Index.search``:
    ``filters`` a ``ragkit.Filters``, a mapping of ``since``/``until``/``source`` or LlamaIndex
    ``MetadataFilters`` that ragkit can apply (see :func:`ragkit_filters`), ``fusion`` a
    ``ragkit.FusionConfig`` or a mapping of its fields. They are attributes one may change.
    """

    def __init__(
        self,
        index: Any,
        similarity_top_k: int = 4,
        *,
        mode: str = "hybrid",
        filters: FiltersLike | MetadataFilters = None,
        per_doc: int | None = 3,
        fusion: FusionLike = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        self.similarity_top_k = similarity_top_k
        self.mode = mode
        self.filters = filters
        self.per_doc = per_doc
        self.fusion = fusion
        self._handle = IndexHandle(index)
        self._options()  # bad options fail here, not at the first query
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _options(self) -> SearchOptions:
        return SearchOptions.of(k=self.similarity_top_k, mode=self.mode, filters=ragkit_filters(self.filters),
                                per_doc=self.per_doc, fusion=self.fusion)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return _nodes(self._handle.search(query_bundle.query_str, self._options()))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """As :meth:`_retrieve`; the search runs in a worker thread, the event loop runs on."""
        return _nodes(await self._handle.asearch(query_bundle.query_str, self._options()))

    @classmethod
    def from_documents(cls, documents: Iterable[Document], index_dir: str | os.PathLike[str], *,
                       model: str | None = None, **options: Any) -> RagkitRetriever:
        """Build a ragkit index at ``index_dir`` from LlamaIndex documents and retrieve from it.

        Each document's ``id_``, its ``title``, ``date`` (ISO), ``source`` and ``url`` metadata
        are kept; other metadata is dropped. ``model`` None picks the model by the corpus
        language. ``options`` go to the retriever.
        """
        docs = (ragkit_document(d.text, d.metadata, d.id_, i) for i, d in enumerate(documents))
        return cls(build(docs, index_dir, model), **options)


# The LlamaIndex metadata filters ragkit applies before ranking, and the ragkit filters they set.
_APPLIED = {("date", ">="): ("since",), ("date", "<="): ("until",), ("date", "=="): ("since", "until"),
            ("source", "=="): ("source",)}


def ragkit_filters(filters: FiltersLike | MetadataFilters) -> FiltersLike:
    """LlamaIndex ``MetadataFilters`` as ragkit filters: an AND of ``date >= D``, ``date <= D``,
    ``date == D`` (ISO dates) and ``source == GLOB``; anything else is an InvalidArgumentError.
    Filters of other kinds are returned as they are."""
    if not isinstance(filters, MetadataFilters):
        return filters
    if filters.condition not in (None, FilterCondition.AND):
        raise InvalidArgumentError(f"ragkit applies metadata filters joined by 'and', not {filters.condition.value!r}")
    out: dict[str, str] = {}
    for f in filters.filters:
        targets = _APPLIED.get((f.key, f.operator.value)) if isinstance(f, MetadataFilter) else None
        if targets is None:
            what = f"{f.key} {f.operator.value}" if isinstance(f, MetadataFilter) else "nested MetadataFilters"
            raise InvalidArgumentError(f"ragkit cannot apply the metadata filter {what!r} "
                                       "(it applies date >=, <=, == and source == before ranking)")
        out.update(dict.fromkeys(targets, str(f.value)))
    return out


def _nodes(results: Iterable[Any]) -> list[NodeWithScore]:
    out = []
    for r in results:
        node = TextNode(
            text=r.text, id_=passage_id(r), metadata=metadata(r), start_char_idx=r.start, end_char_idx=r.end,
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=r.doc_id)},
            excluded_embed_metadata_keys=list(_HIDDEN_KEYS), excluded_llm_metadata_keys=list(_HIDDEN_KEYS),
        )
        out.append(NodeWithScore(node=node, score=r.score))
    return out
