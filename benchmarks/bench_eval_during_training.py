"""What evaluation during training costs, against a training epoch, on a split dataset.

    dvc repro split                                   # or a full dvc repro: needs data/split/
    python benchmarks/bench_eval_during_training.py --dataset market1501 --backbone resnet50
    python benchmarks/bench_eval_during_training.py --device cuda --epochs 3   # on a GPU

Trains `--epochs` epochs with the train stage's recipe, batches and evaluator (params.yaml;
no MLflow, nothing written to models/) scoring the split the stage scores (test, or the
validation split with `eval.val_ids`) after every epoch, then times
each way of scoring the trained model `--repeats` times on the same images:

- `decoded`: the train stage's evaluator (`reid.pipeline.validation.build_evaluator`): images
  decoded once when training starts, each evaluation runs the network and ranks; without the
  mirror (`eval.period_flip: false`, the default) and with it;
- `loader`: what the evaluator did before: DataLoader workers decoding every image at every
  evaluation, with the mirror (the extract_features + evaluate path).

Prints seconds per training epoch and per evaluation, the evaluation as a fraction of an
epoch, and its share of the training time at `eval.period`. A benchmark, not a test: it
asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from reid.data.manifest import query_gallery_labels, read_manifest
from reid.engine.runtime import select_device
from reid.engine.train import train
from reid.losses import ReidLoss
from reid.params import BACKBONES, Params, load_params
from reid.paths import manifest_path
from reid.pipeline.features import extract_splits, query_gallery_loaders
from reid.pipeline.models import initial_model
from reid.pipeline.scoring import score
from reid.pipeline.training import build_train_batches, train_config, training_rows
from reid.pipeline.validation import build_evaluator


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of `fn()` over `repeats` calls."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loader_scoring(params: Params, rows: pd.DataFrame, model: torch.nn.Module,
                   size: tuple[int, int], device: torch.device) -> Callable[[], object]:
    """The old per-evaluation path: DataLoader workers decode every image, with the mirror;
    ranked on the GPU under CUDA, as the old evaluator did."""
    params = dataclasses.replace(params, eval=dataclasses.replace(params.eval, flip=True))
    loaders = query_gallery_loaders(params, rows, size, device)

    def run() -> object:
        arrays = extract_splits(params, model, loaders, device, "loader")
        return score({**arrays, **query_gallery_labels(rows)}, params.eval, device=device)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dataset", default="market1501")
    parser.add_argument("--backbone", default="resnet50", choices=BACKBONES)
    parser.add_argument("--device", default=None, help="default: params train.device")
    parser.add_argument("--epochs", type=int, default=3, help="epochs to train (each scored)")
    parser.add_argument("--repeats", type=int, default=3, help="timed evaluations per way")
    args = parser.parse_args()

    params = load_params(args.params)
    if args.device:
        params = dataclasses.replace(params, train=dataclasses.replace(params.train,
                                                                       device=args.device))
    device = select_device(params.train.device)
    manifest = read_manifest(manifest_path(args.dataset))
    rows, eval_rows, split = training_rows(params, manifest)
    size = (params.input.height, params.input.width)
    num_classes = int(rows["label"].nunique())

    model = initial_model(params, args.backbone, num_classes)
    criterion = ReidLoss(num_classes, model.feature_dim, epsilon=params.train.label_smoothing,
                         margin=params.train.margin, center_weight=params.train.center_weight)
    # in the train stage's order: the training batches first (on a GPU, what is left of its
    # memory decides where the evaluation images go)
    batches = build_train_batches(params, rows["path"].tolist(), rows["label"].tolist(), device)
    start = time.perf_counter()
    no_flip = build_evaluator(params, eval_rows, size, device)
    decode_seconds = time.perf_counter() - start
    flip_params = dataclasses.replace(params, eval=dataclasses.replace(params.eval,
                                                                       period_flip=True))
    with_flip = build_evaluator(flip_params, eval_rows, size, device)  # a second copy
    cfg = dataclasses.replace(train_config(params, args.backbone), epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        history = train(model, criterion, batches, cfg, device=device,
                        checkpoint_path=Path(tmp) / "ckpt.pt", progress=False,
                        evaluator=no_flip, eval_period=1)
    epoch = statistics.median(h["epoch_seconds"] for h in history[1:] or history)
    in_training = statistics.median(h["eval_seconds"] for h in history[1:] or history)

    model.eval()
    ways = {
        "decoded, no mirror (default)": timed(lambda: no_flip(model), args.repeats, device),
        "decoded, with mirror (period_flip)": timed(lambda: with_flip(model), args.repeats,
                                                    device),
        "loader, with mirror (before)": timed(
            loader_scoring(params, eval_rows, model, size, device), args.repeats, device),
    }
    period = params.eval.period or 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"{args.backbone} on {args.dataset}: {len(rows)} training images, "
          f"{(eval_rows['split'] == 'query').sum()} query + "
          f"{(eval_rows['split'] == 'gallery').sum()} gallery ({split}), {size[0]}x{size[1]}, "
          f"device {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"training epoch: {epoch:.2f} s (median of epochs 2-{args.epochs}); decoding the "
          f"evaluation images once: {decode_seconds:.2f} s; evaluation inside training (the "
          f"engine's eval_seconds): {in_training:.2f} s")
    print(f"| scoring | s per evaluation | x epoch | share of training at eval.period "
          f"{period} |")
    print("|---|---|---|---|")
    for way, seconds in ways.items():
        share = seconds / (period * epoch + seconds)
        print(f"| {way} | {seconds:.2f} | {seconds / epoch:.2f} | {100 * share:.1f} % |")


if __name__ == "__main__":
    main()
