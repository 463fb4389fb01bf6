"""The networks of the pipeline: built from params and seeded as training starts.

Shared by the train stages and extract_features, which rebuilds the very network a train
stage started from as its "before training" baseline. A trained network is read back from its
model file alone (`reid.models.model_file`), never from today's params.
"""

from __future__ import annotations

from reid.engine.runtime import seed_everything
from reid.models import ReidModel, build_model
from reid.params import Params


def initial_model(params: Params, backbone: str, num_classes: int) -> ReidModel:
    """The network a train stage starts from: seeded, then built (random or ImageNet init).

    torch seeds itself randomly per process, so seeding here makes training reproducible, and
    extract_features rebuilds this very network as the "before training" baseline.
    """
    seed_everything(params.train.seed)
    model_params = params.models[backbone]
    return build_model(backbone, num_classes, pretrained=model_params.pretrained,
                       effnet_variant=model_params.variant)
