"""LangChain's own standard retriever tests (package ``langchain-tests``) as they ship, with no
standard test overridden or skipped, on a real ragkit index of the news corpus."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core", reason="needs the langchain extra: pip install 'ragkit[langchain]'")
standard = pytest.importorskip("langchain_tests.integration_tests",
                               reason="needs LangChain's standard tests: pip install 'ragkit[test-integrations]'")

from ragkit.integrations.langchain import RagkitRetriever  # noqa: E402


class TestRagkitRetrieverStandard(standard.RetrieversIntegrationTests):
    """LangChain's suite as it ships: no standard test overridden or skipped."""

    @pytest.fixture(autouse=True)
    def _index_path(self, news_index_path):
        self.index_path = news_index_path

    @property
    def retriever_constructor(self) -> type[RagkitRetriever]:
        return RagkitRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index": str(self.index_path)}

    @property
    def retriever_query_example(self) -> str:
        return "новые станции метро в Москве"
