"""The `extract_features` stage: query and gallery embeddings of every trained backbone."""

from __future__ import annotations

import logging

import numpy as np
from torch.utils.data import DataLoader

from reid.data.dataset import ImageDataset
from reid.data.manifest import read_manifest
from reid.data.transforms import build_test_transform
from reid.engine.extract import extract_features
from reid.engine.runtime import select_device
from reid.io import atomic_path
from reid.params import BACKBONES, Params
from reid.paths import features_path, manifest_path, model_path
from reid.pipeline.models import initial_model, load_trained_model

log = logging.getLogger(__name__)


def extract(params: Params, dataset: str) -> None:
    """Query and gallery embeddings of every trained backbone -> `features/<ds>/<b>.npz`.

    With `eval.untrained_baseline` the network as it was before training (random or ImageNet
    initialisation, same seed) is embedded too, to show what training adds.
    """
    manifest = read_manifest(manifest_path(dataset))
    device = select_device(params.train.device)
    parts = {s: manifest[manifest["split"] == s] for s in ("query", "gallery")}
    for backbone in BACKBONES:
        model, saved = load_trained_model(model_path(backbone, dataset), params)
        height, width = saved["input_size"]
        transform = build_test_transform(height, width)
        loaders = {
            split: DataLoader(
                ImageDataset(rows["path"].tolist(), rows["pid"].tolist(), transform),
                batch_size=params.eval.batch_size,
                num_workers=params.train.num_workers,
                pin_memory=device.type == "cuda",
            )
            for split, rows in parts.items()
        }
        models = {"": model}
        if params.eval.untrained_baseline:
            models["untrained_"] = initial_model(params, backbone, saved["num_classes"])
        arrays: dict[str, np.ndarray] = {}
        for prefix, net in models.items():
            for split, loader in loaders.items():
                arrays[f"{prefix}{split}"] = extract_features(
                    net, loader, device=device, flip=params.eval.flip,
                    normalize=params.eval.normalize, amp=params.train.amp,
                    desc=f"{backbone} {prefix}{split}",
                )
        for split, rows in parts.items():
            arrays[f"{split}_pids"] = rows["pid"].to_numpy()
            arrays[f"{split}_camids"] = rows["camid"].to_numpy()
            arrays[f"{split}_paths"] = rows["path"].to_numpy().astype(str)
        with atomic_path(features_path(backbone, dataset)) as tmp, tmp.open("wb") as fh:
            np.savez(fh, **arrays)
        log.info("%s/%s: query %s, gallery %s", dataset, backbone,
                 arrays["query"].shape, arrays["gallery"].shape)
