"""The SQLite store of documents and passage spans, and the filters applied before ranking."""
