"""Fixtures of the framework adapter tests: a real ragkit index (navec-ru, FAISS, BM25) of the
news corpus, built once per session, and helpers to watch the event loop.

This folder is a package (``__init__.py``), so this conftest is ``integrations.conftest`` and does
not shadow the top-level tests' ``from conftest import ...``."""

from __future__ import annotations

import pytest

import ragkit

from .news_corpus import DOCS


@pytest.fixture(scope="session")
def news_index_path(tmp_path_factory):
    """A real index of DOCS: the model is chosen by language (navec-ru), several passages a document."""
    path = tmp_path_factory.mktemp("adapters") / "index"
    ragkit.build_index(DOCS, path, options=ragkit.BuildOptions(max_tokens=24))
    return path


@pytest.fixture(scope="session")
def news_index(news_index_path):
    return ragkit.Index.open(news_index_path)


@pytest.fixture
def slow_index(news_index_path):
    """A real open index whose search sleeps 0.3 s first and records the thread it ran on: the
    async tests see whether the event loop ran meanwhile."""
    import threading
    import time

    index = ragkit.Index.open(news_index_path)
    real_search, threads = index.search, []

    def search(*args, **kwargs):
        threads.append(threading.get_ident())
        time.sleep(0.3)
        return real_search(*args, **kwargs)

    index.search = search
    index.search_threads = threads
    return index


@pytest.fixture
def ticks_while():
    """``await ticks_while(awaitable)`` -> (its result, how many 10 ms ticks the loop ran meanwhile)."""
    import asyncio

    async def run(awaitable):
        ticks = 0
        done = asyncio.Event()

        async def tick():
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            return await awaitable, ticks
        finally:
            done.set()
            await ticker

    return run
