"""The one training loop for every backbone: the "bag of tricks" strong-baseline recipe.

Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW
2019: P x K sampling, Adam (AMSGrad) with linear warm-up and multistep decay, label-smoothed
cross entropy + batch-hard triplet + center loss (the centres get their own SGD). Mixed
precision on CUDA (bf16 where supported, else fp16 with one GradScaler for the whole run),
fp32 on CPU. A checkpoint is written atomically after every epoch, and a re-run with the same
settings resumes from it and ends with the same result as an uninterrupted run.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from reid.data.batches import BatchSource
from reid.distributed import (
    average_gradients,
    broadcast_parameters,
    gather_objects,
    rank_and_world,
    sum_over_ranks,
)
from reid.engine.checkpoint import (
    fingerprint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from reid.engine.runtime import autocast_dtype, seed_everything
from reid.errors import InputError
from reid.losses import LossTerms, ReidLoss
from reid.models import ReidOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int = 64
    num_instances: int = 4
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    warmup_epochs: int = 10
    warmup_factor: float = 0.01
    milestones: tuple[int, ...] = (30, 55)
    gamma: float = 0.1
    center_lr: float = 0.5
    center_weight: float = 5e-4
    seed: int = 0
    amp: bool = True
    num_workers: int = 2
    pin_memory: bool = True
    channels_last: bool = False  # NHWC memory order for the model (fastest for convs on CUDA)
    sync_bn: bool = False  # multi-process: batch statistics over all ranks (CUDA only)
    compile: bool = False  # torch.compile the model: faster steps after a compile of ~1 min


def grad_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """The run's one GradScaler: enabled only for fp16 autocast (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Warm-up from `warmup_factor` to 1 over `warmup_epochs`, then x gamma at each milestone.

    Counted in epochs and stepped per epoch (the reproduced project counted iterations but
    stepped per epoch, so its warm-up never finished).
    """
    warmup = 1.0
    if epoch < cfg.warmup_epochs:
        alpha = epoch / cfg.warmup_epochs
        warmup = cfg.warmup_factor * (1 - alpha) + alpha
    return warmup * cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), epoch)


def build_optimizers(
    model: nn.Module, criterion: ReidLoss, cfg: TrainConfig, device: torch.device
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.Adam(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True, **fused
    )
    center_optimizer = torch.optim.SGD(criterion.center.parameters(), lr=cfg.center_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, cfg))
    return optimizer, center_optimizer, scheduler


def train(
    model: nn.Module,
    criterion: ReidLoss,
    batches: BatchSource,
    cfg: TrainConfig,
    *,
    device: torch.device,
    checkpoint_path: str | Path,
    settings: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
    evaluator: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_period: int = 0,
    keep_best: str | None = None,
    checkpoint_period: int = 1,
) -> list[dict[str, float]]:
    """Train `model` with `criterion` on `batches` and return the per-epoch statistics.

    `batches` yields P x K batches on `device` (see `reid.data.batches`). `settings`
    (anything JSON-able that defines the run: params, data fingerprint) decides whether an
    existing checkpoint may be resumed. `on_epoch` receives the statistics (loss terms,
    accuracy, learning rate, epoch time, images/s) of each epoch trained in this call; the
    returned history also holds the epochs restored from a checkpoint.

    With `evaluator` and `eval_period` N > 0, rank 0 scores the model every N epochs and at
    the last (`evaluator(model)` -> {"mAP": ...}, in eval mode, no gradients); the scores join
    that epoch's statistics as `eval.<name>`, with `eval_seconds`. Other ranks go on and wait at
    the next collective. With `keep_best` (a score name) the model ends with the weights of the
    epoch that scored highest (the first on ties), kept in the checkpoint across a resume.
    The checkpoint is written every `checkpoint_period` epochs (0: never), not after the last.
    """
    checkpoint_path = Path(checkpoint_path)
    run_fingerprint = fingerprint({"train": asdict(cfg), "settings": settings or {}})
    rank, world_size = rank_and_world()
    seed_everything(cfg.seed + rank)  # ranks draw different augmentations
    model, net = _prepare(model, criterion, cfg, device, world_size)
    optimizer, center_optimizer, scheduler = build_optimizers(model, criterion, cfg, device)
    amp_dtype = autocast_dtype(device, cfg.amp)
    scaler = grad_scaler(device, amp_dtype)
    if len(batches) == 0:
        raise InputError(
            f"no full batch: the training images cannot fill one batch of {cfg.batch_size} "
            f"({cfg.batch_size // cfg.num_instances} ids x {cfg.num_instances})"
        )
    stateful = {"model": model, "criterion": criterion, "optimizer": optimizer,
                "center_optimizer": center_optimizer, "scheduler": scheduler, "scaler": scaler}
    history, best, start_epoch = _resume(checkpoint_path, run_fingerprint, stateful, rank)

    for epoch in range(start_epoch, cfg.epochs):
        batches.set_epoch(epoch)
        stats = _train_one_epoch(
            net, criterion, batches, optimizer, center_optimizer, scaler, amp_dtype,
            cfg, device, epoch, progress and rank == 0,
        )
        scheduler.step()
        checkpoint = checkpoint_due(epoch, cfg.epochs, checkpoint_period)
        rng_per_rank = gather_objects(rng_state()) if checkpoint else None  # on every rank
        if rank != 0:  # only rank 0 writes; all ranks read the checkpoint when resuming
            history.append(stats)
            continue
        if evaluator is not None and eval_due(epoch, cfg.epochs, eval_period):
            stats.update(_evaluate(model, evaluator, epoch, cfg.epochs))
        history.append(stats)
        best = _best_so_far(model, history, keep_best, best)
        if checkpoint:
            save_checkpoint(checkpoint_path, {
                **{name: part.state_dict() for name, part in stateful.items()},
                "rng_per_rank": rng_per_rank, "epoch": epoch, "history": history,
                "best": best, "fingerprint": run_fingerprint,
            })
        if on_epoch is not None:
            on_epoch(stats)
    if best is not None:
        log.info("keeping the weights of epoch %d (%s %.4f)", best["epoch"], keep_best,
                 best["score"])
        model.load_state_dict(best["model"])
    return history


def _prepare(model: nn.Module, criterion: ReidLoss, cfg: TrainConfig, device: torch.device,
             world_size: int) -> tuple[nn.Module, nn.Module]:
    """(the model on `device`, the module that runs the steps: DDP-wrapped with several ranks,
    compiled with cfg.compile). The first stays the plain module whose state is checkpointed."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: cuDNN picks its fastest kernels
    if cfg.sync_bn and world_size > 1:
        if device.type != "cuda":
            raise InputError("train.sync_bn needs CUDA (SyncBatchNorm has no CPU kernels)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    criterion.to(device)
    broadcast_parameters(criterion.parameters())  # the centres start equal on every rank
    # DDP averages the model's gradients over the ranks; the centres are averaged by train_step.
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                  else None) if world_size > 1 else model
    return model, torch.compile(net) if cfg.compile else net


