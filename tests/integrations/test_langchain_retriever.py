"""ragkit's LangChain retriever, beyond LangChain's standard tests (test_langchain_standard.py):
metadata, offsets, the same ranking as Index.search, per-call options, async; on a real index."""

from __future__ import annotations

import threading

import pytest

import ragkit

from .news_corpus import BY_ID, DOCS, OPTION_GRID, ranking

pytest.importorskip("langchain_core", reason="needs the langchain extra: pip install 'ragkit[langchain]'")

from langchain_core.documents import Document  # noqa: E402

from ragkit.integrations.langchain import RagkitRetriever  # noqa: E402

METADATA = {"doc_id", "title", "date", "source", "url", "start", "end", "rank", "score", "scores", "mode"}


def _ranking(docs: list[Document]) -> list[tuple[str, int, int, float]]:
    return [(d.metadata["doc_id"], d.metadata["start"], d.metadata["end"], round(d.metadata["score"], 6)) for d in docs]


def test_documents_carry_metadata_and_the_exact_passage_text(news_index_path):
    docs = RagkitRetriever(index=news_index_path, k=6, per_doc=None).invoke("станции метро и электробусы")
    assert len(docs) == 6 and docs[0].metadata["doc_id"] in {"metro", "buses"}
    for rank, d in enumerate(docs, 1):
        m = d.metadata
        assert set(m) == METADATA
        source = BY_ID[m["doc_id"]]
        assert source.text[m["start"]:m["end"]] == d.page_content
        assert (m["title"], m["date"], m["source"], m["url"]) == (source.title, source.date, source.source, source.url)
        assert m["rank"] == rank and m["mode"] == "hybrid" and set(m["scores"]) == {"lexical", "dense"}
        assert d.id == f"{m['doc_id']}:{m['start']}-{m['end']}"
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(("query", "options"), OPTION_GRID)
def test_same_ranking_as_index_search(news_index, news_index_path, query, options):
    expected = ranking(news_index.search(query, **{"k": 4, **options}))
    assert expected
    built = RagkitRetriever(index=news_index_path, **options).invoke(query)
    per_call = RagkitRetriever(index=news_index).invoke(query, **options)
    assert _ranking(built) == expected
    assert _ranking(per_call) == expected


def test_invoke_options_override_the_constructor_for_one_call(news_index_path):
    retriever = RagkitRetriever(index=news_index_path, k=5, mode="dense")
    sport = retriever.invoke("команда", k=2, mode="lexical", filters={"source": "sport/*"}, per_doc=1)
    assert len(sport) == 2 and {d.metadata["doc_id"] for d in sport} == {"football", "hockey"}
    assert all(d.metadata["mode"] == "lexical" for d in sport)
    dated = retriever.invoke("Москва", filters=ragkit.Filters(until="2023-12-31"), per_doc=None)
    assert dated and all(d.metadata["date"] <= "2023-12-31" for d in dated)
    again = retriever.invoke("победа в матче")  # the retriever's own options are untouched
    assert len(again) == 5 and all(d.metadata["mode"] == "dense" for d in again)


def test_bad_options_are_ragkit_errors(news_index_path):
    retriever = RagkitRetriever(index=news_index_path)
    with pytest.raises(ragkit.InvalidArgumentError, match="unknown search option 'top_k'"):
        retriever.invoke("метро", top_k=2)
    with pytest.raises(ragkit.InvalidArgumentError, match="unknown filter 'author'"):
        retriever.invoke("метро", filters={"author": "x"})
    with pytest.raises(ragkit.InvalidArgumentError, match="mode"):
        retriever.invoke("метро", mode="fuzzy")
    with pytest.raises(ragkit.InvalidArgumentError, match="k must be a positive integer"):
        RagkitRetriever(index=news_index_path, k=0)
    with pytest.raises(ragkit.InvalidArgumentError, match="YYYY-MM-DD"):
        RagkitRetriever(index=news_index_path, filters={"since": "yesterday"})
    with pytest.raises(ragkit.InvalidArgumentError, match="index must be a path or a ragkit.Index"):
        RagkitRetriever(index=42)


def test_the_index_opens_on_first_use_and_is_kept(tmp_path):

    path = tmp_path / "later"
    retriever = RagkitRetriever(index=str(path), k=2)  # nothing there yet: opening waits for a query
    with pytest.raises(ragkit.RagkitError):
        retriever.invoke("метро")
    ragkit.build_index(DOCS[:3], path)
    first = retriever.invoke("метро")
    assert [d.metadata["doc_id"] for d in first][:1] == ["metro"]
    opened = retriever._handle.index
    retriever.invoke("технопарки")
    assert retriever._handle.index is opened


async def test_ainvoke_runs_in_a_thread_and_the_loop_runs_meanwhile(slow_index, ticks_while, news_index):
    retriever = RagkitRetriever(index=slow_index, k=3)
    docs, ticks = await ticks_while(retriever.ainvoke("курс рубля", k=2, mode="lexical"))
    assert ticks >= 10, f"the event loop ticked {ticks} times in a 0.3 s search: it was blocked"
    assert slow_index.search_threads and slow_index.search_threads[-1] != threading.get_ident()
    assert _ranking(docs) == ranking(news_index.search("курс рубля", k=2, mode="lexical"))


def test_batch_and_chains(news_index_path):
    from langchain_core.runnables import RunnableLambda

    retriever = RagkitRetriever(index=news_index_path, k=1)
    titles = (retriever | RunnableLambda(lambda docs: [d.metadata["title"] for d in docs])).batch(
        ["курс рубля к доллару", "Большой театр премьера"])
    assert titles == [[BY_ID["ruble"].title], [BY_ID["theatre"].title]]


def test_from_documents_keeps_known_metadata(tmp_path):
    docs = [
        Document(page_content=BY_ID["ruble"].text, id="r1",
                 metadata={"title": "Рубль", "date": "2024-11-27T10:00:00", "source": "econ.txt", "author": "dropped"}),
        Document(page_content=BY_ID["snow"].text, metadata={"id": "s1", "title": "Снег", "url": "https://x/s1"}),
    ]
    retriever = RagkitRetriever.from_documents(docs, tmp_path / "idx", k=2, per_doc=1)
    hits = retriever.invoke("курс рубля")
    assert [h.metadata["doc_id"] for h in hits] == ["r1", "s1"]
    assert (hits[0].metadata["title"], hits[0].metadata["date"], hits[0].metadata["source"]) == (
        "Рубль", "2024-11-27", "econ.txt")
    assert "author" not in hits[0].metadata and hits[1].metadata["url"] == "https://x/s1"
    assert [h.metadata["doc_id"] for h in retriever.invoke("курс", filters={"since": "2024-01-01"})] == ["r1"]
