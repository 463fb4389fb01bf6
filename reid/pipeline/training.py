"""The train stages: one backbone on one dataset, from the manifest to the final model file."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from reid.data.batch_augment import BatchAugment
from reid.data.batches import (
    BatchSource,
    DeviceBatches,
    LoaderBatches,
    decode_images,
    fits_in_host_memory,
)
from reid.data.dataset import ImageDataset
from reid.data.manifest import TEST_SPLITS, read_manifest
from reid.data.sampler import RandomIdentitySampler
from reid.data.transforms import build_train_transform
from reid.distributed import DistInfo, distributed, launched_by_torchrun, relaunch
from reid.engine.checkpoint import fingerprint
from reid.engine.runtime import select_device
from reid.engine.train import TrainConfig, best_epoch, train
from reid.errors import InputError
from reid.io import atomic_path, check_writable, file_digest
from reid.losses import ReidLoss
from reid.models.model_file import ModelFile, write_model_file
from reid.params import Params
from reid.paths import checkpoint_path, manifest_path, model_path, split_dir, train_plot_dir
from reid.pipeline.models import initial_model
from reid.pipeline.validation import build_evaluator, validation_split
from reid.report.plots import plot_training_curves
from reid.tracking import Tracker, git_state, model_run_name

log = logging.getLogger(__name__)


def train_config(params: Params, backbone: str) -> TrainConfig:
    t = params.train
    if params.epochs_for(backbone) <= t.warmup_epochs:
        log.warning(
            "%s: %d epochs <= train.warmup_epochs (%d): the whole run stays in the warm-up, "
            "at %.3g to %.3g times train.lr", backbone, params.epochs_for(backbone),
            t.warmup_epochs, t.warmup_factor,
            t.warmup_factor + (1 - t.warmup_factor) * (params.epochs_for(backbone) - 1)
            / t.warmup_epochs,
        )
    return TrainConfig(
        epochs=params.epochs_for(backbone),
        batch_size=t.batch_size,
        num_instances=t.num_instances,
        lr=t.lr,
        weight_decay=t.weight_decay,
        warmup_epochs=t.warmup_epochs,
        warmup_factor=t.warmup_factor,
        milestones=tuple(t.milestones),
        gamma=t.gamma,
        center_lr=t.center_lr,
        center_weight=t.center_weight,
        seed=t.seed,
        amp=t.amp,
        num_workers=t.num_workers,
        pin_memory=t.pin_memory,
        channels_last=t.channels_last and select_device(t.device).type == "cuda",
        sync_bn=t.sync_bn,
        compile=t.compile,
    )


def uses_device_pipeline(choice: str, num_images: int, height: int, width: int) -> bool:
    """Whether the training batches come from the images decoded once (`DeviceBatches`).

    `auto` takes that path wherever the decoded set (uint8, N x 3 x H x W) fits in half the
    host's available memory, CPU and CUDA alike: the images are decoded there first. On a GPU
    per-image workers cannot feed the step; on the CPU they compete with it for the cores (the
    loop ran at 52 to 62 % of its step with two workers on 2 cores, benchmarks/README.md).
    Otherwise `auto` falls back to DataLoader workers (`loader`).
    """
    if choice != "auto":
        return choice == "device"
    return fits_in_host_memory(num_images * 3 * height * width)


def build_train_batches(
    params: Params,
    paths: list[str],
    labels: list[int],
    device: torch.device,
    *,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    decoded_once: bool | None = None,
) -> BatchSource:
    """The training batches of `params.train.input_pipeline` for one rank, on `device`
    (`decoded_once`: the choice of `uses_device_pipeline`, when the caller made it already)."""
    t, inp = params.train, params.input
    sampler = RandomIdentitySampler(
        labels, t.batch_size, t.num_instances, seed=t.seed, rank=rank, world_size=world_size
    )
    if decoded_once is None:
        decoded_once = uses_device_pipeline(t.input_pipeline, len(paths), inp.height, inp.width)
    if decoded_once:
        images = decode_images(
            paths, inp.height, inp.width, num_workers=t.num_workers, progress=progress
        )
        augment = BatchAugment(
            inp.height, inp.width, flip_p=inp.flip_p, padding=inp.padding, erasing_p=inp.erasing_p
        )
        return DeviceBatches(images, labels, sampler, augment, device)
    transform = build_train_transform(
        inp.height, inp.width, flip_p=inp.flip_p, padding=inp.padding, erasing_p=inp.erasing_p
    )
    return LoaderBatches(
        ImageDataset(paths, labels, transform),
        sampler,
        device,
        num_workers=t.num_workers,
        pin_memory=t.pin_memory,
    )


def save_model_file(
    path: Path, params: Params, backbone: str, dataset: str, model: torch.nn.Module,
    cfg: TrainConfig, history: list[dict[str, Any]], selection: dict[str, Any],
) -> None:
    """`models/<backbone>/<dataset>.pt` (`reid.models.model_file`): the weights and all that
    rebuilds the model without params.yaml, the recipe, the losses and the code's commit."""
    write_model_file(path, ModelFile(
        backbone=backbone,
        dataset=dataset,
        num_classes=model.classifier.out_features,
        feature_dim=model.feature_dim,
        effnet_variant=params.models[backbone].variant,
        input_size=(params.input.height, params.input.width),
        pretrained=params.models[backbone].pretrained,
        train_config=asdict(cfg),
        state_dict=model.state_dict(),
        history=history,
        selected=selection,
        **git_state(),
    ))


