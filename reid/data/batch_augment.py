"""The training augmentations of `build_train_transform`, batched on the device.

The per-image path (PIL in DataLoader workers) decodes and augments every image every epoch;
on a GPU that input pipeline, not the network, limits training. Here the images are decoded
and resized once (uint8, (N, 3, H, W)) and each batch is flipped, padded + cropped, normalised
and randomly erased in a few tensor operations on the device that trains.

The random parameters follow torchvision's transforms draw for draw in distribution:
RandomHorizontalFlip(p), Pad(padding) + RandomCrop (offset uniform in [0, 2 * padding]) and
RandomErasing(p, scale=(0.02, 0.4), ratio=(0.3, 3.33), value=0) with its 10 attempts
(Zhong et al., "Random Erasing Data Augmentation", AAAI 2020). They are drawn from torch's
global CPU generator, so a seeded run is reproducible and a resumed run continues the stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reid.data.transforms import IMAGENET_MEAN, IMAGENET_STD

ERASING_SCALE = (0.02, 0.4)
ERASING_RATIO = (0.3, 3.33)
ERASING_ATTEMPTS = 10


@dataclass(frozen=True)
class AugmentParams:
    """One batch's random draws, all (B,) int64 or bool tensors.

    flip: mirror the image; top, left: crop offset in the padded image; erase: erase a box;
    box_top, box_left, box_height, box_width: the erased box (ignored where erase is False).
    """

    flip: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    erase: torch.Tensor
    box_top: torch.Tensor
    box_left: torch.Tensor
    box_height: torch.Tensor
    box_width: torch.Tensor

    def to(self, device: torch.device) -> AugmentParams:
        return AugmentParams(
            *(getattr(self, f).to(device, non_blocking=True) for f in self.__dataclass_fields__)
        )


class BatchAugment:
    """uint8 images (B, 3, H, W) -> augmented, normalised float32 (B, 3, H, W), channels last.

    `sample` draws the parameters, `apply` is a deterministic function of images and
    parameters; calling the object does both. H x W must be the size the images were decoded
    at (the per-image path resizes first, then augments at that size).
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        flip_p: float = 0.5,
        padding: int = 10,
        erasing_p: float = 0.5,
    ) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got height {height}, width {width}")
        for name, p in (("flip_p", flip_p), ("erasing_p", erasing_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if padding < 0:
            raise ValueError(f"padding must be non-negative, got {padding}")
        self.height = height
        self.width = width
        self.flip_p = flip_p
        self.padding = padding
        self.erasing_p = erasing_p
        self._mean_std: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def sample(self, batch: int) -> AugmentParams:
        """Draw the parameters of `batch` images on the CPU from torch's global generator."""
        h, w, pad = self.height, self.width, self.padding
        flip = torch.rand(batch) < self.flip_p
        top = torch.randint(0, 2 * pad + 1, (batch,))
        left = torch.randint(0, 2 * pad + 1, (batch,))
        erase = torch.rand(batch) < self.erasing_p

        # RandomErasing: up to 10 attempts of (area, aspect); the first box that fits wins, and
        # an image whose 10 attempts all fail is left as it is.
        area = h * w * torch.empty(batch, ERASING_ATTEMPTS, dtype=torch.float64).uniform_(
            *ERASING_SCALE
        )
        log_ratio = torch.empty(batch, ERASING_ATTEMPTS, dtype=torch.float64).uniform_(
            math.log(ERASING_RATIO[0]), math.log(ERASING_RATIO[1])
        )
        aspect = log_ratio.exp()
        box_h = (area * aspect).sqrt().round().long()  # round half to even, as Python's round
        box_w = (area / aspect).sqrt().round().long()
        fits = (box_h < h) & (box_w < w)
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
        erase &= fits.any(dim=1)
        box_h = box_h.gather(1, first).squeeze(1)
        box_w = box_w.gather(1, first).squeeze(1)
        # randint(0, n) for a per-image n: floor(u * n), u uniform in [0, 1).
        box_top = (torch.rand(batch, dtype=torch.float64) * (h - box_h + 1).clamp(min=1)).long()
        box_left = (torch.rand(batch, dtype=torch.float64) * (w - box_w + 1).clamp(min=1)).long()
        return AugmentParams(flip, top, left, erase, box_top, box_left, box_h, box_w)

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment uint8 images (B, 3, H, W) on their device with the given parameters."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (B, 3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        b, _, h, w = images.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f"images are {h}x{w}, the augmentation expects "
                             f"{self.height}x{self.width}")
        device = images.device
        p = params.to(device)
        x = torch.where(p.flip[:, None, None, None], images.flip(-1), images)
        pad = self.padding
        if pad:
            x = F.pad(x, (pad, pad, pad, pad))  # zeros, as Pad(fill=0)
        rows = p.top[:, None] + torch.arange(h, device=device)  # (B, H)
        cols = p.left[:, None] + torch.arange(w, device=device)  # (B, W)
        batch_index = torch.arange(b, device=device)[:, None, None]
        # Advanced indexing around the channel slice gives (B, H, W, 3): permuted back, the
        # result is already in channels-last memory order.
        x = x[batch_index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

        if device not in self._mean_std:  # once per device, not a host-to-device copy per batch
            self._mean_std[device] = tuple(
                torch.tensor(v, device=device).view(1, 3, 1, 1)
                for v in (IMAGENET_MEAN, IMAGENET_STD)
            )
        mean, std = self._mean_std[device]
        x = x.float().mul_(1.0 / 255).sub_(mean).div_(std)  # as ToDtype(scale) + Normalize

        r = torch.arange(h, device=device)[None, :]
        c = torch.arange(w, device=device)[None, :]
        in_rows = (r >= p.box_top[:, None]) & (r < (p.box_top + p.box_height)[:, None])
        in_cols = (c >= p.box_left[:, None]) & (c < (p.box_left + p.box_width)[:, None])
        box = in_rows[:, :, None] & in_cols[:, None, :] & p.erase[:, None, None]  # (B, H, W)
        return x.masked_fill_(box[:, None], 0.0)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply(images, self.sample(images.shape[0]))
