"""The `cross_eval` stage: one cell of the cross-dataset matrix (direct transfer).

The models trained on one dataset (`models/<backbone>/<train>.pt`) are scored on the test set
of another, under that test dataset's protocol: its query and gallery from the split manifest,
same-id same-camera gallery images ignored (`reid.metrics.evaluate_ranking`). Nothing is adapted
to the test domain. On the diagonal (train == test) nothing is embedded again: the features that
`extract_features` wrote are scored with the same functions as the `evaluate` stage, so the cell
holds exactly the numbers of `metrics/<ds>/evaluate.json`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from reid.data.manifest import query_gallery_labels, read_manifest
from reid.io import write_json
from reid.params import BACKBONES, Params
from reid.paths import cross_domain_cell_path, manifest_path, model_path, split_dir
from reid.pipeline.scoring import load_features, score, scores

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _features_on(params: Params, train: str, test: str
                 ) -> Callable[[str], dict[str, np.ndarray]]:
    """backbone -> the features and labels of `test`'s query and gallery under the `train`
    model: on the diagonal the extract stage's file, elsewhere embedded here."""
    if train == test:  # reads features only: the model code (timm, torchvision) is not imported
        return lambda backbone: load_features(backbone, test)
    from reid.engine.runtime import select_device

    manifest = read_manifest(manifest_path(test))
    device = select_device(params.train.device)
    return lambda backbone: _embedded(params, train, backbone, manifest, device)


def _embedded(params: Params, train: str, backbone: str, manifest: pd.DataFrame,
              device: torch.device) -> dict[str, np.ndarray]:
    """The query and gallery of `manifest` embedded by the `train` model of `backbone`."""
    from reid.models.model_file import build_network, read_model_file
    from reid.pipeline.features import extract_splits, query_gallery_loaders

    trained = read_model_file(model_path(backbone, train))
    loaders = query_gallery_loaders(params, manifest, trained.input_size, device)
    network = build_network(trained)
    arrays = extract_splits(params, network, loaders, device, f"{backbone} ({train})")
    return {**arrays, **query_gallery_labels(manifest)}


def cross_eval(params: Params, train: str, test: str) -> dict[str, Any]:
    """Scores of every backbone trained on `train`, tested on `test`
    -> `metrics/cross_domain/<train>/<test>.json`.

    The cell also records the test protocol (from the split summary) and the test set's size.
    """
    summary = json.loads((split_dir(test) / "summary.json").read_text())
    features_of = _features_on(params, train, test)
    cell_scores: dict[str, dict[str, float]] = {}
    for backbone in BACKBONES:
        arrays = features_of(backbone)
        result = score(arrays, params.eval)
        cell_scores[backbone] = scores(result)
        log.info("%s -> %s, %s: mAP %.2f, rank-1 %.2f", train, test, backbone,
                 cell_scores[backbone]["mAP"], cell_scores[backbone]["rank1"])
    cell = {
        "train": train,
        "test": test,
        "protocol": summary["protocol"],
        "num_query": int(len(arrays["query_pids"])),
        "num_valid_queries": int(result["num_valid_queries"]),
        "num_gallery": int(len(arrays["gallery_pids"])),
        "scores": cell_scores,
    }
    write_json(cross_domain_cell_path(train, test), cell)
    return cell
