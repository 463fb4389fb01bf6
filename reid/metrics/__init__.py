"""Evaluation metrics (mAP, CMC, mINP) and k-reciprocal re-ranking on NumPy arrays.

The two entry points load on first use (PEP 562): ranking and re-ranking import torch, which
`reid.metrics.bootstrap` and `reid --help` do not need.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate_ranking", "k_reciprocal_rerank"]


def __getattr__(name: str) -> Any:
    if name == "evaluate_ranking":
        from reid.metrics.ranking import evaluate_ranking
        return evaluate_ranking
    if name == "k_reciprocal_rerank":
        from reid.metrics.rerank import k_reciprocal_rerank
        return k_reciprocal_rerank
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
