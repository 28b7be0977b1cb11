"""ragkit's LlamaIndex retriever. LlamaIndex ships no conformance suite for retrievers, so this is
the contract written out: nodes, scores and offsets; the same ranking as Index.search; filters;
QueryFusionRetriever next to LlamaIndex's own BM25 retriever; async retrieval; all on a real index."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

import ragkit

from .news_corpus import BY_ID, DOCS, OPTION_GRID, ranking

pytest.importorskip("llama_index.core", reason="needs the llama-index extra: pip install 'ragkit[llama-index]'")

from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.retrievers import BaseRetriever, QueryFusionRetriever  # noqa: E402
from llama_index.core.schema import Document, NodeWithScore, TextNode  # noqa: E402

from ragkit.integrations.llama_index import RagkitRetriever  # noqa: E402


def _ranking(hits: list[NodeWithScore]) -> list[tuple[str, int, int, float]]:
    return [(h.node.metadata["doc_id"], h.node.start_char_idx, h.node.end_char_idx, round(h.score, 6)) for h in hits]


def _bm25():
    bm25 = pytest.importorskip("llama_index.retrievers.bm25", reason="needs llama-index-retrievers-bm25 "
                               "(pip install 'ragkit[test-integrations]')")
    import Stemmer

    nodes = [TextNode(text=d.text, id_=f"bm25-{d.id}", metadata={"doc_id": d.id}) for d in DOCS]
    return bm25.BM25Retriever(nodes=nodes, stemmer=Stemmer.Stemmer("russian"), language="ru", similarity_top_k=3)


def test_nodes_scores_and_offsets(news_index_path):
    retriever = RagkitRetriever(news_index_path, similarity_top_k=5, per_doc=None)
    assert isinstance(retriever, BaseRetriever)
    hits = retriever.retrieve("электробусы на маршрутах")
    assert len(hits) == 5 and hits[0].node.metadata["doc_id"] == "buses"
    for rank, hit in enumerate(hits, 1):
        node = hit.node
        assert isinstance(hit, NodeWithScore) and isinstance(node, TextNode)
        source = BY_ID[node.metadata["doc_id"]]
        assert source.text[node.start_char_idx:node.end_char_idx] == node.text
        assert (node.metadata["start"], node.metadata["end"]) == (node.start_char_idx, node.end_char_idx)
        assert node.id_ == f"{source.id}:{node.start_char_idx}-{node.end_char_idx}" and node.ref_doc_id == source.id
        assert hit.score == node.metadata["score"] and node.metadata["rank"] == rank
        assert (node.metadata["title"], node.metadata["date"], node.metadata["url"]) == (source.title, source.date, source.url)
        shown = node.get_content(metadata_mode="llm")
        assert source.title in shown and "scores" not in shown  # ranking details stay out of prompts
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.node.id_ for h in hits}) == 5


@pytest.mark.parametrize(("query", "options"), OPTION_GRID)
def test_same_ranking_as_index_search(news_index, query, options):
    options = {"k": 4, **options}
    expected = ranking(news_index.search(query, **options))
    assert expected
    top_k = options.pop("k")
    assert _ranking(RagkitRetriever(news_index, similarity_top_k=top_k, **options).retrieve(query)) == expected


def test_filters(news_index_path):
    dated = RagkitRetriever(news_index_path, 10, filters={"since": "2024-01-01", "until": "2024-12-31"}, per_doc=None)
    hits = dated.retrieve("новости")
    assert {h.node.metadata["doc_id"] for h in hits} == {"metro", "football", "space", "ruble"}
    sport = RagkitRetriever(news_index_path, 10, filters=ragkit.Filters(source="sport/*"), mode="dense")
    assert {h.node.metadata["doc_id"] for h in sport.retrieve("город")} == {"football", "hockey"}
    sport.filters = {"source": "/nowhere/*"}  # the options are attributes, read at each call
    assert sport.retrieve("город") == []
    with pytest.raises(ragkit.InvalidArgumentError, match="unknown filter"):
        RagkitRetriever(news_index_path, filters={"author": "x"})
    with pytest.raises(ragkit.InvalidArgumentError, match="k must be a positive integer"):
        RagkitRetriever(news_index_path, similarity_top_k=0)


@pytest.mark.parametrize("use_async", [False, True])
def test_query_fusion_next_to_llama_index_bm25(news_index_path, use_async):
    ours = RagkitRetriever(news_index_path, similarity_top_k=3)
    fusion = QueryFusionRetriever([ours, _bm25()], llm=MockLLM(), num_queries=1, mode="reciprocal_rerank",
                                  similarity_top_k=6, use_async=use_async)
    hits = fusion.retrieve("курс рубля к доллару")
    ids = [h.node.id_ for h in hits]
    ours_ids = [h.node.id_ for h in ours.retrieve("курс рубля к доллару")]
    assert set(ours_ids) <= set(ids), "every ragkit passage is in the fused list"
    assert "bm25-ruble" in ids, "and so is LlamaIndex BM25's best document"
    assert {h.node.metadata["doc_id"] for h in hits[:2]} == {"ruble"}  # both retrievers put it first
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


async def test_aretrieve_runs_in_a_thread_and_the_loop_runs_meanwhile(slow_index, ticks_while, news_index):
    retriever = RagkitRetriever(slow_index, similarity_top_k=3, mode="lexical")
    hits, ticks = await ticks_while(retriever.aretrieve("Большой театр"))
    assert ticks >= 10, f"the event loop ticked {ticks} times in a 0.3 s search: it was blocked"
    assert slow_index.search_threads and slow_index.search_threads[-1] != threading.get_ident()
    assert _ranking(hits) == ranking(news_index.search("Большой театр", k=3, mode="lexical"))


async def test_async_query_fusion(news_index_path):
    fusion = QueryFusionRetriever([RagkitRetriever(news_index_path, 3), _bm25()], llm=MockLLM(), num_queries=1,
                                  similarity_top_k=4)
    hits = await fusion.aretrieve("ракета и спутники")
    assert hits and {h.node.metadata["doc_id"] for h in hits[:2]} == {"space"}


def test_from_documents_keeps_known_metadata(tmp_path):
    docs = [
        Document(text=BY_ID["theatre"].text, id_="t1", metadata={"title": "Театр", "date": "2023-09-30", "genre": "x"}),
        Document(text=BY_ID["hockey"].text, id_="h1", metadata={"title": "Хоккей", "source": "sport/h1.txt"}),
    ]
    retriever = RagkitRetriever.from_documents(docs, tmp_path / "idx", similarity_top_k=2, per_doc=1)
    hits = retriever.retrieve("премьера оперы")
    assert [h.node.ref_doc_id for h in hits] == ["t1", "h1"]
    assert hits[0].node.metadata["title"] == "Театр" and "genre" not in hits[0].node.metadata
    only_sport = RagkitRetriever(ragkit.Index.open(tmp_path / "idx"), filters={"source": "sport/*"})
    assert [h.node.ref_doc_id for h in only_sport.retrieve("премьера оперы")] == ["h1"]


def test_runs_offline_without_nltk_or_tiktoken(news_index_path):
    """The retriever, LlamaIndex's BM25 and QueryFusionRetriever run with the network cut off, and
    none of them loads NLTK or tiktoken (whose data LlamaIndex would otherwise fetch)."""
    script = f"""
