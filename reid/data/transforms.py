"""Image transforms of the strong baseline (torchvision transforms v2), PIL image -> tensor.

Training: resize, random horizontal flip, pad and random crop (small translations), ImageNet
normalisation, then random erasing (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020)
against occlusion. Testing: resize and normalise only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check_size(height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got height {height}, width {width}")


def _to_normalised_tensor() -> list[v2.Transform]:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ]


def build_train_transform(
    height: int,
    width: int,
    *,
    flip_p: float = 0.5,
    padding: int = 10,
    erasing_p: float = 0.5,
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> float32 tensor (3, height, width), augmented as in BoT.

    The erased rectangle (area 2-40 % of the image, aspect 0.3-3.33) is filled with 0, i.e. the
    ImageNet mean after normalisation.
    """
    _check_size(height, width)
    steps: list[v2.Transform] = [
        v2.Resize((height, width), interpolation=InterpolationMode.BILINEAR, antialias=True),
        v2.RandomHorizontalFlip(p=flip_p),
    ]
    if padding > 0:
        steps += [v2.Pad(padding), v2.RandomCrop((height, width))]
    steps += _to_normalised_tensor()
    steps += [
        v2.RandomErasing(p=erasing_p, scale=(0.02, 0.4), ratio=(0.3, 3.33), value=0),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


def normalise_decoded(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) images, already resized -> float32, normalised as the test transform
    normalises (ToDtype with scale, then ImageNet Normalize), on the images' device."""
    x = v2.functional.to_dtype(images, torch.float32, scale=True)
    return v2.functional.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))


def build_test_transform(height: int, width: int) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> float32 tensor (3, height, width): resize and normalise, nothing random."""
    _check_size(height, width)
    return v2.Compose(
        [
            v2.Resize((height, width), interpolation=InterpolationMode.BILINEAR, antialias=True),
            *_to_normalised_tensor(),
            v2.ToPureTensor(),
        ]
    )
