"""ReID models: backbones with last stride 1, the BNNeck head and ImageNet init from local files."""

from reid.models.backbones import BACKBONES, build_backbone, build_model, load_pretrained
from reid.models.head import BNNeck, ReidModel, ReidOutput
from reid.models.resnet_ibn import IBN, resnet50_ibn_a

__all__ = [
    "BACKBONES",
    "IBN",
    "BNNeck",
    "ReidModel",
    "ReidOutput",
    "build_backbone",
    "build_model",
    "load_pretrained",
    "resnet50_ibn_a",
]