import json, socket, sys
def refuse(*a, **k):
    raise OSError("network is cut off in this test")
socket.create_connection = refuse
socket.socket.connect = lambda self, address: refuse() if self.family != socket.AF_UNIX else None
from llama_index.core.llms import MockLLM
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.core.schema import TextNode
from llama_index.retrievers.bm25 import BM25Retriever
from ragkit.integrations.llama_index import RagkitRetriever
bm25 = BM25Retriever(nodes=[TextNode(text="Курс рубля снизился", id_="a"), TextNode(text="Снег", id_="b")],
                     language="ru", similarity_top_k=1)
fusion = QueryFusionRetriever([RagkitRetriever({str(news_index_path)!r}, 2), bm25], llm=MockLLM(), num_queries=1,
                              similarity_top_k=3)
hits = fusion.retrieve("курс рубля")
print(json.dumps({{"ids": [h.node.id_ for h in hits], "loaded": [m for m in ("nltk", "tiktoken") if m in sys.modules]}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert "a" in out["ids"] and any(i.startswith("ruble:") for i in out["ids"])


def test_llama_index_metadata_filters_apply_before_ranking(news_index, news_index_path):
    from llama_index.core.vector_stores.types import FilterCondition, MetadataFilter, MetadataFilters

    filters = MetadataFilters(filters=[MetadataFilter(key="date", value="2024-01-01", operator=">="),
                                       MetadataFilter(key="date", value="2024-12-31", operator="<="),
                                       MetadataFilter(key="source", value="moscow/*")])
    hits = RagkitRetriever(news_index_path, 5, filters=filters).retrieve("новые станции метро")
    expected = news_index.search("новые станции метро", k=5,
                                 filters=ragkit.Filters(since="2024-01-01", until="2024-12-31", source="moscow/*"))
    assert _ranking(hits) == ranking(expected) and {h.node.metadata["doc_id"] for h in hits} == {"metro"}
    one_day = MetadataFilters(filters=[MetadataFilter(key="date", value="2023-09-30")])
    assert {h.node.ref_doc_id for h in RagkitRetriever(news_index_path, 5, filters=one_day).retrieve("театр")} == {"theatre"}
    with pytest.raises(ragkit.InvalidArgumentError, match="'title =='"):
        RagkitRetriever(news_index_path, filters=MetadataFilters(filters=[MetadataFilter(key="title", value="x")]))
    with pytest.raises(ragkit.InvalidArgumentError, match="joined by 'and'"):
        RagkitRetriever(news_index_path, filters=MetadataFilters(filters=[MetadataFilter(key="source", value="x")],
                                                                 condition=FilterCondition.OR))
