"""k-reciprocal re-ranking's parameters in the rerank stage: fixed, or chosen on the validation
split.

k1 = 20, k2 = 6 and lambda = 0.3 (Zhong et al., CVPR 2017) suit Market-1501's gallery, about
26 images per identity; on a gallery with a handful per identity the k-reciprocal sets fill
with other people. `rerank.select: validation` therefore lets each backbone pick the point of
`rerank.grid` with the best mAP on the validation split (`eval.val_ids` held-out training
identities, embedded by extract_features as `val_*`), before its test split is re-ranked once
with it. The choice reads the `val_*` arrays alone: the test split plays no part in it.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reid.errors import InputError
from reid.metrics.rerank import k_reciprocal_rerank
from reid.params import BACKBONES, EvalParams, Params, RerankGridParams
from reid.paths import features_path
from reid.pipeline.scoring import rank

log = logging.getLogger(__name__)

VALIDATION_PREFIX = "val_"  # extract_features' prefix of the validation split's arrays


@dataclass(frozen=True)
class RerankChoice:
    """The parameters one backbone's test split is re-ranked with, and how they were chosen:
    `select` "fixed" (params.yaml's rerank.k1 / k2 / lambda_value) or "validation" (with the
    validation split's size, the grid's size and the validation mAP of the choice, percent)."""

    k1: int
    k2: int
    lambda_value: float
    select: str
    validation_ids: int | None = None
    validation_queries: int | None = None
    validation_gallery: int | None = None
    grid_points: int | None = None
    validation_mAP: float | None = None

    def record(self) -> dict[str, Any]:
        """The choice as rerank.json and the results notes give it (no empty fields)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def rerank_features(f: dict[str, np.ndarray], ev: EvalParams) -> tuple[np.ndarray, np.ndarray]:
    """Query and gallery features to re-rank by squared Euclidean distance under `eval.metric`.

    Re-ranking divides each column of the distances by its maximum, so a constant factor
    cancels: on L2-normalised features, 1 - cos = |a - b|^2 / 2 gives exactly the cosine
    re-ranking. Cosine on unnormalised features therefore re-ranks their normalised copies.
    """
    q, g = f["query"], f["gallery"]
    if ev.metric == "cosine" and not ev.normalize:
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return q, g


def rerank_choices(params: Params, dataset: str) -> dict[str, RerankChoice]:
    """Each backbone's re-ranking parameters as `rerank.select` says, in `BACKBONES` order."""
    rr = params.rerank
    if rr.select == "fixed":
        fixed = RerankChoice(rr.k1, rr.k2, rr.lambda_value, "fixed")
        return dict.fromkeys(BACKBONES, fixed)
    choices = {}
    for backbone in BACKBONES:
        choices[backbone] = choose_on_validation(
            load_validation_features(backbone, dataset), params.eval, rr.grid)
        log.info("%s/%s: re-ranking with %s", dataset, backbone, choices[backbone])
    return choices


def load_validation_features(backbone: str, dataset: str) -> dict[str, np.ndarray]:
    """The `val_*` arrays of `features/<ds>/<b>.npz` without their prefix (the layout of
    `reid.pipeline.scoring`); no other array of the file is read."""
    path = features_path(backbone, dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path}: features not found (run extract_features first)")
    with np.load(path) as data:
        arrays = {key.removeprefix(VALIDATION_PREFIX): data[key] for key in data.files
                  if key.startswith(VALIDATION_PREFIX)}
    if not arrays:
        raise InputError(f"{path}: no validation split in the features; rerank.select: "
                         "validation needs them (run extract_features with eval.val_ids > 0)")
    return arrays


def choose_on_validation(val: dict[str, np.ndarray], ev: EvalParams, grid: RerankGridParams
                         ) -> RerankChoice:
    """The grid point whose re-ranking gives `val` (a query and gallery split) the best mAP.

    Points are tried in the order of `grid`, k1 outermost, then k2, then lambda_value; a tie
    goes to the first. mAP under the evaluate protocol (`eval.metric`, same-id same-camera
    gallery images ignored), compared unrounded.
    """
    q, g = rerank_features(val, ev)
    points = list(itertools.product(grid.k1, grid.k2, grid.lambda_value))
    best, best_map = points[0], -1.0
    for k1, k2, lambda_value in points:
        distmat = k_reciprocal_rerank(q, g, k1=k1, k2=k2, lambda_value=lambda_value)
        mean_ap = float(rank(distmat, val, ev.max_rank)["mAP"])
        if mean_ap > best_map:
            best, best_map = (k1, k2, lambda_value), mean_ap
    return RerankChoice(
        *best, select="validation",
        validation_ids=int(len(np.union1d(val["query_pids"], val["gallery_pids"]))),
        validation_queries=int(len(val["query_pids"])),
        validation_gallery=int(len(val["gallery_pids"])),
        grid_points=len(points), validation_mAP=round(100 * best_map, 2))
