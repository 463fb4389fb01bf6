"""Training throughput of each backbone: images/s of the training step, and end to end.

    python benchmarks/bench_training.py                       # GPU if present, 256x128
    python benchmarks/bench_training.py --device cpu --height 64 --width 32 --steps 5

`step` times the optimisation step alone on a batch already on the device; the end-to-end
columns add an input pipeline on generated Market-1501 images: `loader` (JPEG decoding and
augmentation in DataLoader workers) and `device` (decoded once, batches augmented on the
device; `reid.data.batches`). Prints one table with the implied seconds per Market-1501 epoch
(12,936 training images) for the best pipeline and the peak GPU memory. A benchmark, not a
test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from reid.data.batch_augment import BatchAugment
from reid.data.batches import BatchSource, DeviceBatches, LoaderBatches, decode_images
from reid.data.dataset import ImageDataset
from reid.data.generated import generate_market1501
from reid.data.market1501 import find_market_root, parse_market_layout
from reid.data.sampler import RandomIdentitySampler
from reid.data.transforms import build_train_transform
from reid.engine.runtime import AMP_DTYPES, autocast_dtype
from reid.engine.train import (
    TrainConfig,
    build_optimizers,
    grad_scaler,
    train_step,
)
from reid.losses import ReidLoss
from reid.models import BACKBONES, build_model

MARKET_TRAIN_IMAGES = 12936


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_backbone(
    name: str, args: argparse.Namespace, sources: dict[str, BatchSource], num_classes: int
) -> tuple[float, dict[str, float], float | None, float]:
    device = torch.device(args.device)
    model = build_model(name, num_classes).to(device)
    criterion = ReidLoss(num_classes, model.feature_dim).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, amp=not args.no_amp)
    optimizer, center_optimizer, _ = build_optimizers(model, criterion, cfg, device)
    amp_dtype = autocast_dtype(device, cfg.amp, args.amp_dtype)
    scaler = grad_scaler(device, amp_dtype)
    model.train()
    net = torch.compile(model) if args.compile else model
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    def step(images, targets) -> torch.Tensor:
        images = images.to(device, non_blocking=True).contiguous(memory_format=fmt)
        targets = targets.to(device, non_blocking=True)
        _, terms = train_step(
            net,
            criterion,
            images,
            targets,
            optimizer,
            center_optimizer,
            scaler,
            amp_dtype,
            cfg.center_weight,
        )
        return terms.total.detach()

    images, targets = next(iter(next(iter(sources.values()))))
    start = time.perf_counter()
    first_loss = step(images, targets)
    for _ in range(args.warmup - 1):
        step(images, targets)
    sync(device)
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):  # the same batch: the step alone, no input pipeline
        last_loss = step(images, targets)
    sync(device)
    step_rate = args.steps * args.batch_size / (time.perf_counter() - start)
    # For a reader to check the precision path (nothing is asserted): the loss on the repeated
    # batch should fall, and an fp16 run's GradScaler scale should not collapse (each halving
    # from 65536 is a skipped step).
    scale = f", grad scale {scaler.get_scale():g}" if scaler.is_enabled() else ""
    print(f"  {name}: loss on the repeated batch {float(first_loss):.3f} at step 1 -> "
          f"{float(last_loss):.3f} at step {args.warmup + args.steps}{scale}", flush=True)

    e2e_rates = {}
    for pipeline, source in sources.items():
        seen, epoch, start = 0, 0, time.perf_counter()
        while seen < args.steps * args.batch_size:
            source.set_epoch(epoch)
            epoch += 1
            for batch_images, batch_targets in source:
                step(batch_images, batch_targets)
                seen += batch_images.shape[0]
                if seen >= args.steps * args.batch_size:
                    break
        sync(device)
        e2e_rates[pipeline] = seen / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return step_rate, e2e_rates, peak, warmup_s


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
    parser.add_argument("--amp-dtype", default="auto", choices=["auto", *AMP_DTYPES],
                        help="autocast dtype on CUDA (auto: bf16 where native, else fp16)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--pipelines", nargs="+", default=["loader", "device"],
                        choices=["loader", "device"])
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"device: {args.device} ({card}), torch {torch.__version__}, "
        f"{args.height}x{args.width}, batch {args.batch_size}, "
        f"amp {autocast_dtype(device, not args.no_amp, args.amp_dtype)}, "
        f"channels_last {args.channels_last}, "
        f"compile {args.compile}"
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
        paths = rows["path"].tolist()
        sources: dict[str, BatchSource] = {}
        if "loader" in args.pipelines:
            data = ImageDataset(paths, labels, build_train_transform(args.height, args.width))
            sources["loader"] = LoaderBatches(
                data, RandomIdentitySampler(labels, args.batch_size, 4, seed=0), device,
                num_workers=args.workers, persistent_workers=True,
            )
        if "device" in args.pipelines:
            start = time.perf_counter()
            decoded = decode_images(paths, args.height, args.width, num_workers=args.workers)
            print(f"decoded {len(paths)} images once in {time.perf_counter() - start:.1f} s")
            sources["device"] = DeviceBatches(
                decoded, labels, RandomIdentitySampler(labels, args.batch_size, 4, seed=0),
                BatchAugment(args.height, args.width), device,
            )
        header = "".join(f"{p + ' img/s':>14}{p + '/step':>13}" for p in sources)
        print(f"{'backbone':<16}{'step img/s':>12}{header}{'s/Market epoch':>16}{'peak GiB':>10}"
              f"{'warmup s':>10}")
        figures = {}
        for name in args.backbones:
            step_rate, e2e_rates, peak, warmup_s = bench_backbone(
                name, args, sources, max(labels) + 1
            )
            figures[name] = {"step": step_rate, **e2e_rates, "peak_gib": peak,
                             "warmup_s": warmup_s}
            if args.json:
                args.json.write_text(json.dumps({"card": card, "backbones": figures}, indent=1))
            peak_text = f"{peak:.1f}" if peak is not None else "-"
            cells = "".join(f"{r:>14.0f}{r / step_rate:>13.0%}" for r in e2e_rates.values())
            best = max(e2e_rates.values())
            print(
                f"{name:<16}{step_rate:>12.0f}{cells}"
                f"{MARKET_TRAIN_IMAGES / best:>16.1f}{peak_text:>10}{warmup_s:>10.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
