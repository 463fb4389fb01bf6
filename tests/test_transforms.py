"""Train / test transforms: shapes, normalisation, flip, pad-and-crop translation, erasing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_test_transform,
    build_train_transform,
)

H, W = 64, 32


def normalised(rgb: tuple[int, int, int]) -> torch.Tensor:
    """(3,) the normalised value of one uint8 colour."""
    return (torch.tensor(rgb) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)


def constant_image(rgb: tuple[int, int, int], height: int = H, width: int = W) -> Image.Image:
    return Image.new("RGB", (width, height), rgb)


def position_image() -> Image.Image:
    """R encodes the row (3 * y), G the column (7 * x), B = 255 marks real (not padded) pixels."""
    y, x = np.mgrid[0:H, 0:W]
    array = np.stack([3 * y, 7 * x, np.full_like(y, 255)], axis=-1).astype(np.uint8)
    return Image.fromarray(array)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: (3, H, W) -> (H, W, 3) uint8."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (tensor * std + mean).mul(255).round().byte().permute(1, 2, 0).numpy()


def test_output_shape_dtype_and_type() -> None:
    image = constant_image((10, 200, 30), height=100, width=45)
    for transform in (build_train_transform(H, W), build_test_transform(H, W)):
        out = transform(image)
        assert type(out) is torch.Tensor  # plain tensor, not a tv_tensors.Image
        assert out.shape == (3, H, W) and out.dtype == torch.float32


def test_test_transform_normalises_with_imagenet_statistics() -> None:
    out = build_test_transform(H, W)(constant_image((255, 0, 128), height=90, width=40))
    expected = normalised((255, 0, 128))[:, None, None].expand(3, H, W)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # the ImageNet mean colour maps to (about) zero
    mean_rgb = tuple(round(255 * m) for m in IMAGENET_MEAN)
    out = build_test_transform(H, W)(constant_image(mean_rgb))
    assert out.abs().max() < 0.01


def test_train_without_augmentation_equals_test_transform() -> None:
    image = position_image()
    train = build_train_transform(H, W, flip_p=0.0, padding=0, erasing_p=0.0)
    torch.testing.assert_close(train(image), build_test_transform(H, W)(image))


def test_flip_mirrors_the_image() -> None:
    image = position_image()
    train = build_train_transform(H, W, flip_p=1.0, padding=0, erasing_p=0.0)
    torch.testing.assert_close(train(image), build_test_transform(H, W)(image).flip(-1))


def test_pad_and_crop_is_a_translation_of_at_most_padding() -> None:
    train = build_train_transform(H, W, flip_p=0.0, padding=10, erasing_p=0.0)
    torch.manual_seed(0)
    shifts = set()
    for _ in range(8):
        out = to_uint8(train(position_image())).astype(int)
        real = out[..., 2] == 255
        padded = ~real
        assert np.all(out[padded] == 0)  # padding is black
        rows, cols = np.nonzero(real)
        dy = set((out[rows, cols, 0] // 3 - rows).tolist())
        dx = set((out[rows, cols, 1] // 7 - cols).tolist())
        assert len(dy) == len(dx) == 1  # one rigid shift for the whole crop
        (sy,), (sx,) = dy, dx
        assert abs(sy) <= 10 and abs(sx) <= 10
        shifts.add((sy, sx))
    assert len(shifts) > 1


def test_erasing_fills_a_rectangle_with_zero() -> None:
    white = constant_image((255, 255, 255))
    train = build_train_transform(H, W, flip_p=0.0, padding=0, erasing_p=1.0)
    torch.manual_seed(0)
    erased_any = False
    for _ in range(5):
        out = train(white)
        erased = (out == 0).all(dim=0)
        assert torch.equal(erased, (out == 0).any(dim=0))  # all channels or none
        if not erased.any():
            continue
        erased_any = True
        rows, cols = torch.nonzero(erased, as_tuple=True)
        box = erased[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all()  # a filled rectangle
        assert 0.02 * H * W - 1 <= erased.sum() <= 0.4 * H * W + 1
        kept = out[:, ~erased]
        torch.testing.assert_close(kept, normalised((255,) * 3)[:, None].expand_as(kept))
    assert erased_any


def test_erasing_p0_never_erases() -> None:
    train = build_train_transform(H, W, flip_p=0.0, padding=0, erasing_p=0.0)
    assert (train(constant_image((255, 255, 255))) != 0).all()


def test_invalid_size_raises() -> None:
    with pytest.raises(ValueError, match="height 0"):
        build_test_transform(0, 32)
