"""Models: output contract, last stride 1, BNNeck, IBN-a structure, local ImageNet init."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torch import nn

from reid.models import (
    BACKBONES,
    IBN,
    ReidModel,
    ReidOutput,
    build_model,
    load_pretrained,
    resnet50_ibn_a,
)
from reid.models.backbones import build_backbone

NUM_CLASSES = 5
FEATURE_DIMS = {"resnet50": 2048, "resnet50_ibn_a": 2048, "effnetv2": 1280}
assert set(FEATURE_DIMS) == set(BACKBONES)


@pytest.fixture(scope="module", params=BACKBONES)
def named_model(request: pytest.FixtureRequest) -> tuple[str, ReidModel]:
    """Each backbone's model, built once per module (building and running them is slow on CPU)."""
    torch.manual_seed(0)
    return request.param, build_model(request.param, NUM_CLASSES)


@pytest.fixture
def model(named_model: tuple[str, ReidModel]) -> ReidModel:
    return named_model[1]


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0))


# --- output contract -------------------------------------------------------------------------


def test_train_forward_shapes_and_frozen_bnneck_bias(
    named_model: tuple[str, ReidModel], images: torch.Tensor
) -> None:
    name, model = named_model
    dim = FEATURE_DIMS[name]
    assert model.feature_dim == model.backbone.num_features == dim
    neck = model.neck
    assert isinstance(neck, nn.BatchNorm1d)
    assert not neck.bias.requires_grad and neck.weight.requires_grad
    assert torch.all(neck.bias == 0) and torch.all(neck.weight == 1)
    assert model.classifier.bias is None
    assert 0.0008 < model.classifier.weight.std().item() < 0.0012  # normal(0, 0.001) init

    model.train()
    model.zero_grad()
    out = model(images)
    assert isinstance(out, ReidOutput)
    assert out.feat.shape == out.bn_feat.shape == (2, dim)
    assert out.logits.shape == (2, NUM_CLASSES)
    (out.logits.sum() + out.feat.sum()).backward()
    assert neck.bias.grad is None and neck.weight.grad is not None


def test_eval_returns_the_same_named_tuple(model: ReidModel, images: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert isinstance(out, ReidOutput)
    assert out.logits.shape == (2, NUM_CLASSES)
    # eval BNNeck = (feat - running_mean) / sqrt(running_var + eps) * weight, bias 0
    neck = model.neck
    expected = (out.feat - neck.running_mean) / (neck.running_var + neck.eps).sqrt()
    torch.testing.assert_close(out.bn_feat, expected * neck.weight)
    torch.testing.assert_close(out.logits, out.bn_feat @ model.classifier.weight.T)


def test_last_stride_one_gives_a_sixteenth_of_the_input(model: ReidModel) -> None:
    model.eval()
    with torch.no_grad():
        assert model.backbone(torch.zeros(1, 3, 256, 128)).shape[-2:] == (16, 8)


@pytest.mark.parametrize("name", ["resnet50", "effnetv2"])
def test_last_stride_two_keeps_the_downsampling(name: str) -> None:
    backbone = build_backbone(name, last_stride=2).eval()
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 64, 32)).shape[-2:] == (2, 1)


@pytest.mark.parametrize("variant", ["efficientnetv2_rw_t", "tf_efficientnetv2_b0"])
def test_other_effnet_variants_get_last_stride_one(variant: str) -> None:
    # static ("rw") and TensorFlow "same" padding both keep a 1/16 map at stride 1
    backbone = build_backbone("effnetv2", effnet_variant=variant).eval()
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 64, 32)).shape[-2:] == (4, 2)


def _residual_blocks(name: str, backbone: nn.Module) -> list[nn.Module]:
    if name == "effnetv2":
        return [b for stage in backbone.blocks for b in stage if b.has_skip]
    layers = [backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]
    return [b for layer in layers for b in layer if b.downsample is None]


@pytest.mark.parametrize("name", BACKBONES)
def test_untrained_residual_blocks_start_as_the_identity(name: str) -> None:
    # the last norm of every residual branch starts at scale 0 (Goyal et al. 2017)
    backbone = build_backbone(name).eval()
    blocks = _residual_blocks(name, backbone)
    assert len(blocks) >= 10
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for block in blocks:
            norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
            assert torch.all(norms[-1].weight == 0)
            assert len(norms) == 1 or torch.all(norms[0].weight != 0)
            channels = next(m for m in block.modules() if isinstance(m, nn.Conv2d)).in_channels
            x = torch.rand(2, channels, 8, 4, generator=gen)  # >= 0: a ResNet block ends in ReLU
            torch.testing.assert_close(block(x), x)


