"""Retrievers for RAG frameworks, each behind its own extra.

- :mod:`ragkit.integrations.langchain` (``pip install 'ragkit[langchain]'``):
  ``RagkitRetriever``, a LangChain ``BaseRetriever``.
- :mod:`ragkit.integrations.llama_index` (``pip install 'ragkit[llama-index]'``):
  ``RagkitRetriever``, a LlamaIndex ``BaseRetriever``.

Importing this package imports neither framework; each module imports its own on import.
"""