def _resume(checkpoint_path: Path, run_fingerprint: str, stateful: dict[str, Any], rank: int
            ) -> tuple[list[dict[str, float]], dict[str, Any] | None, int]:
    """(history, best weights so far, first epoch to train): restored from the checkpoint of
    this very run into `stateful`'s parts, or a fresh start."""
    state = load_checkpoint(checkpoint_path, run_fingerprint)
    if state is None:
        return [], None, 0
    for name, part in stateful.items():
        part.load_state_dict(state[name])
    # Each rank continues its own random streams (rank 0's alone would make all ranks draw
    # the same augmentations after a resume).
    set_rng_state(state["rng_per_rank"][rank])
    log.info("resuming from %s after epoch %d", checkpoint_path, state["epoch"] + 1)
    return state["history"], state.get("best"), state["epoch"] + 1


def _best_so_far(model: nn.Module, history: list[dict[str, Any]], keep_best: str | None,
                 best: dict[str, Any] | None) -> dict[str, Any] | None:
    """The weights `keep_best` keeps: a copy of the model's when the last epoch scored best."""
    epoch = int(history[-1]["epoch"])
    if not keep_best or best_epoch(history, keep_best) != epoch:
        return best
    return {"epoch": epoch, "score": history[-1][f"eval.{keep_best}"],
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def best_epoch(history: list[dict[str, Any]], score: str) -> int | None:
    """The 1-based epoch of `history` with the highest `eval.<score>` (the first of equal
    maxima), None when no epoch was scored: the epoch `keep_best` keeps."""
    scored = [h for h in history if f"eval.{score}" in h]
    return int(max(scored, key=lambda h: h[f"eval.{score}"])["epoch"]) if scored else None


def checkpoint_due(epoch: int, epochs: int, period: int) -> bool:
    """Whether 0-based `epoch` is checkpointed: every `period` epochs (0 = never), never the
    last (the caller writes the model file next; a checkpoint of ~4x the weights costs about
    a second, which a short CPU epoch notices)."""
    return period > 0 and (epoch + 1) % period == 0 and epoch + 1 < epochs


def eval_due(epoch: int, epochs: int, period: int) -> bool:
    """Whether 0-based `epoch` is scored: every `period` epochs and the last (0 = never)."""
    return period > 0 and ((epoch + 1) % period == 0 or epoch + 1 == epochs)


def _evaluate(model: nn.Module, evaluator: Callable[[nn.Module], dict[str, float]],
              epoch: int, epochs: int) -> dict[str, float]:
    start = time.perf_counter()
    state = rng_state()  # scoring draws random numbers (a DataLoader's seed): training must not
    model.eval()         # change with eval.period, so its random streams are put back
    try:
        with torch.no_grad():
            scores = evaluator(model)
    finally:
        model.train()
        set_rng_state(state)
    seconds = time.perf_counter() - start
    log.info("epoch %d/%d  evaluation: %s  (%.1f s)", epoch + 1, epochs,
             "  ".join(f"{k} {v:.4f}" for k, v in scores.items()), seconds)
    return {**{f"eval.{k}": float(v) for k, v in scores.items()}, "eval_seconds": seconds}


def train_step(
    model: nn.Module,
    criterion: ReidLoss,
    images: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    center_optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    amp_dtype: torch.dtype | None,
    center_weight: float,
) -> tuple[ReidOutput, LossTerms]:
    """One optimisation step on a batch (B, 3, H, W) with labels (B,).

    Forward pass and loss run under autocast; the loss sees fp32 outputs. The center loss's
    centres learn on their own SGD at their own rate: their gradient is rescaled by
    1 / center_weight, undoing the loss weight (BoT).
    """
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        output = model(images)
        terms = criterion(ReidOutput(*(t.float() for t in output)), targets)
    optimizer.zero_grad(set_to_none=True)
    center_optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms.total).backward()
    average_gradients(criterion.center.parameters())  # DDP covers the model's, not these
    scaler.unscale_(center_optimizer)
    for param in criterion.center.parameters():
        if param.grad is not None:
            param.grad.mul_(1.0 / center_weight)
    scaler.step(optimizer)
    scaler.step(center_optimizer)
    scaler.update()
    return output, terms


