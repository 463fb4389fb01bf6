"""ResNet50-IBN-a: ResNet50 with instance + batch normalisation in the bottlenecks of layers 1-3.

Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities via IBN-Net",
ECCV 2018. No library ships it, so it is built here from timm's ResNet50 by replacing the first
norm of each bottleneck in layers 1-3 with `IBN`. timm's bottleneck (stride on the 3x3 conv)
and its parameter names are those of the public IBN-Net code, so the public `resnet50_ibn_a`
ImageNet checkpoint loads as is: `layer1.0.bn1.IN.weight`, `layer1.0.bn1.BN.running_mean`, ...
"""

from __future__ import annotations

import timm
import torch
from torch import nn

IBN_LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3")


class IBN(nn.Module):
    """Instance norm on the first half of the channels, batch norm on the rest (IBN-a).

    Instance norm removes per-image appearance (colour, contrast, style) from the shallow
    features; batch norm on the other half keeps the content information. (B, C, H, W) in and out.
    """

    def __init__(self, planes: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(first.contiguous()), self.BN(rest.contiguous())), dim=1)


def resnet50_ibn_a() -> nn.Module:
    """ResNet50-IBN-a feature extractor: (B, 3, H, W) -> (B, 2048, H/32, W/32).

    No classifier and no pooling (`num_features` = 2048), like timm's `num_classes=0,
    global_pool=''`; the standard last stride 2 (the ReID builder sets it to 1). Random init:
    weights come from `load_pretrained`, never from a download.
    """
    model = timm.create_model("resnet50", pretrained=False, num_classes=0, global_pool="")
    for layer_name in IBN_LAYERS:
        for block in getattr(model, layer_name):
            block.bn1 = IBN(block.bn1.num_features)
    return model
