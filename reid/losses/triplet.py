"""Triplet loss with batch-hard mining.

Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification", arXiv 2017:
for each anchor, its farthest positive and nearest negative in the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from reid.distributed import gather_batch


def euclidean_distances(feat: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances (B, M) between the rows of feat (B, D) and other (M, D) (default feat).

    Clamped at 1e-12 before the square root (as the BoT code) so that zero distances, e.g.
    between copies of one image, give a finite zero gradient instead of NaN.
    """
    other = feat if other is None else other
    sq_norm = feat.pow(2).sum(dim=1)
    other_sq_norm = sq_norm if other is feat else other.pow(2).sum(dim=1)
    sq_dist = sq_norm[:, None] + other_sq_norm[None, :] - 2.0 * feat @ other.T
    return sq_dist.clamp(min=1e-12).sqrt()


class TripletLoss(nn.Module):
    """mean_i relu(max_{p: y_p = y_i, p != i} d(i, p) - min_{n: y_n != y_i} d(i, n) + margin).

    feat (B, D), targets (B,) -> scalar. Masks, no per-anchor loop; identities may have different
    numbers of images in the batch, but every anchor needs another image of its identity and an
    image of another identity (a P x K batch with K >= 2 and P >= 2).

    Under torch.distributed the anchors are this rank's batch and the hardest positive and
    negative are mined in the global batch (all ranks' features, gathered with their gradient),
    so the mean over the ranks equals the single-process loss of the global batch.
    """

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be non-negative, got {margin}")
        self.margin = margin

    def forward(self, feat: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if feat.ndim != 2 or targets.shape != feat.shape[:1]:
            raise ValueError(
                f"expected feat (B, D) and targets (B,), got {tuple(feat.shape)} and "
                f"{tuple(targets.shape)}"
            )
        feat = feat.float()
        all_feat, all_targets, offset = gather_batch(feat, targets)
        dist = euclidean_distances(feat, all_feat)  # (B, global B)
        same = targets[:, None] == all_targets[None, :]
        columns = torch.arange(len(all_targets), device=targets.device)
        anchors = torch.arange(len(targets), device=targets.device) + offset
        positive = same & (columns[None, :] != anchors[:, None])
        negative = ~same
        lonely = int((~positive.any(dim=1)).sum())
        if lonely:
            raise ValueError(
                f"triplet loss: {lonely} of {len(targets)} anchors have no other image of their "
                "identity in the batch; draw batches with the P x K RandomIdentitySampler (K >= 2)"
            )
        if not negative.any(dim=1).all():
            raise ValueError(
                "triplet loss: the batch holds a single identity, so anchors have no negative"
            )
        hardest_positive = dist.masked_fill(~positive, float("-inf")).amax(dim=1)
        hardest_negative = dist.masked_fill(~negative, float("inf")).amin(dim=1)
        return torch.relu(hardest_positive - hardest_negative + self.margin).mean()
