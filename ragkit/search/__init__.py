"""Searching an index: the reader (`Index`), ranking and fusion of lexical and dense scores."""
