"""The on-device input pipeline: batched augmentation against torchvision, and the batch sources.

`BatchAugment.apply` must equal torchvision's functional ops image by image for the same draws,
and the draws of the two paths must follow the same distribution: each path augments a
position-coded image thousands of times and the flip, crop offset and erased box are read back
from the pixels and compared with two-sample tests (fixed seeds, so the tests are
deterministic).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms.v2 import functional as TF

from reid.data.batch_augment import BatchAugment
from reid.data.batches import DeviceBatches, LoaderBatches, decode_images
from reid.data.dataset import ImageDataset
from reid.data.sampler import RandomIdentitySampler
from reid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_test_transform,
    build_train_transform,
)

H, W, PAD = 64, 32, 10
SAMPLES = 4000


def reference(image: torch.Tensor, augment: BatchAugment, params, i: int) -> torch.Tensor:
    """torchvision's functional ops on one uint8 image (3, H, W) with draw i of `params`."""
    x = TF.horizontal_flip(image) if params.flip[i] else image
    x = TF.pad(x, [augment.padding])
    x = TF.crop(x, int(params.top[i]), int(params.left[i]), H, W)
    x = TF.to_dtype(x, torch.float32, scale=True)
    x = TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
    if params.erase[i]:
        x = TF.erase(x, int(params.box_top[i]), int(params.box_left[i]),
                     int(params.box_height[i]), int(params.box_width[i]), torch.tensor(0.0))
    return x


def test_apply_equals_torchvision_ops_image_by_image() -> None:
    torch.manual_seed(0)
    augment = BatchAugment(H, W, padding=PAD)
    images = torch.randint(0, 256, (64, 3, H, W), dtype=torch.uint8)
    params = augment.sample(len(images))
    assert params.flip.any() and (~params.flip).any() and params.erase.any()
    out = augment.apply(images, params)
    assert out.shape == (64, 3, H, W) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    for i in range(len(images)):
        assert torch.equal(out[i], reference(images[i], augment, params, i)), i


def test_no_augmentation_equals_the_test_transform(tmp_path) -> None:
    """decode_images + identity augmentation = the per-image test transform, pixel for pixel."""
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(128, 64), (100, 37), (64, 32)]):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    decoded = decode_images(paths, H, W, num_workers=0, progress=False)
    assert decoded.shape == (3, 3, H, W) and decoded.dtype == torch.uint8
    out = BatchAugment(H, W, flip_p=0.0, padding=0, erasing_p=0.0)(decoded)
    test_transform = build_test_transform(H, W)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            assert torch.equal(out[i], test_transform(img.convert("RGB")))


