"""Vector search: exact search, the FAISS index types, and tuning their search parameters to a recall target."""
