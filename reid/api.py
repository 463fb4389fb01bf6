"""Trained models outside the pipeline: `load_model(path)` and `model.embed(images)`.

    from reid.api import load_model
    model = load_model("models/resnet50/market1501.pt")
    features = model.embed(["a.jpg", "b.jpg"])      # (2, D) float32, rows of unit length

The model file alone rebuilds the network (`reid.models.model_file`: backbone, classes and input
size are saved in it; no params.yaml), read as tensors and plain data only, so a received file
cannot run code. `embed` runs the pipeline's own test transform and feature extractor
(`reid.data.transforms.build_test_transform`, `reid.engine.extract.extract_features`), so its
rows are exactly what the evaluate stage scored: the BNNeck feature, averaged with the mirrored
image and L2-normalised (the params.yaml defaults `eval.flip`, `eval.normalize`), batched, on
the GPU when there is one. `reid.export` writes the same embedding to an ONNX file and runs it
under ONNX Runtime through the same input path (`reid.data.images.image_loader`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reid.data.images import Images, image_loader
from reid.data.transforms import build_test_transform
from reid.engine.extract import extract_features
from reid.engine.runtime import select_device
from reid.models import ReidModel
from reid.models.model_file import ModelFile, build_network, read_model_file


class TrainedModel:
    """A trained ReID network (`network`), what its file says of it, and `embed` (see
    `load_model`)."""

    def __init__(self, network: ReidModel, model_file: ModelFile, device: torch.device) -> None:
        self.network = network.eval().to(device)
        self.device = device
        self.backbone: str = model_file.backbone
        self.dataset: str | None = model_file.dataset
        self.input_size: tuple[int, int] = tuple(model_file.input_size)
        self.feature_dim: int = network.feature_dim
        self.epochs: int = model_file.epochs
        self.transform = build_test_transform(*self.input_size)

    def embed(
        self,
        images: Images,
        *,
        batch_size: int = 64,
        flip: bool = True,
        normalize: bool = True,
        num_workers: int = 0,
    ) -> np.ndarray:
        """(N, D) float32 embeddings of file paths, a folder, PIL images or uint8 arrays.

        A folder gives its images in sorted order (`image_paths`); an array is (H, W, 3) or
        (N, H, W, 3) uint8 RGB. Rows follow the input order.
        """
        loader = image_loader(images, self.transform, batch_size=batch_size,
                              num_workers=num_workers, pin_memory=self.device.type == "cuda")
        return extract_features(self.network, loader, device=self.device, flip=flip,
                                normalize=normalize, desc="embed")


def load_model(path: str | Path, *, device: str = "auto") -> TrainedModel:
    """The trained model of a model file written by a train stage
    (`models/<backbone>/<dataset>.pt`), on `device` (auto: the GPU when there is one)."""
    model_file = read_model_file(path)
    return TrainedModel(build_network(model_file), model_file, select_device(device))
