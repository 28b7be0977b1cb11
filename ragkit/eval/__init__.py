"""Evaluation: BEIR data sets and retrieval metrics (nDCG, recall, MRR)."""
