"""Evaluation during training: the split it scores and the scorer the engine calls.

Without `eval.val_ids` the train stage scores the test split, as every peer toolbox does. With
`eval.val_ids: K` it holds K training identities out of training as a validation split and
scores that instead, so an epoch can be chosen (`eval.select: best_val`) without ever reading
the test split before the final evaluation: choosing an epoch on test mAP inflates it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from reid.errors import InputError
from reid.metrics import evaluate_ranking
from reid.metrics.distance import pairwise_distance
from reid.params import Params
from reid.pipeline.features import embed, query_gallery_loaders

log = logging.getLogger(__name__)
SCORES = ("mAP", "rank1", "rank5", "rank10", "mINP")


def validation_split(train: pd.DataFrame, num_ids: int, seed: int
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the train rows left, relabelled 0..N-1; the validation rows as query / gallery).

    `num_ids` identities are drawn by `seed` among those whose images, once one per camera is
    taken as a query, still leave gallery images from two or more cameras (so every validation
    query has a match from another camera, as the test protocols require).
    """
    first = train.groupby(["pid", "camid"]).cumcount() == 0
    rest_cameras = train[~first].groupby("pid")["camid"].nunique()
    eligible = sorted(rest_cameras[rest_cameras >= 2].index)
    left = train["pid"].nunique() - num_ids
    if num_ids > len(eligible) or left < 2:
        raise InputError(
            f"eval.val_ids: {num_ids} validation identities asked for, but only "
            f"{len(eligible)} of the {train['pid'].nunique()} training identities have images "
            "from enough cameras, and at least 2 must stay for training")
    chosen = np.random.default_rng(seed).choice(eligible, num_ids, replace=False)
    held = train["pid"].isin(chosen)
    val = train[held].assign(split=np.where(first[held], "query", "gallery"), label=-1)
    kept = train[~held]
    relabel = {pid: label for label, pid in enumerate(sorted(kept["pid"].unique()))}
    kept = kept.assign(label=kept["pid"].map(relabel).astype("int64"))
    log.info("validation split: %d ids (%d query, %d gallery images) held out of training",
             num_ids, int((val["split"] == "query").sum()), int((val["split"] == "gallery").sum()))
    return kept.reset_index(drop=True), val.reset_index(drop=True)


def build_evaluator(params: Params, rows: pd.DataFrame, input_size: tuple[int, int],
                    device: torch.device) -> Callable[[nn.Module], dict[str, float]]:
    """model -> {"mAP", "rank1", "rank5", "rank10", "mINP"} in percent on `rows` (a query and
    a gallery split): the evaluate stage's embedding and protocol; ranking on the GPU there."""
    loaders = query_gallery_loaders(params, rows, input_size, device)
    split = {s: rows[rows["split"] == s] for s in ("query", "gallery")}

    def evaluator(model: nn.Module) -> dict[str, float]:
        feats = embed(params, model, loaders, device, "evaluate")
        result = evaluate_ranking(
            pairwise_distance(feats["query"], feats["gallery"], params.eval.metric),
            split["query"]["pid"].to_numpy(), split["gallery"]["pid"].to_numpy(),
            split["query"]["camid"].to_numpy(), split["gallery"]["camid"].to_numpy(),
            max_rank=params.eval.max_rank, device=device if device.type == "cuda" else None,
        )
        cmc = result["cmc"]
        return {"mAP": 100 * result["mAP"], "rank1": 100 * cmc[0], "rank5": 100 * cmc[4],
                "rank10": 100 * cmc[9], "mINP": 100 * result["mINP"]}

    return evaluator
