"""The networks of the pipeline: built from params, seeded as training starts, read back.

Shared by the train stages and extract_features, which rebuilds the very network a train
stage started from as its "before training" baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reid.engine.runtime import seed_everything
from reid.models import ReidModel, build_model
from reid.params import Params


def build_reid_model(
    params: Params, backbone: str, num_classes: int, *, pretrained: bool
) -> ReidModel:
    model_params = params.models[backbone]
    return build_model(
        backbone,
        num_classes,
        pretrained=model_params.pretrained if pretrained else None,
        effnet_variant=model_params.variant,
    )


def initial_model(params: Params, backbone: str, num_classes: int) -> ReidModel:
    """The network a train stage starts from: seeded, then built (random or ImageNet init).

    torch seeds itself randomly per process, so seeding here makes training reproducible, and
    extract_features rebuilds this very network as the "before training" baseline.
    """
    seed_everything(params.train.seed)
    return build_reid_model(params, backbone, num_classes, pretrained=True)


def load_trained_model(path: Path, params: Params) -> tuple[ReidModel, dict[str, Any]]:
    """Rebuild a model saved by the train stage; returns it with the saved metadata."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: trained model not found (run its train stage first)")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = build_reid_model(params, saved["backbone"], saved["num_classes"], pretrained=False)
    model.load_state_dict(saved["state_dict"])
    return model, saved