def position_image() -> np.ndarray:
    """(H, W, 3) uint8: R = 4 * row, G = 8 * column, B = 200 marks real (not padded) pixels."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([4 * y, 8 * x, np.full_like(y, 200)], axis=-1).astype(np.uint8)


def read_back(out: torch.Tensor) -> dict[str, np.ndarray]:
    """The draws behind augmented position images (N, 3, H, W): flip, top, left, erased box."""
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    erased = (out == 0).all(dim=1)  # the erasing value is 0; no pixel normalises to exactly 0
    pixels = (out * std + mean).mul(255).round().long()
    rows_out, cols_out = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    draws: dict[str, list[int]] = {k: [] for k in ("flip", "top", "left", "erase", "bh", "bw",
                                                     "bt", "bl")}
    for i in range(len(out)):
        real = (pixels[i, 2] == 200) & ~erased[i]
        src_row = pixels[i, 0][real] // 4
        src_col = pixels[i, 1][real] // 8
        top = (src_row - rows_out[real] + PAD).unique()
        straight = (src_col - cols_out[real] + PAD).unique()
        mirrored = (W - 1 - cols_out[real] + PAD - src_col).unique()
        assert len(top) == 1 and (len(straight) == 1) != (len(mirrored) == 1), i
        draws["flip"].append(int(len(mirrored) == 1))
        draws["top"].append(int(top[0]))
        draws["left"].append(int((mirrored if len(mirrored) == 1 else straight)[0]))
        box = erased[i]
        draws["erase"].append(int(box.any()))
        if box.any():
            rows, cols = box.any(dim=1).nonzero()[:, 0], box.any(dim=0).nonzero()[:, 0]
            assert int(box.sum()) == len(rows) * len(cols)  # one full rectangle
            draws["bt"].append(int(rows[0]))
            draws["bl"].append(int(cols[0]))
            draws["bh"].append(len(rows))
            draws["bw"].append(len(cols))
    return {k: np.array(v) for k, v in draws.items()}


@pytest.fixture(scope="module")
def both_paths() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    image = position_image()
    torch.manual_seed(1)
    transform = build_train_transform(H, W, padding=PAD)
    pil = Image.fromarray(image)
    plain = torch.stack([transform(pil) for _ in range(SAMPLES)])
    torch.manual_seed(2)
    batch = torch.from_numpy(image).permute(2, 0, 1).expand(SAMPLES, 3, H, W).contiguous()
    batched = BatchAugment(H, W, padding=PAD)(batch)
    return read_back(plain), read_back(batched)


@pytest.mark.parametrize("key", ["flip", "erase"])
def test_same_probabilities(both_paths, key: str) -> None:
    plain, batched = both_paths
    assert abs(plain[key].mean() - 0.5) < 0.04
    table = [[plain[key].sum(), SAMPLES - plain[key].sum()],
             [batched[key].sum(), SAMPLES - batched[key].sum()]]
    assert stats.chi2_contingency(table).pvalue > 1e-3


@pytest.mark.parametrize("key", ["top", "left"])
def test_same_crop_offsets(both_paths, key: str) -> None:
    plain, batched = both_paths
    assert set(plain[key]) == set(batched[key]) == set(range(2 * PAD + 1))
    counts = [np.bincount(d[key], minlength=2 * PAD + 1) for d in both_paths]
    assert stats.chi2_contingency(counts).pvalue > 1e-3


@pytest.mark.parametrize("key", ["bh", "bw", "bt", "bl"])
def test_same_erased_boxes(both_paths, key: str) -> None:
    plain, batched = both_paths
    area = plain["bh"] * plain["bw"] / (H * W)
    assert area.min() >= 0.015 and area.max() <= 0.41  # scale (0.02, 0.4), rounded sides
    for draws in both_paths:  # boxes reach the bottom and right edges in both paths
        assert (draws["bt"] + draws["bh"] == H).any() and (draws["bl"] + draws["bw"] == W).any()
    assert stats.ks_2samp(plain[key], batched[key]).pvalue > 1e-3
    assert abs(np.mean(plain[key]) - np.mean(batched[key])) < 0.1 * np.std(plain[key])


def test_batched_draws_are_reproducible() -> None:
    images = torch.randint(0, 256, (8, 3, H, W), dtype=torch.uint8)
    augment = BatchAugment(H, W)
    torch.manual_seed(5)
    first = augment(images)
    torch.manual_seed(5)
    assert torch.equal(first, augment(images))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="flip_p"):
        BatchAugment(H, W, flip_p=1.5)
    with pytest.raises(ValueError, match="uint8"):
        BatchAugment(H, W)(torch.zeros(2, 3, H, W))
    with pytest.raises(ValueError, match="32x16"):
        BatchAugment(H, W)(torch.zeros(2, 3, 32, 16, dtype=torch.uint8))


def test_device_batches_follow_the_sampler_like_the_loader(tmp_path) -> None:
    """Both sources give the same P x K label sequence; device batches are augmented tensors."""
    labels = [i // 5 for i in range(40)]  # 8 ids x 5 images
    paths = []
    for i, label in enumerate(labels):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (W, H), (30 * label, i, 100)).save(path)
        paths.append(path)
    device = torch.device("cpu")

    def sampler() -> RandomIdentitySampler:
        return RandomIdentitySampler(labels, 8, 4, seed=3)

    decoded = decode_images(paths, H, W, num_workers=0, progress=False)
    on_device = DeviceBatches(decoded, labels, sampler(), BatchAugment(H, W), device)
    transform = build_train_transform(H, W)
    loader = LoaderBatches(ImageDataset(paths, labels, transform), sampler(), device,
                           num_workers=0)
    for epoch in (0, 1):
        on_device.set_epoch(epoch)
        loader.set_epoch(epoch)
        assert len(on_device) == len(loader) > 0
        device_labels = [y for _, y in on_device]
        loader_labels = [y for _, y in loader]
        for a, b in zip(device_labels, loader_labels, strict=True):
            assert torch.equal(a, b)
            assert len(a.unique()) == 2 and (a.bincount()[a.unique()] == 4).all()
    images, _ = next(iter(on_device))
    assert images.shape == (8, 3, H, W) and images.dtype == torch.float32


@pytest.mark.parametrize("available_gb, expected", [(64.0, True), (1.0, False)])
def test_auto_decodes_once_where_the_set_fits_in_half_the_memory(monkeypatch, available_gb,
                                                                 expected) -> None:
    """`train.input_pipeline: auto` on any device: Market-1501's 12,936 training images at
    256x128 (1.3 GB decoded) take the in-process batch path with 64 GB available, not with 1 GB;
    `device` and `loader` are what they say."""
    import reid.data.batches
    from reid.pipeline.training import uses_device_pipeline

    meminfo = f"MemTotal: 99999999 kB\nMemAvailable: {int(available_gb * 2**20)} kB\n"
    real_open = open
    monkeypatch.setattr(reid.data.batches, "open", lambda path, *a, **k: (
        __import__("io").StringIO(meminfo) if path == "/proc/meminfo"
        else real_open(path, *a, **k)), raising=False)
    assert uses_device_pipeline("auto", 12936, 256, 128) is expected
    assert uses_device_pipeline("device", 12936, 256, 128) is True
    assert uses_device_pipeline("loader", 12936, 256, 128) is False
