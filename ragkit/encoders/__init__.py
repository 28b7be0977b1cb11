"""Text to vectors: the embedders (sentence-transformers, ONNX, int8, static navec-ru), model facts and the embedding cache."""
