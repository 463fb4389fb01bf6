"""The one input path of every model outside the pipeline: files, folders, PIL images or arrays
-> ordered batches through a transform (PyTorch in `reid.api`, ONNX Runtime in `reid.export`).

The same inputs give the same tensors whatever runs the network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reid.data.dataset import ImageDataset
from reid.data.market1501 import IMAGE_SUFFIXES
from reid.errors import InputError

Images = str | Path | Image.Image | np.ndarray | Sequence[str | Path | Image.Image]


def image_loader(
    images: Images,
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches `(images (B, 3, H, W) float32, labels)` of `images` in order, through `transform`.

    A folder gives its images in sorted order (`image_paths`); an array is (H, W, 3) or
    (N, H, W, 3) uint8 RGB.
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