def train_stage(
    params: Params, backbone: str, dataset: str, *, argv: list[str], progress: bool = True
) -> None:
    """A train stage: `train_backbone`, or with train.nproc > 1 the stage `argv` under torchrun."""
    nproc = params.train.nproc
    if nproc > 1 and not launched_by_torchrun():
        status = relaunch(nproc, argv)
        if status:
            raise InputError(f"torchrun with {nproc} processes failed (exit status {status})")
        return
    train_backbone(params, backbone, dataset, progress=progress)


def train_backbone(
    params: Params, backbone: str, dataset: str, *, progress: bool = True
) -> dict[str, Any]:
    """Train `backbone` on the train split of `dataset`; write the model and its curves.

    Outputs: `models/<backbone>/<dataset>.pt` (weights + what is needed to rebuild the model)
    and `plots/train/<backbone>/<dataset>/{curves.csv,curves.png}`. One MLflow run per
    (backbone, dataset); a resumed training continues its run. Under torchrun every rank
    trains on its share of each global batch and rank 0 alone writes and logs.
    """
    with distributed(select_device(params.train.device)) as (info, device):
        return _train_on_rank(params, backbone, dataset, info, device, progress)


def training_rows(params: Params, manifest: pd.DataFrame
                  ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(the rows to train on, the rows scored during training, which split those are).

    With `eval.val_ids` the scored rows are a validation split held out of the training rows
    and the test split is not touched; otherwise they are the test query and gallery."""
    rows = manifest[manifest["split"] == "train"]
    if params.eval.val_ids:
        rows, val = validation_split(rows, params.eval.val_ids, params.train.seed)
        return rows, val, "validation"
    return rows, manifest[manifest["split"].isin(TEST_SPLITS)], "test"


def _train_on_rank(
    params: Params, backbone: str, dataset: str, info: DistInfo, device: torch.device,
    progress: bool,
) -> dict[str, Any]:
    manifest_file = manifest_path(dataset)
    rows, eval_rows, eval_split = training_rows(params, read_manifest(manifest_file))
    if rows.empty:
        raise InputError(f"{manifest_file}: no training images")
    num_classes = int(rows["label"].max()) + 1
    plots = train_plot_dir(backbone, dataset)
    if info.is_main:
        check_writable(model_path(backbone, dataset),
                       *(plots / name for name in ("curves.csv", "curves.png", "eval.csv")))
    cfg = train_config(params, backbone)
    t, inp = params.train, params.input
    decoded_once = uses_device_pipeline(t.input_pipeline, len(rows), inp.height, inp.width)
    settings = run_settings(params, backbone, dataset, decoded_once, info.world_size)
    ckpt = checkpoint_path(backbone, dataset)
    run_id_file = ckpt.with_name("mlflow_run.txt")
    run_key = fingerprint({"cfg": asdict(cfg), "settings": settings})
    model = initial_model(params, backbone, num_classes)
    criterion = ReidLoss(num_classes, model.feature_dim, epsilon=t.label_smoothing,
                         margin=t.margin, center_weight=t.center_weight)
    batches = build_train_batches(
        params, rows["path"].tolist(), rows["label"].tolist(), device,
        rank=info.rank, world_size=info.world_size, progress=progress and info.is_main,
        decoded_once=decoded_once,
    )
    log.info(
        "training %s on %s: %d images, %d ids, %d epochs, %s, device %s, input pipeline %s, "
        "rank %d of %d",
        backbone, dataset, len(rows), num_classes, cfg.epochs, f"{inp.height}x{inp.width}",
        device, type(batches).__name__, info.rank, info.world_size,
    )
    tracker = Tracker(
        params.tracking.enabled and info.is_main,
        params.tracking.experiment,
        model_run_name(backbone, dataset),
        params=params,
        run_params={"run.backbone": backbone, "run.dataset": dataset},
        tags={"stage": f"train_{backbone}", "backbone": backbone, "dataset": dataset},
        run_id=_resumed_run_id(run_id_file, run_key) if ckpt.exists() else None,
    )
    ev = params.eval
    with tracker:
        if tracker.run_id:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            run_id_file.write_text(f"{run_key} {tracker.run_id}\n")
        log_training_data(tracker, dataset, settings["manifest_sha256"], rows,
                          eval_rows if ev.period else None, eval_split)
        history = train(
            model, criterion, batches, cfg, device=device, checkpoint_path=ckpt,
            settings=settings, progress=progress,
            on_epoch=lambda stats: tracker.log_metrics(stats, step=int(stats["epoch"])),
            evaluator=build_evaluator(params, eval_rows, (inp.height, inp.width), device)
            if ev.period and info.is_main else None,
            eval_period=ev.period,
            keep_best="mAP" if ev.select == "best_val" else None,
            checkpoint_period=t.checkpoint_period,
        )
        if not info.is_main:
            return {"epochs": len(history)}
        out = write_outputs(params, backbone, dataset, model, cfg, history, eval_split, tracker)
    ckpt.unlink(missing_ok=True)
    run_id_file.unlink(missing_ok=True)
    return {"model": str(out), "epochs": len(history), **history[-1]}


def log_training_data(tracker: Tracker, dataset: str, manifest_sha256: str, rows: pd.DataFrame,
                      scored: pd.DataFrame | None, scored_split: str) -> None:
    """The rows trained on (`<dataset>-train`) and those scored during training
    (`<dataset>-validation` or `-test`) as the run's MLflow datasets, read from the manifest,
    tagged with the manifest's sha256 and the raw data's source (`data/split/<ds>/summary.json`,
    which the split stage wrote from `data.<ds>.source`)."""
    if not tracker.enabled:
        return
    manifest = manifest_path(dataset)
    summary = json.loads((split_dir(dataset) / "summary.json").read_text())
    tags = {"manifest_sha256": manifest_sha256, "raw_source": str(summary.get("source"))}
    tracker.log_dataset(rows, f"{dataset}-train", manifest, "training", tags)
    if scored is not None:
        tracker.log_dataset(scored, f"{dataset}-{scored_split}", manifest, scored_split, tags)


def run_settings(params: Params, backbone: str, dataset: str, decoded_once: bool,
                 world_size: int) -> dict[str, Any]:
    """What defines a training run beside its TrainConfig: a checkpoint resumes only the same."""
    return {
        "backbone": backbone,
        "dataset": dataset,
        "model": asdict(params.models[backbone]),
        "input": asdict(params.input),
        "device_pipeline": decoded_once,
        "loss": {k: getattr(params.train, k) for k in ("label_smoothing", "margin")},
        "manifest_sha256": file_digest(manifest_path(dataset), "sha256"),
        "world_size": world_size,  # the global batch is batch_size x world_size
        "eval": {k: getattr(params.eval, k) for k in ("period", "val_ids", "select")},
    }


def _resumed_run_id(run_id_file: Path, run_key: str) -> str | None:
    """The MLflow run of the checkpointed training with these very settings, if any."""
    if not run_id_file.exists():
        return None
    saved_key, _, saved_id = run_id_file.read_text().partition(" ")
    return saved_id.strip() if saved_key == run_key else None


def write_outputs(
    params: Params, backbone: str, dataset: str, model: torch.nn.Module, cfg: TrainConfig,
    history: list[dict[str, Any]], eval_split: str, tracker: Tracker,
) -> Path:
    """The model file, the curves and what the MLflow run gets at the end; the model file."""
    selection = selected_epoch(history, params.eval.select, eval_split)
    out = model_path(backbone, dataset)
    save_model_file(out, params, backbone, dataset, model, cfg, history, selection)
    tracker.set_tags({"model_sha256": file_digest(out, "sha256")})
    tracker.log_metrics({"selected_epoch": selection["epoch"],
                         **({"selected_eval.mAP": selection["mAP"]}
                            if selection["mAP"] is not None else {})})
    if params.tracking.enabled and params.tracking.log_models:
        tracker.log_model(model.cpu().eval())
    plots = train_plot_dir(backbone, dataset)
    write_curves(history, plots, f"{backbone} on {dataset}", eval_split)
    final = history[-1]
    tracker.log_metrics(
        {f"final_{k}": final[k] for k in ("loss", "ce", "triplet", "center", "accuracy")}
    )
    for name in ("curves.png", "curves.csv", "eval.csv"):
        tracker.log_artifact(plots / name, "plots")
    tracker.log_artifact(Path("params.yaml"))
    return out


def selected_epoch(history: list[dict[str, Any]], select: str, split: str) -> dict[str, Any]:
    """Which epoch's weights the model file holds, and its score on the scored split."""
    if select == "best_val":
        epoch = best_epoch(history, "mAP")  # the epoch whose weights `train` kept
        return {"epoch": epoch, "by": "best validation mAP", "split": split,
                "mAP": next(h["eval.mAP"] for h in history if h["epoch"] == epoch)}
    last = history[-1]
    scored = any("eval.mAP" in h for h in history)
    return {"epoch": int(last["epoch"]), "by": "last", "split": split if scored else None,
            "mAP": last.get("eval.mAP")}


def write_curves(history: list[dict[str, Any]], plots: Path, title: str, split: str) -> None:
    """`curves.csv` (losses per epoch), `eval.csv` (scores of the evaluated epochs) and the
    picture of both: DVC plots."""
    table = pd.DataFrame(history)
    scored = [c for c in table.columns if c.startswith("eval")]
    curves = table.drop(columns=scored)
    evaluated = table[table["eval.mAP"].notna()] if "eval.mAP" in table else table.iloc[:0]
    evals = evaluated[["epoch", *scored]]
    evals = evals.rename(columns=lambda c: c.removeprefix("eval.")).assign(split=split)
    with atomic_path(plots / "curves.csv") as tmp:
        curves.to_csv(tmp, index=False)
    with atomic_path(plots / "eval.csv") as tmp:
        evals.to_csv(tmp, index=False)
    plot_training_curves(curves, plots / "curves.png", title=title, evals=evals)