def _train_one_epoch(
    model: nn.Module,
    criterion: ReidLoss,
    batches: BatchSource,
    optimizer: torch.optim.Optimizer,
    center_optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    amp_dtype: torch.dtype | None,
    cfg: TrainConfig,
    device: torch.device,
    epoch: int,
    progress: bool,
) -> dict[str, float]:
    model.train()
    # Sums stay on the device: reading a value forces a GPU sync, so it happens only when the
    # progress bar is refreshed and once at the end of the epoch.
    keys = ("loss", "ce", "triplet", "center", "accuracy")
    sums = {key: torch.zeros((), device=device) for key in keys}
    images_seen = step = 0
    lr = optimizer.param_groups[0]["lr"]
    start = time.perf_counter()
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
               disable=None if progress else True)
    for images, targets in bar:
        output, terms = train_step(
            model, criterion, images, targets, optimizer, center_optimizer, scaler, amp_dtype,
            cfg.center_weight,
        )

        batch = images.shape[0]
        images_seen += batch
        accuracy = (output.logits.argmax(dim=1) == targets).float().mean()
        for key, value in (
            ("loss", terms.total), ("ce", terms.ce), ("triplet", terms.triplet),
            ("center", terms.center), ("accuracy", accuracy),
        ):
            sums[key] += value.detach().float() * batch
        step += 1
        if progress and step % 10 == 0:
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{float(sums['loss']) / images_seen:.3f}",
                            img_s=f"{images_seen / elapsed:.0f}")
    seconds = time.perf_counter() - start
    # Statistics over the global batch: sums and image counts of all ranks.
    totals = sum_over_ranks(torch.stack([*sums.values(), torch.tensor(float(images_seen),
                                                                      device=device)]))
    images_seen = int(totals[-1])
    stats = {key: float(value) / images_seen for key, value in zip(keys, totals[:-1], strict=True)}
    stats.update(
        epoch=epoch + 1, lr=lr, epoch_seconds=seconds, images_per_s=images_seen / seconds
    )
    if rank_and_world()[0] != 0:
        return stats
    log.info(
        "epoch %d/%d  loss %.4f (ce %.4f, triplet %.4f, center %.4f)  acc %.3f  lr %.2e  "
        "%.1f s, %.0f img/s",
        epoch + 1, cfg.epochs, stats["loss"], stats["ce"], stats["triplet"], stats["center"],
        stats["accuracy"], lr, seconds, stats["images_per_s"],
    )
    return stats