def test_unknown_effnet_variant_raises() -> None:
    with pytest.raises(ValueError, match="'resnet18' is not a timm EfficientNet-v2"):
        build_backbone("effnetv2", effnet_variant="resnet18")


def test_unknown_backbone_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="resnet50, resnet50_ibn_a, effnetv2") as info:
        build_model("vit", NUM_CLASSES)
    assert "'vit'" in str(info.value)


def test_invalid_last_stride_raises() -> None:
    with pytest.raises(ValueError, match="last_stride"):
        build_backbone("resnet50", last_stride=3)


# --- IBN-a -----------------------------------------------------------------------------------


def test_ibn_a_in_layers_1_to_3_on_half_the_channels() -> None:
    backbone = resnet50_ibn_a()
    planes = {"layer1": 64, "layer2": 128, "layer3": 256}
    for layer, width in planes.items():
        for block in getattr(backbone, layer):
            assert isinstance(block.bn1, IBN)
            assert block.bn1.IN.num_features == width // 2 and block.bn1.IN.affine
            assert block.bn1.BN.num_features == width - width // 2
            assert isinstance(block.bn2, nn.BatchNorm2d) and isinstance(block.bn3, nn.BatchNorm2d)
    for block in backbone.layer4:
        assert type(block.bn1) is nn.BatchNorm2d
    assert type(backbone.bn1) is nn.BatchNorm2d
    instance_norms = [m for m in backbone.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(instance_norms) == 3 + 4 + 6
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in backbone.layer4.modules())


def test_ibn_forward_is_instance_norm_then_batch_norm() -> None:
    ibn = IBN(6).train()
    with torch.no_grad():
        ibn.IN.weight.copy_(torch.tensor([2.0, 3.0, 4.0]))
        ibn.BN.bias.copy_(torch.tensor([0.5, -0.5, 1.0]))
    x = torch.randn(4, 6, 5, 3, generator=torch.Generator().manual_seed(1))
    expected = torch.cat(
        [
            F.instance_norm(x[:, :3], weight=ibn.IN.weight, bias=ibn.IN.bias),
            F.batch_norm(x[:, 3:], None, None, ibn.BN.weight, ibn.BN.bias, training=True),
        ],
        dim=1,
    )
    torch.testing.assert_close(ibn(x), expected)


# --- loading local ImageNet checkpoints ------------------------------------------------------


