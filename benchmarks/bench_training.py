"""Training throughput of each backbone: images/s of the training step, and end to end.

    python benchmarks/bench_training.py                       # GPU if present, 256x128
    python benchmarks/bench_training.py --device cpu --height 64 --width 32 --steps 5

`step` times the optimisation step alone on a batch already on the device; `end-to-end` adds
the input pipeline (JPEG decoding and augmentation in DataLoader workers) on generated
Market-1501 images. Prints one table with the implied seconds per Market-1501 epoch (12,936
training images) and the peak GPU memory. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from reid.data.dataset import ImageDataset
from reid.data.generated import generate_market1501
from reid.data.market1501 import find_market_root, parse_market_layout
from reid.data.sampler import RandomIdentitySampler
from reid.data.transforms import build_train_transform
from reid.engine.train import TrainConfig, autocast_dtype, build_optimizers, grad_scaler, train_step
from reid.losses import ReidLoss
from reid.models import BACKBONES, build_model

MARKET_TRAIN_IMAGES = 12936


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_backbone(name: str, args: argparse.Namespace, loader: DataLoader, num_classes: int):
    device = torch.device(args.device)
    model = build_model(name, num_classes).to(device)
    criterion = ReidLoss(num_classes, model.feature_dim).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, amp=not args.no_amp)
    optimizer, center_optimizer, _ = build_optimizers(model, criterion, cfg, device)
    amp_dtype = autocast_dtype(device, cfg.amp)
    scaler = grad_scaler(device, amp_dtype)
    model.train()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    def step(images, targets):
        images = images.to(device, non_blocking=True).contiguous(memory_format=fmt)
        targets = targets.to(device, non_blocking=True)
        train_step(
            model,
            criterion,
            images,
            targets,
            optimizer,
            center_optimizer,
            scaler,
            amp_dtype,
            cfg.center_weight,
        )

    images, targets = next(iter(loader))
    images, targets = images.to(device), targets.to(device)
    for _ in range(args.warmup):
        step(images, targets)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step(images, targets)
    sync(device)
    step_rate = args.steps * args.batch_size / (time.perf_counter() - start)

    seen, start = 0, time.perf_counter()
    while seen < args.steps * args.batch_size:
        for batch_images, batch_targets in loader:
            step(batch_images, batch_targets)
            seen += batch_images.shape[0]
            if seen >= args.steps * args.batch_size:
                break
    sync(device)
    e2e_rate = seen / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return step_rate, e2e_rate, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--ids", type=int, default=64, help="identities in the generated set")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"device: {args.device} ({card}), torch {torch.__version__}, "
        f"{args.height}x{args.width}, batch {args.batch_size}, "
        f"amp {autocast_dtype(device, not args.no_amp)}, channels_last {args.channels_last}"
    )
    if device.type == "cpu":
        print("(no GPU: CPU figures at this size are for correctness, not the GPU targets)")

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_market1501(
            Path(tmp),
            num_train_ids=args.ids,
            num_test_ids=2,
            num_distractors=0,
            num_junk=0,
            images_per_camera=(2, 4),
        )
        manifest = parse_market_layout(find_market_root(root))
        rows = manifest[manifest["split"] == "train"]
        labels = rows["label"].tolist()
        data = ImageDataset(
            rows["path"].tolist(), labels, build_train_transform(args.height, args.width)
        )
        loader = DataLoader(
            data,
            batch_size=args.batch_size,
            drop_last=True,
            num_workers=args.workers,
            sampler=RandomIdentitySampler(labels, args.batch_size, 4, seed=0),
            pin_memory=device.type == "cuda",
            persistent_workers=args.workers > 0,
        )
        print(
            f"{'backbone':<16}{'step img/s':>12}{'e2e img/s':>12}{'e2e/step':>10}"
            f"{'s/Market epoch':>16}{'peak GiB':>10}"
        )
        for name in args.backbones:
            step_rate, e2e_rate, peak = bench_backbone(name, args, loader, max(labels) + 1)
            peak_text = f"{peak:.1f}" if peak is not None else "-"
            print(
                f"{name:<16}{step_rate:>12.0f}{e2e_rate:>12.0f}{e2e_rate / step_rate:>10.0%}"
                f"{MARKET_TRAIN_IMAGES / e2e_rate:>16.1f}{peak_text:>10}",
                flush=True,
            )


if __name__ == "__main__":
    main()
