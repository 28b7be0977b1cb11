"""BM25: text analysis (Russian and English stemming, stopwords) and the sparse index over passages and documents."""
