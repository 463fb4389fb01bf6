"""Batched feature extraction: the inference embedding (post-BN feature) of every image."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from reid.engine.runtime import autocast_dtype


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

    The embedding is the BNNeck output (`bn_feat`), as in BoT. With `flip` the features of the
    image and its horizontal mirror are averaged; with `normalize` each row is L2-normalised.
    """
    model.eval().to(device)
    amp_dtype = autocast_dtype(device, amp)
    chunks = []
    for images, _ in tqdm(loader, desc=desc, unit="batch", leave=False, disable=None):
        images = images.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            feats = model(images).bn_feat.float()
            if flip:
                feats = (feats + model(torch.flip(images, dims=[3])).bn_feat.float()) / 2
        if normalize:
            feats = torch.nn.functional.normalize(feats, dim=1)
        chunks.append(feats.cpu())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32)
