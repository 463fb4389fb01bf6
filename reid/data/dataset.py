"""A torch Dataset over manifest rows: image path -> (transformed image, label, index)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from reid.errors import InputError


class ImageDataset(Dataset):
    """Images read from `paths` with PIL (RGB), transformed, returned with their label."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int],
        transform: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [str(p) for p in paths]
        self.labels = [int(v) for v in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.paths[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except OSError as err:
            raise InputError(f"{path}: cannot read image ({err})") from err
        return self.transform(image), self.labels[index]
