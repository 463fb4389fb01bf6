"""Evaluation metrics (mAP, CMC, mINP) and k-reciprocal re-ranking on NumPy arrays."""

from reid.metrics.ranking import evaluate_ranking
from reid.metrics.rerank import k_reciprocal_rerank

__all__ = ["evaluate_ranking", "k_reciprocal_rerank"]
