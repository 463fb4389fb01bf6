"""The `extract_features` stage: query and gallery embeddings of every trained backbone.

With `eval.val_ids: K` the validation split the models were trained without (the K held-out
training identities) is embedded too, as `val_query`, `val_gallery` and their labels (the
layout of `reid.pipeline.scoring` with the prefix `val_`, which `reid.pipeline.reranking`
reads): with `rerank.select: validation` the rerank stage chooses its parameters on them,
never on the test split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from reid.data.dataset import ImageDataset
from reid.data.manifest import (
    TEST_SPLITS,
    query_gallery_labels,
    read_manifest,
    validation_split,
)
from reid.data.transforms import build_test_transform
from reid.engine.extract import extract_features
from reid.engine.runtime import select_device
from reid.errors import InputError
from reid.io import atomic_path, file_digest
from reid.models.model_file import ModelFile, build_network, read_model_file, results_info
from reid.params import BACKBONES, Params
from reid.paths import features_path, manifest_path, model_path
from reid.pipeline.models import initial_model

log = logging.getLogger(__name__)


def query_gallery_loaders(
    params: Params, manifest: pd.DataFrame, input_size: tuple[int, int], device: torch.device
) -> dict[str, DataLoader]:
    """Ordered loaders of the query and gallery images with the test transform."""
    transform = build_test_transform(*input_size)
    return {
        split: DataLoader(
            ImageDataset(rows["path"].tolist(), rows["pid"].tolist(), transform),
            batch_size=params.eval.batch_size,
            num_workers=params.train.num_workers,
            pin_memory=device.type == "cuda",
        )
        for split, rows in ((s, manifest[manifest["split"] == s]) for s in TEST_SPLITS)
    }


def extract_splits(
    params: Params, model: torch.nn.Module, loaders: dict[str, DataLoader],
    device: torch.device, desc: str,
) -> dict[str, np.ndarray]:
    """{"query": (Q, D), "gallery": (G, D)} float32 embeddings as `eval` configures them."""
    return {
        split: extract_features(model, loader, device=device, flip=params.eval.flip,
                                normalize=params.eval.normalize, amp=params.train.amp,
                                desc=f"{desc} {split}")
        for split, loader in loaders.items()
    }


def extract(params: Params, dataset: str) -> None:
    """Query and gallery embeddings of every trained backbone -> `features/<ds>/<b>.npz`.

    With `eval.untrained_baseline` the network as it was before training (random or ImageNet
    initialisation, same seed) is embedded too, to show what training adds; with
    `eval.val_ids`, the validation split (`val_*`).
    """
    manifest = read_manifest(manifest_path(dataset))
    device = select_device(params.train.device)
    held_out = validation_rows(params, manifest)
    for backbone in BACKBONES:
        path = model_path(backbone, dataset)
        trained = read_model_file(path)
        network = build_network(trained)
        loaders = query_gallery_loaders(params, manifest, trained.input_size, device)
        arrays = extract_splits(params, network, loaders, device, backbone)
        if params.eval.untrained_baseline:
            untrained = initial_model(params, backbone, trained.num_classes)
            base = extract_splits(params, untrained, loaders, device, f"{backbone} untrained")
            arrays.update({f"untrained_{split}": v for split, v in base.items()})
        arrays.update(query_gallery_labels(manifest))
        for split in TEST_SPLITS:
            paths = manifest.loc[manifest["split"] == split, "path"]
            arrays[f"{split}_paths"] = paths.to_numpy().astype(str)
        if held_out is not None:
            arrays.update(_validation_arrays(params, held_out, trained, path, network, device))
        info = results_info(trained, file_digest(path, "sha256"))
        arrays["model_info"] = np.array(json.dumps(info))
        with atomic_path(features_path(backbone, dataset)) as tmp, tmp.open("wb") as fh:
            np.savez(fh, **arrays)
        log.info("%s/%s: query %s, gallery %s", dataset, backbone,
                 arrays["query"].shape, arrays["gallery"].shape)


def validation_rows(params: Params, manifest: pd.DataFrame) -> tuple[pd.DataFrame, int] | None:
    """(the validation split's query and gallery rows, the number of identities left to train
    on) as the train stages held it out (`eval.val_ids`, drawn by `train.seed`), or None."""
    if not params.eval.val_ids:
        return None
    kept, val = validation_split(manifest[manifest["split"] == "train"], params.eval.val_ids,
                                 params.train.seed)
    return val, int(kept["pid"].nunique())


def _validation_arrays(params: Params, held_out: tuple[pd.DataFrame, int], trained: ModelFile,
                       path: Path, network: torch.nn.Module, device: torch.device
                       ) -> dict[str, np.ndarray]:
    """The `val_*` arrays of one model; refused when it was trained on those identities (a
    choice made on them would be biased)."""
    rows, num_trained_ids = held_out
    if trained.num_classes != num_trained_ids:
        raise InputError(
            f"{path}: trained on {trained.num_classes} identities, but eval.val_ids: "
            f"{params.eval.val_ids} leaves {num_trained_ids} to train on; the validation split "
            "must be held out of the model's training (run its train stage again)")
    loaders = query_gallery_loaders(params, rows, trained.input_size, device)
    arrays = {**extract_splits(params, network, loaders, device, f"{trained.backbone} val"),
              **query_gallery_labels(rows)}
    return {f"val_{key}": value for key, value in arrays.items()}
