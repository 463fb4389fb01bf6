"""The training step alone against the whole training loop, per backbone, as a train stage runs.

    python benchmarks/bench_cpu_loop.py                        # params.yaml, every backbone
    python benchmarks/bench_cpu_loop.py --epochs 4 --input-pipeline loader device

In a scratch folder, the dataset of params.yaml (the built-in generated Market-1501 by default)
is downloaded and split as the stages do; then, per backbone and input pipeline:
- `step`: the optimisation step alone (forward, the three losses, backward, both optimisers)
  on one training batch held in memory, img/s;
- `loop`: the engine's `train` as the train stage calls it (the stage's batch source,
  evaluation during training every `eval.period` epochs), img/s of its epochs (the engine's
  `images_per_s`, what MLflow shows) and of the wall clock with the evaluations;
- where the difference goes, per epoch: waiting for batches (sampler, decode, augmentation,
  collation, worker hand-off), the steps themselves, and the evaluations.
Prints one table; asserts nothing (a benchmark, not a test). `--json` keeps the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reid.data.manifest import read_manifest  # noqa: E402
from reid.engine.runtime import autocast_dtype, select_device  # noqa: E402
from reid.engine.train import build_optimizers, grad_scaler, train, train_step  # noqa: E402
from reid.losses import ReidLoss  # noqa: E402
from reid.params import BACKBONES, load_params  # noqa: E402
from reid.paths import manifest_path, raw_dir, split_dir  # noqa: E402
from reid.pipeline.download import download  # noqa: E402
from reid.pipeline.models import initial_model  # noqa: E402
from reid.pipeline.split import split  # noqa: E402
from reid.pipeline.training import (  # noqa: E402
    build_train_batches,
    train_config,
    training_rows,
    uses_device_pipeline,
)
from reid.pipeline.validation import build_evaluator  # noqa: E402


class TimedBatches:
    """A batch source that adds up the time the loop waits for each batch."""

    def __init__(self, source) -> None:
        self.source, self.wait = source, 0.0

    def set_epoch(self, epoch: int) -> None:
        self.source.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self):
        batches = iter(self.source)
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                self.wait += time.perf_counter() - start
            yield batch


def step_rate(params, backbone: str, batch, num_classes: int, device, steps: int) -> float:
    """img/s of the step alone on one batch, after 2 warm-up steps."""
    model = initial_model(params, backbone, num_classes).to(device).train()
    t = params.train
    criterion = ReidLoss(num_classes, model.feature_dim, epsilon=t.label_smoothing,
                         margin=t.margin, center_weight=t.center_weight).to(device)
    cfg = train_config(params, backbone)
    optimizer, center_optimizer, _ = build_optimizers(model, criterion, cfg, device)
    amp_dtype = autocast_dtype(device, cfg.amp)
    scaler = grad_scaler(device, amp_dtype)
    images, targets = batch
    for i in range(2 + steps):
        if i == 2:
            start = time.perf_counter()
        train_step(model, criterion, images, targets, optimizer, center_optimizer, scaler,
                   amp_dtype, cfg.center_weight)
    return steps * len(images) / (time.perf_counter() - start)


def loop_figures(params, backbone: str, rows, eval_rows, device, epochs: int) -> dict:
    """The train stage's loop for `epochs`: img/s and where each epoch's time goes."""
    num_classes = int(rows["label"].max()) + 1
    model = initial_model(params, backbone, num_classes)
    t, inp = params.train, params.input
    criterion = ReidLoss(num_classes, model.feature_dim, epsilon=t.label_smoothing,
                         margin=t.margin, center_weight=t.center_weight)
    batches = TimedBatches(build_train_batches(params, rows["path"].tolist(),
                                               rows["label"].tolist(), device, progress=False))
    cfg = dataclasses.replace(train_config(params, backbone), epochs=epochs)
    evaluator = (build_evaluator(params, eval_rows, (inp.height, inp.width), device)
                 if params.eval.period else None)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        history = train(model, criterion, batches, cfg, device=device, progress=False,
                        checkpoint_path=Path(tmp) / "ckpt.pt", evaluator=evaluator,
                        eval_period=params.eval.period, checkpoint_period=0)
        wall = time.perf_counter() - start
    images = sum(h["images_per_s"] * h["epoch_seconds"] for h in history)
    epoch_s = sum(h["epoch_seconds"] for h in history)
    eval_s = sum(h.get("eval_seconds", 0.0) for h in history)
    return {
        "loop_img_s": images / epoch_s,
        "loop_img_s_median_epoch": statistics.median(h["images_per_s"] for h in history),
        "wall_img_s": images / wall,
        "per_epoch_s": {"waiting_for_batches": batches.wait / epochs,
                        "steps": (epoch_s - batches.wait) / epochs,
                        "evaluation": eval_s / epochs,
                        "other": (wall - epoch_s - eval_s) / epochs},
        "pipeline": type(batches.source).__name__,
    }


def prepare(params, dataset: str) -> None:
    download(dataset, params.data[dataset], raw_dir(dataset))
    split(dataset, params.data[dataset], raw_dir(dataset), split_dir(dataset))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--dataset", default="market1501")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--input-pipeline", nargs="+", default=None,
                        choices=["auto", "loader", "device"],
                        help="train.input_pipeline values to run (default: params.yaml's)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the loop (>= 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of the step alone")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    params = load_params(args.params.resolve())
    pipelines = args.input_pipeline or [params.train.input_pipeline]
    device = select_device(params.train.device)
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}; {args.dataset} of "
          f"{args.params.name}: {params.input.height}x{params.input.width}, batch "
          f"{params.train.batch_size}, eval.period {params.eval.period}, "
          f"train.num_workers {params.train.num_workers}", flush=True)
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        prepare(params, args.dataset)
        rows, eval_rows, _ = training_rows(params, read_manifest(manifest_path(args.dataset)))
        print(f"{'backbone':<16}{'pipeline':<15}{'step img/s':>11}{'loop img/s':>11}"
              f"{'loop/step':>10}{'wall img/s':>11}   per epoch: wait / step / eval s")
        for backbone in args.backbones:
            for choice in pipelines:
                p = dataclasses.replace(params, train=dataclasses.replace(
                    params.train, input_pipeline=choice))
                batches = build_train_batches(p, rows["path"].tolist(), rows["label"].tolist(),
                                              device, progress=False)
                batches.set_epoch(0)
                batch = next(iter(batches))
                step = step_rate(p, backbone, batch, int(rows["label"].max()) + 1, device,
                                 args.steps)
                loop = loop_figures(p, backbone, rows, eval_rows, device, args.epochs)
                used = ("device" if uses_device_pipeline(choice, len(rows), params.input.height,
                                                        params.input.width) else "loader")
                name = f"{choice} ({used})"
                figures[f"{backbone}/{choice}"] = {"step_img_s": step, **loop}
                per = loop["per_epoch_s"]
                print(f"{backbone:<16}{name:<15}{step:>11.1f}{loop['loop_img_s']:>11.1f}"
                      f"{loop['loop_img_s'] / step:>10.0%}{loop['wall_img_s']:>11.1f}   "
                      f"{per['waiting_for_batches']:.2f} / {per['steps']:.2f} / "
                      f"{per['evaluation']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
