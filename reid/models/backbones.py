"""Backbones (feature maps with last stride 1), ImageNet init from local files, `build_model`.

Every backbone maps (B, 3, H, W) to (B, D, H/16, W/16) with the default last stride 1 (BoT:
a larger final map for the same parameters) and exposes `num_features` = D. Nothing is ever
downloaded: timm models are built with `pretrained=False` and ImageNet weights come from a local
file through `load_pretrained`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import timm
import torch
from torch import nn

from reid.errors import InputError
from reid.models.head import ReidModel
from reid.models.resnet_ibn import resnet50_ibn_a
from reid.params import BACKBONES

logger = logging.getLogger(__name__)

# Keys of an ImageNet classifier in timm / torchvision / IBN-Net checkpoints; not part of a
# feature extractor.
CLASSIFIER_PREFIXES: tuple[str, ...] = ("fc.", "classifier.")
# Wrappers that training scripts put around a state dict.
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model")
MAX_LISTED_KEYS = 30


def _check_last_stride(last_stride: int) -> None:
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")


def set_resnet_last_stride(model: nn.Module, last_stride: int) -> None:
    """Set the stride of the first block of `layer4` (3x3 conv and shortcut); no dilation."""
    _check_last_stride(last_stride)
    block = model.layer4[0]
    block.conv2.stride = (last_stride, last_stride)
    block.downsample[0].stride = (last_stride, last_stride)


def set_efficientnet_last_stride(model: nn.Module, last_stride: int) -> None:
    """Set the stride of the last downsampling stage of a timm EfficientNet to `last_stride`.

    The stage is the last one whose first block holds a strided conv; its strided convs get the
    new stride (timm's 'same' padding is computed from the stride at run time, and a symmetric
    static padding k // 2 keeps the size at stride 1).
    """
    _check_last_stride(last_stride)
    for stage in reversed(model.blocks):
        strided = [
            conv
            for conv in stage[0].modules()
            if isinstance(conv, nn.Conv2d) and max(conv.stride) > 1
        ]
        if strided:
            for conv in strided:
                conv.stride = (last_stride, last_stride)
            return
    raise ValueError(f"{type(model).__name__} has no stage that starts with a strided conv")


def zero_init_residual_branches(model: nn.Module) -> None:
    """Zero the scale of the last BatchNorm of every residual block of a timm EfficientNet.

    Each residual block then starts as the identity, so the untrained network is a shallow
    one that deepens as it learns (Goyal et al., "Accurate, Large Minibatch SGD", 2017; timm's
    ResNets do this by default, its EfficientNets do not). From scratch on the default data
    (padding 3), EfficientNet-v2-S without it kept its identity loss near chance for most of a
    12-epoch run; with it, the loss falls from the first epochs.
    ImageNet weights loaded later replace these scales.
    """
    for stage in model.blocks:
        for block in stage:
            if getattr(block, "has_skip", False):
                norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
                nn.init.zeros_(norms[-1].weight)


def _resnet50(last_stride: int, effnet_variant: str) -> nn.Module:
    model = timm.create_model("resnet50", pretrained=False, num_classes=0, global_pool="")
    set_resnet_last_stride(model, last_stride)
    return model


def _resnet50_ibn_a(last_stride: int, effnet_variant: str) -> nn.Module:
    model = resnet50_ibn_a()
    set_resnet_last_stride(model, last_stride)
    return model


def _effnetv2(last_stride: int, effnet_variant: str) -> nn.Module:
    if "efficientnetv2" not in effnet_variant or not timm.is_model(effnet_variant):
        raise InputError(f"effnet_variant {effnet_variant!r} is not a timm EfficientNet-v2 model")
    model = timm.create_model(effnet_variant, pretrained=False, num_classes=0, global_pool="")
    set_efficientnet_last_stride(model, last_stride)
    zero_init_residual_branches(model)
    return model


_CONSTRUCTORS: dict[str, Callable[[int, str], nn.Module]] = {
    "resnet50": _resnet50,
    "resnet50_ibn_a": _resnet50_ibn_a,
    "effnetv2": _effnetv2,
}
assert tuple(_CONSTRUCTORS) == BACKBONES


def build_backbone(
    name: str, *, effnet_variant: str = "tf_efficientnetv2_s", last_stride: int = 1
) -> nn.Module:
    """A randomly initialised feature extractor: (B, 3, H, W) -> (B, num_features, h, w)."""
    if name not in _CONSTRUCTORS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return _CONSTRUCTORS[name](last_stride, effnet_variant)


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: str | Path | None = None,
    effnet_variant: str = "tf_efficientnetv2_s",
    last_stride: int = 1,
) -> ReidModel:
    """The strong-baseline ReID model on backbone `name` (one of BACKBONES).

    `pretrained`: a local ImageNet checkpoint for the backbone (see `load_pretrained`); None
    keeps the random init.
    """
    backbone = build_backbone(name, effnet_variant=effnet_variant, last_stride=last_stride)
    if pretrained is not None:
        load_pretrained(backbone, pretrained)
    return ReidModel(backbone, num_classes)


def _read_checkpoint(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(f"cannot read pretrained weights from {path}: {err}") from err


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, out of a {"state_dict": ...} / {"model": ...} wrapper."""
    while isinstance(obj, Mapping):
        wrapper = next((key for key in WRAPPER_KEYS if isinstance(obj.get(key), Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise InputError(
            f"{path} is not a state dict: expected a non-empty mapping of names to tensors "
            f"(optionally under one of the keys {WRAPPER_KEYS}), got {type(obj).__name__}"
        )
    state = dict(obj)
    if all(key.startswith("module.") for key in state):  # saved from DataParallel
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    more = len(keys) - MAX_LISTED_KEYS
    return f"{shown}, ... and {more} more" if more > 0 else shown


def load_pretrained(backbone: nn.Module, path: str | Path) -> None:
    """Initialise `backbone` from a local ImageNet checkpoint (.pth / .pt / .safetensors).

    The ImageNet classifier (`fc.*`, `classifier.*`) is ignored, as are absent BatchNorm
    `num_batches_tracked` counters (old checkpoints lack them). Any other backbone key that is
    missing, unexpected or of the wrong shape is an error that names the file and lists the keys,
    and then nothing is loaded.
    """
    path = Path(path)
    state = _unwrap_state_dict(_read_checkpoint(path), path)
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    own = backbone.state_dict()

    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    problems = [
        f"{label} ({len(keys)}): {_listed(keys)}"
        for label, keys in (
            ("missing from the file", missing),
            ("unexpected in the file", unexpected),
            ("shape mismatch", mismatched),
        )
        if keys
    ]
    if problems:
        raise InputError(
            f"pretrained weights {path} do not fit {type(backbone).__name__}; keys that did not "
            f"load: " + "; ".join(problems)
        )
    backbone.load_state_dict(state, strict=False)
    logger.info("loaded %d pretrained tensors from %s", len(state), path)
