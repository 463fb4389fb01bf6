"""Centre loss: pulls each feature towards a learnt centre of its identity.

Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition", ECCV 2016;
used on the pre-BNNeck feature by the BoT strong baseline (Luo et al., CVPRW 2019).
"""

from __future__ import annotations

import torch
from torch import nn


class CenterLoss(nn.Module):
    """loss = sum_i ||x_i - c_{y_i}||^2 / B, each term clamped to [1e-12, 1e12] as the BoT code.

    `centers` (C, D) is a Parameter, initialised N(0, 1); the engine updates it with its own SGD
    optimiser. feat (B, D), targets (B,) -> scalar.
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        if num_classes <= 0 or feat_dim <= 0:
            raise ValueError(
                f"num_classes and feat_dim must be positive, got {num_classes} and {feat_dim}"
            )
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, feat: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if feat.ndim != 2 or feat.shape[1] != self.feat_dim or targets.shape != feat.shape[:1]:
            raise ValueError(
                f"expected feat (B, {self.feat_dim}) and targets (B,), got "
                f"{tuple(feat.shape)} and {tuple(targets.shape)}"
            )
        sq_dist = (feat.float() - self.centers[targets]).pow(2).sum(dim=1)
        return sq_dist.clamp(min=1e-12, max=1e12).sum() / feat.shape[0]
