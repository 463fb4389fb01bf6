"""Query x gallery scoring under the evaluation protocol, and the feature files it reads.

One definition for every stage that scores: `evaluate`, `rerank`, `cross_eval` and the
evaluation during training, down to the percentages they report (`scores`). `arrays` has the
layout of `features/<ds>/<b>.npz`: "query" (Q, D) and "gallery" (G, D) features (an optional
prefix, e.g. "untrained_"), with "query_pids", "query_camids", "gallery_pids", "gallery_camids".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from reid.metrics.distance import pairwise_distance
from reid.metrics.ranking import evaluate_ranking
from reid.params import EvalParams
from reid.paths import features_path

if TYPE_CHECKING:
    import torch


def load_features(backbone: str, dataset: str) -> dict[str, np.ndarray]:
    """Every array of `features/<dataset>/<backbone>.npz` (written by extract_features)."""
    path = features_path(backbone, dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path}: features not found (run extract_features first)")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def rank(distmat: np.ndarray, arrays: dict[str, np.ndarray], max_rank: int,
         device: str | torch.device | None = None) -> dict[str, Any]:
    """`evaluate_ranking` of a (Q, G) distance matrix with the ids and cameras of `arrays`
    (same-id same-camera gallery images ignored). A CUDA `device` ranks on that GPU; any
    other (or None) runs the NumPy loop, the fastest path on a CPU."""
    on_gpu = device is not None and str(device).startswith("cuda")
    return evaluate_ranking(
        distmat, arrays["query_pids"], arrays["gallery_pids"],
        arrays["query_camids"], arrays["gallery_camids"],
        max_rank=max_rank, device=device if on_gpu else None,
    )


def query_gallery_distance(arrays: dict[str, np.ndarray], metric: str, *, prefix: str = ""
                           ) -> np.ndarray:
    """(Q, G) distances of the `prefix`query x `prefix`gallery features under `metric`."""
    return pairwise_distance(arrays[f"{prefix}query"], arrays[f"{prefix}gallery"], metric)


def score(arrays: dict[str, np.ndarray], ev: EvalParams, *, prefix: str = "",
          device: str | torch.device | None = None) -> dict[str, Any]:
    """`rank` of the `prefix`query x `prefix`gallery features under `eval.metric`."""
    distmat = query_gallery_distance(arrays, ev.metric, prefix=prefix)
    return rank(distmat, arrays, ev.max_rank, device)


def scores(result: Mapping[str, Any], digits: int | None = 2) -> dict[str, float]:
    """Percentages with stable keys from an `evaluate_ranking` result, rounded to `digits`
    decimals (None: not rounded, for comparing epochs)."""
    cmc = result["cmc"]
    values = {"mAP": result["mAP"], "rank1": cmc[0], "rank5": cmc[4], "rank10": cmc[9],
              "mINP": result["mINP"]}
    return {k: 100 * float(v) if digits is None else round(100 * float(v), digits)
            for k, v in values.items()}
