"""Identity (softmax) loss with label smoothing.

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016; used by
Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019
to keep the ID classifier from over-fitting the training identities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLabelSmooth(nn.Module):
    """Cross entropy against smoothed targets q = (1 - epsilon) * onehot(y) + epsilon / C.

    loss = mean_i sum_c -q_ic log p_ic, with p = softmax(logits). logits (B, C), targets (B,).
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.num_classes = num_classes
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have shape (B, {self.num_classes}), got {tuple(logits.shape)}"
            )
        # PyTorch's label_smoothing uses exactly the target (1 - eps) * y + eps / C.
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.epsilon)