def public_ibn_a_state_dict() -> dict[str, torch.Tensor]:
    """Random tensors under the key names and shapes of the public IBN-Net resnet50_ibn_a file."""
    gen = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}

    def conv(key: str, out_ch: int, in_ch: int, k: int) -> None:
        state[f"{key}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=gen)

    def bn(key: str, ch: int) -> None:
        for name in ("weight", "bias", "running_mean"):
            state[f"{key}.{name}"] = torch.randn(ch, generator=gen)
        state[f"{key}.running_var"] = torch.rand(ch, generator=gen) + 0.5
        state[f"{key}.num_batches_tracked"] = torch.tensor(7)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for layer, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for b in range(blocks):
            key = f"layer{layer}.{b}"
            conv(f"{key}.conv1", planes, inplanes, 1)
            if layer <= 3:
                half = int(planes * 0.5)
                state[f"{key}.bn1.IN.weight"] = torch.randn(half, generator=gen)
                state[f"{key}.bn1.IN.bias"] = torch.randn(half, generator=gen)
                bn(f"{key}.bn1.BN", planes - half)
            else:
                bn(f"{key}.bn1", planes)
            conv(f"{key}.conv2", planes, planes, 3)
            bn(f"{key}.bn2", planes)
            conv(f"{key}.conv3", planes * 4, planes, 1)
            bn(f"{key}.bn3", planes * 4)
            if b == 0:
                conv(f"{key}.downsample.0", planes * 4, inplanes, 1)
                bn(f"{key}.downsample.1", planes * 4)
            inplanes = planes * 4
    state["fc.weight"] = torch.randn(1000, 2048, generator=gen)
    state["fc.bias"] = torch.randn(1000, generator=gen)
    return state


@pytest.fixture(scope="module")
def ibn_checkpoint() -> dict[str, torch.Tensor]:
    return public_ibn_a_state_dict()


def test_ibn_a_keys_are_those_of_the_public_checkpoint(ibn_checkpoint: dict) -> None:
    own = resnet50_ibn_a().state_dict()
    public = {k: v.shape for k, v in ibn_checkpoint.items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in own.items()} == public


def test_load_public_ibn_a_checkpoint(tmp_path: Path, ibn_checkpoint: dict) -> None:
    path = tmp_path / "resnet50_ibn_a.pth"
    torch.save({"state_dict": ibn_checkpoint, "epoch": 100}, path)
    model = build_model("resnet50_ibn_a", NUM_CLASSES, pretrained=path)
    own = model.backbone.state_dict()
    for key, value in ibn_checkpoint.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(own[key], value, msg=key)
    assert not any(k.startswith("fc.") for k in own)


def test_truncated_checkpoint_lists_the_missing_keys(tmp_path: Path, ibn_checkpoint: dict) -> None:
    truncated = dict(ibn_checkpoint)
    del truncated["layer1.0.bn1.IN.weight"], truncated["layer4.2.conv3.weight"]
    path = tmp_path / "truncated.pth"
    torch.save(truncated, path)
    backbone = resnet50_ibn_a()
    before = backbone.conv1.weight.clone()
    with pytest.raises(ValueError, match="missing from the file \\(2\\)") as info:
        load_pretrained(backbone, path)
    message = str(info.value)
    assert str(path) in message
    assert "layer1.0.bn1.IN.weight" in message and "layer4.2.conv3.weight" in message
    assert torch.equal(backbone.conv1.weight, before)  # nothing loaded


def test_plain_resnet50_checkpoint_does_not_fit_ibn_a(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    with pytest.raises(ValueError, match="unexpected in the file") as info:
        load_pretrained(resnet50_ibn_a(), path)
    assert "layer1.0.bn1.running_mean" in str(info.value)


def test_torchvision_resnet50_checkpoint_loads_into_resnet50(tmp_path: Path) -> None:
    state = torchvision.models.resnet50().state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # old file
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(state, path)
    model = build_model("resnet50", NUM_CLASSES, pretrained=path)
    torch.testing.assert_close(
        model.backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"]
    )
    assert model.backbone.layer4[0].conv2.stride == (1, 1)


def test_timm_efficientnetv2_checkpoint_loads_without_classifier(tmp_path: Path) -> None:
    state = timm.create_model("tf_efficientnetv2_s", pretrained=False).state_dict()
    assert "classifier.weight" in state
    path = tmp_path / "effnetv2.safetensors"
    save_file(state, str(path))
    model = build_model("effnetv2", NUM_CLASSES, pretrained=path)
    torch.testing.assert_close(model.backbone.conv_head.weight, state["conv_head.weight"])
    # the checkpoint's norm scales replace the zero init of the residual branches
    first_block_norm = model.backbone.blocks[0][0].bn1.weight
    torch.testing.assert_close(first_block_norm, state["blocks.0.0.bn1.weight"])


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)


def tiny_state(gen_seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(gen_seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in Tiny().state_dict().items()}


def test_model_wrapper_and_dataparallel_prefix_are_unwrapped(tmp_path: Path) -> None:
    state = tiny_state()
    path = tmp_path / "wrapped.pt"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "step": 3}, path)
    tiny = Tiny()
    load_pretrained(tiny, path)
    torch.testing.assert_close(tiny.conv.weight, state["conv.weight"])


def test_shape_mismatch_is_listed(tmp_path: Path) -> None:
    state = tiny_state()
    state["conv.weight"] = torch.zeros(4, 3, 5, 5)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"conv.weight \(file \(4, 3, 5, 5\), model \(4, 3, 3, 3\)"
    ):
        load_pretrained(Tiny(), path)


def test_missing_file_and_non_state_dicts_raise_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_pretrained(Tiny(), missing)
    a_list = tmp_path / "list.pth"
    torch.save([1, 2, 3], a_list)
    with pytest.raises(ValueError, match="list.pth is not a state dict"):
        load_pretrained(Tiny(), a_list)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot read pretrained weights from .*garbage.pth"):
        load_pretrained(Tiny(), garbage)
