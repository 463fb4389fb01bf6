"""Batched feature extraction: the inference embedding (post-BN feature) of every image."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from reid.data.transforms import normalise_decoded
from reid.engine.runtime import autocast_dtype


def embedding(model: nn.Module, images: torch.Tensor, *, flip: bool, normalize: bool
              ) -> torch.Tensor:
    """(N, 3, H, W) preprocessed images -> (N, D) float32: the BNNeck output (`bn_feat`, as
    in BoT), with `flip` averaged with the horizontal mirror's, with `normalize` L2-normalised.

    The one definition of the embedding: `extract_features` and the ONNX graph use it."""
    feats = model(images).bn_feat.float()
    if flip:
        feats = (feats + model(torch.flip(images, dims=[3])).bn_feat.float()) / 2
    if normalize:
        feats = torch.nn.functional.normalize(feats, dim=1)
    return feats


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    flip: bool = True,
    normalize: bool = True,
    amp: bool = True,
    desc: str = "features",
) -> np.ndarray:
    """Embed every image of `loader` in order; returns float32 (N, D).

    The rows are `embedding`'s, batched, under autocast when `amp` (normalised in fp32).
    """
    batches = (images.to(device, non_blocking=True) for images, _ in
               tqdm(loader, desc=desc, unit="batch", leave=False, disable=None))
    chunks = [f.cpu() for f in _features_per_batch(model, batches, device=device, flip=flip,
                                                normalize=normalize, amp=amp)]
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32)


@torch.no_grad()
def extract_decoded(
    model: nn.Module,
    images: torch.Tensor,
    *,
    device: torch.device,
    batch_size: int = 128,
    flip: bool = True,
    normalize: bool = True,
    amp: bool = True,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 (N, 3, H, W) images decoded at the input size (`reid.data.batches.decode_images`)
    -> (N, D) float32 embeddings on `device`.

    The rows `extract_features` gives for the same images through the test transform, without
    a DataLoader: evaluation during training embeds one set every few epochs, so the images are
    decoded once and each evaluation only runs the network (on the GPU when `device` is one).
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    batches = (normalise_decoded(b.to(device, non_blocking=True)).contiguous(
        memory_format=memory_format) for b in images.split(batch_size))
    return torch.cat(list(_features_per_batch(model, batches, device=device, flip=flip,
                                         normalize=normalize, amp=amp)))


def _features_per_batch(model: nn.Module, batches: Iterable[torch.Tensor], *, device: torch.device,
                   flip: bool, normalize: bool, amp: bool) -> Iterator[torch.Tensor]:
    """(B, 3, H, W) float batches on `device` -> (B, D) float32 `embedding`s, one per batch:
    the network under autocast when `amp`, the L2 normalisation in fp32."""
    model.eval().to(device)
    amp_dtype = autocast_dtype(device, amp)
    for images in batches:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            feats = embedding(model, images, flip=flip, normalize=False)
        yield torch.nn.functional.normalize(feats, dim=1) if normalize else feats
