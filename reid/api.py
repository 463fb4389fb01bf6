"""Trained models outside the pipeline: `load_model(path)` and `model.embed(images)`.

    from reid.api import load_model
    model = load_model("models/resnet50/market1501.pt")
    features = model.embed(["a.jpg", "b.jpg"])      # (2, D) float32, rows of unit length

The model file alone rebuilds the network (backbone, classes and input size are saved in it;
no params.yaml). `embed` runs the pipeline's own test transform and feature extractor
(`reid.data.transforms.build_test_transform`, `reid.engine.extract.extract_features`), so its
rows are exactly what the evaluate stage scored: the BNNeck feature, averaged with the mirrored
image and L2-normalised (the params.yaml defaults `eval.flip`, `eval.normalize`), batched, on
the GPU when there is one. `reid.export` writes the same embedding to an ONNX file and runs it
under ONNX Runtime through the same input path (`image_loader`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reid.data.dataset import ImageDataset
from reid.data.market1501 import IMAGE_SUFFIXES
from reid.data.transforms import build_test_transform
from reid.engine.extract import extract_features
from reid.engine.runtime import select_device
from reid.errors import InputError
from reid.models import BACKBONES, ReidModel, build_model

REQUIRED_KEYS = ("backbone", "num_classes", "input_size", "state_dict")
Images = str | Path | Image.Image | np.ndarray | Sequence[str | Path | Image.Image]


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The saved dict of a model file of ours; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # pickle, zip and torch errors alike: not a torch file
        raise InputError(f"{path}: not a model file of reid-pipeline ({err})") from err
    missing = [k for k in REQUIRED_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing or saved["backbone"] not in BACKBONES:
        raise InputError(f"{path}: not a model file of reid-pipeline (missing "
                         f"{', '.join(missing) or 'a known backbone'}; written by the train "
                         "stage as models/<backbone>/<dataset>.pt)")
    return saved


class ReidEmbedder:
    """A trained ReID model and how to embed images with it (see `load_model`)."""

    def __init__(self, model: ReidModel, saved: dict[str, Any], device: torch.device) -> None:
        self.model = model.eval().to(device)
        self.device = device
        self.backbone: str = saved["backbone"]
        self.dataset: str | None = saved.get("dataset")
        self.input_size: tuple[int, int] = tuple(saved["input_size"])
        self.feature_dim: int = model.feature_dim
        self.epochs: int = len(saved.get("history", []))
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
        return extract_features(self.model, loader, device=self.device, flip=flip,
                                normalize=normalize, desc="embed")


def load_model(path: str | Path, *, device: str = "auto") -> ReidEmbedder:
    """Rebuild a model written by a train stage (`models/<backbone>/<dataset>.pt`)."""
    saved = read_model_file(path)
    model = build_model(saved["backbone"], saved["num_classes"],
                        **({"effnet_variant": saved["effnet_variant"]}
                           if saved.get("effnet_variant") else {}))
    model.load_state_dict(saved["state_dict"])
    return ReidEmbedder(model, saved, select_device(device))


def load_embedder(path: str | Path, *, device: str = "auto") -> Any:
    """`load_model` for a `.pt` of ours, or `reid.export.load_onnx` for an `.onnx` of
    `reid export` (ONNX Runtime on the CPU): both embed the same inputs to the same rows."""
    if Path(path).suffix.lower() != ".onnx":
        return load_model(path, device=device)
    from reid.export import load_onnx

    if device not in ("auto", "cpu"):
        raise InputError(f"{path}: an ONNX model runs on the CPU here (ONNX Runtime's CPU "
                         f"build), not on device {device}")
    return load_onnx(path)


def image_loader(
    images: Images,
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches `(images (B, 3, H, W) float32, labels)` of `images` in order, through `transform`.

    The one input path of every embedder (PyTorch here, ONNX Runtime in `reid.export`): the
    same files, folders, PIL images or arrays give the same tensors whatever runs the network.
    """
    return DataLoader(_dataset(images, transform), batch_size=batch_size,
                      num_workers=num_workers, pin_memory=pin_memory)


def image_paths(items: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted); an error names what is wrong."""
    paths: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{item}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    if not paths:
        raise InputError("no images given")
    return paths


class _PILImages(Dataset):
    def __init__(self, images: list[Image.Image], transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index].convert("RGB")), 0


def _dataset(images: Images, transform) -> Dataset:
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[-1] != 3:
            raise InputError(f"an image array must be uint8 (H, W, 3) or (N, H, W, 3), got "
                             f"{images.dtype} {images.shape}")
        batch = images[None] if images.ndim == 3 else images
        return _PILImages([Image.fromarray(a) for a in batch], transform)
    if isinstance(images, str | Path | Image.Image):
        images = [images]
    if images and all(isinstance(i, Image.Image) for i in images):
        return _PILImages(list(images), transform)
    if any(isinstance(i, Image.Image) for i in images):
        raise InputError("give either paths or PIL images, not both")
    paths = image_paths(images)
    return ImageDataset(paths, [0] * len(paths), transform)
