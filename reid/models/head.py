"""The ReID head of the strong baseline: global average pooling -> BNNeck -> linear classifier.

Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019:
the triplet and centre losses act on the pooled feature before the BNNeck, the ID loss on the
classifier after it, and retrieval uses the normalised feature after it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class ReidOutput(NamedTuple):
    """What the model returns, in train and eval mode alike."""

    feat: torch.Tensor  # (B, D) pooled feature before the BNNeck (triplet / centre losses)
    bn_feat: torch.Tensor  # (B, D) after the BNNeck (retrieval feature)
    logits: torch.Tensor  # (B, num_classes) identity logits (ID loss)


class BNNeck(nn.BatchNorm1d):
    """BatchNorm1d with a frozen zero bias (BoT): a pure scaling that keeps the feature centred.

    Freezing the shift keeps the normalised feature symmetric about the origin, which suits the
    cosine distance used at retrieval time. (B, D) in and out.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)


class ReidModel(nn.Module):
    """Backbone feature map -> global average pooling -> BNNeck -> bias-free linear classifier.

    `backbone` maps (B, 3, H, W) to a feature map (B, D, h, w) and has `num_features` = D.
    """

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        feature_dim = getattr(backbone, "num_features", None)
        if not isinstance(feature_dim, int) or feature_dim <= 0:
            raise ValueError(
                f"backbone {type(backbone).__name__} has no positive integer `num_features` "
                f"(got {feature_dim!r}); it sets the feature size of the head"
            )
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.backbone = backbone
        self.feature_dim: int = feature_dim
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = BNNeck(feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> ReidOutput:
        """(B, 3, H, W) images -> ReidOutput with (B, D), (B, D) and (B, num_classes)."""
        feature_map = self.backbone(x)
        if feature_map.ndim != 4 or feature_map.shape[1] != self.feature_dim:
            raise ValueError(
                f"backbone returned shape {tuple(feature_map.shape)}, expected "
                f"(B, {self.feature_dim}, h, w)"
            )
        feat = self.pool(feature_map).flatten(1)
        bn_feat = self.neck(feat)
        return ReidOutput(feat=feat, bn_feat=bn_feat, logits=self.classifier(bn_feat))
