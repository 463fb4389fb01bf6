"""Bootstrap confidence intervals and paired comparisons of per-query ReID results.

The unit resampled is the query *identity*, not the single query (a cluster bootstrap,
Davison & Hinkley 1997, sec. 3.8): the queries of one person (one per camera on Market-1501)
share their gallery positives and their appearance, so their APs are correlated, and resampling
them one by one would understate the spread. Each resample draws the identities with
replacement and takes every query of a drawn identity; mAP and rank-1 are
then the query-weighted means, as in the point estimate. The gallery is held fixed: the
interval says how much the score would move with other query people from the same population,
for this gallery.

Everything is vectorised: one (resamples x identities) count matrix times the per-identity
sums (benchmarks/bench_bootstrap.py times it at the Market-1501 and MSMT17 sizes).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


def per_query_scores(ap: np.ndarray, first_match_rank: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query values whose means are the reported metrics, in percent: mAP and rank-1."""
    return {
        "mAP": 100.0 * np.asarray(ap, dtype=np.float64),
        "rank1": 100.0 * (np.asarray(first_match_rank) == 1).astype(np.float64),
    }


def identity_counts(groups: np.ndarray, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Resampling weights: (resamples, K) float counts of the K identities, and (V,) group index.

    Each row draws K identities with replacement and counts how often each was drawn.
    """
    if resamples < 1:
        raise ValueError(f"bootstrap: resamples must be >= 1, got {resamples}")
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    num_groups = int(index.max()) + 1 if len(index) else 0
    if num_groups < 2:
        raise ValueError(f"bootstrap: {num_groups} query identities; an interval needs at "
                         "least 2 (resampling one person says nothing about others)")
    draws = np.random.default_rng(seed).integers(0, num_groups, (resamples, num_groups))
    draws += np.arange(resamples)[:, None] * num_groups  # one bincount for all rows
    counts = np.bincount(draws.ravel(), minlength=resamples * num_groups)
    return counts.reshape(resamples, num_groups).astype(np.float64), index


def _resampled_means(values: np.ndarray, counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Query-weighted means of `values` (V,) under each row of `counts`: (resamples,)."""
    num_groups = counts.shape[1]
    sums = np.bincount(index, weights=values, minlength=num_groups)
    sizes = np.bincount(index, minlength=num_groups).astype(np.float64)
    return (counts @ sums) / (counts @ sizes)


def _interval(stats: np.ndarray, level: float) -> list[float]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return [round(float(lo), 2), round(float(hi), 2)]


def bootstrap_intervals(
    scores: Mapping[str, np.ndarray],
    groups: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, list[float]]:
    """Percentile intervals {"mAP": [lo, hi], ...} of each mean in `scores`, by identity.

    scores: name -> (V,) per-query values (e.g. `per_query_scores`); groups: (V,) query pids.
    """
    counts, index = identity_counts(groups, resamples, seed)
    return {name: _interval(_resampled_means(np.asarray(v, float), counts, index), level)
            for name, v in scores.items()}


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    groups: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, float | list[float]]:
    """Mean of `b - a` over the same queries, its paired bootstrap interval and a p-value.

    `significant` is whether the (unrounded) interval excludes 0.

    Both are resampled with the same identity draws, so what they share (hard and easy
    queries) cancels. The two-sided p-value is the bootstrap one: twice the smaller share of
    resampled differences on either side of 0, i.e. the level at which the percentile interval
    would just touch 0; floored at 1 / resamples (read it as "below that").
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.shape} and {b.shape} are not the same queries")
    counts, index = identity_counts(groups, resamples, seed)
    diffs = _resampled_means(b - a, counts, index)
    delta = float(np.mean(b - a))
    share = min(np.mean(diffs <= 0), np.mean(diffs >= 0))
    p_value = float(min(1.0, max(2 * share, 1.0 / resamples)))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return {"delta": round(delta, 2), "interval": _interval(diffs, level), "p_value": p_value,
            "significant": bool(lo > 0 or hi < 0)}
