"""The strong-baseline loss: label-smoothed ID loss + batch-hard triplet + centre loss.

Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019:
the ID loss acts on the logits after the BNNeck, triplet and centre losses on the feature before
it. `ReidLoss` is the one place where the terms are weighted and summed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from reid.losses.center import CenterLoss
from reid.losses.cross_entropy import CrossEntropyLabelSmooth
from reid.losses.triplet import TripletLoss, euclidean_distances

if TYPE_CHECKING:
    from reid.models.head import ReidOutput

__all__ = [
    "CenterLoss",
    "CrossEntropyLabelSmooth",
    "LossTerms",
    "ReidLoss",
    "TripletLoss",
    "euclidean_distances",
]


class LossTerms(NamedTuple):
    """Scalar tensors: the weighted total (to back-propagate) and the unweighted terms (to log)."""

    total: torch.Tensor
    ce: torch.Tensor
    triplet: torch.Tensor
    center: torch.Tensor


class ReidLoss(nn.Module):
    """total = w_ce * CE(logits) + w_triplet * triplet(feat) + w_center * center(feat).

    `center` is the CenterLoss module; its centres get their own SGD optimiser in the engine (lr
    0.5, gradient rescaled by 1 / center_weight, as BoT). A term whose weight is 0 is not computed
    and reads 0, so a softmax-only run does not need P x K batches.
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        epsilon: float = 0.1,
        margin: float = 0.3,
        center_weight: float = 5e-4,
        ce_weight: float = 1.0,
        triplet_weight: float = 1.0,
    ) -> None:
        super().__init__()
        for name, weight in (
            ("center_weight", center_weight),
            ("ce_weight", ce_weight),
            ("triplet_weight", triplet_weight),
        ):
            if weight < 0:
                raise ValueError(f"{name} must be non-negative, got {weight}")
        self.ce = CrossEntropyLabelSmooth(num_classes, epsilon)
        self.triplet = TripletLoss(margin)
        self.center = CenterLoss(num_classes, feat_dim)
        self.ce_weight = ce_weight
        self.triplet_weight = triplet_weight
        self.center_weight = center_weight

    def forward(self, output: ReidOutput, targets: torch.Tensor) -> LossTerms:
        """output: the model's ReidOutput for a batch; targets (B,) class indices."""
        zero = output.feat.new_zeros((), dtype=torch.float32)
        ce = self.ce(output.logits, targets) if self.ce_weight else zero
        triplet = self.triplet(output.feat, targets) if self.triplet_weight else zero
        center = self.center(output.feat, targets) if self.center_weight else zero
        total = self.ce_weight * ce + self.triplet_weight * triplet + self.center_weight * center
        return LossTerms(total=total, ce=ce, triplet=triplet, center=center)
