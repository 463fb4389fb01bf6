"""Multi-process training on torch.distributed: DistributedDataParallel launched by torchrun.

`torchrun --nproc_per_node=N` (or a train stage with `train.nproc: N`, which starts torchrun
itself) runs N copies of the stage; each reads its rank from the environment. Backend: NCCL on
CUDA (one GPU per process, by LOCAL_RANK), gloo on the CPU. Every helper here is a no-op in a
plain single-process run, so the engine calls them unconditionally.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, outputs, metrics and MLflow runs."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The command that re-runs `argv` (a script and its arguments) in `nproc` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", *argv]


def relaunch(nproc: int, argv: Sequence[str]) -> int:
    """Run `argv` under torchrun with `nproc` processes; its exit status (0 when all succeed)."""
    command = torchrun_command(nproc, argv)
    log.info("launching %d processes: %s", nproc, " ".join(command))
    return subprocess.call(command)


@contextmanager
def distributed(device: torch.device) -> Iterator[tuple[DistInfo, torch.device]]:
    """Join the process group when launched by torchrun; yields (DistInfo, this rank's device).

    `device` is the device chosen from params: under CUDA each rank takes GPU LOCAL_RANK and
    talks NCCL; on the CPU the ranks talk gloo. A plain run yields (DistInfo(), device).
    """
    if not launched_by_torchrun():
        yield DistInfo(), device
        return
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if device.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank {info.rank}: LOCAL_RANK {info.local_rank} but only "
                               f"{torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield info, device
    finally:
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each rank the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss may depend on every slice
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_batch(
    feat: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The global batch (all ranks' rows, rank order) and the offset of this rank's rows.

    feat (B, D) keeps its gradient path through the gather; targets (B,) do not need one.
    Single process: (feat, targets, 0).
    """
    if not is_distributed():
        return feat, targets, 0
    parts = [torch.empty_like(targets) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, targets.contiguous())
    return _GatherWithGrad.apply(feat), torch.cat(parts), dist.get_rank() * feat.shape[0]


def broadcast_parameters(params: Iterable[torch.nn.Parameter]) -> None:
    """Copy rank 0's values into every rank (for parameters outside DistributedDataParallel)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for param in params:
            dist.broadcast(param.data, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Mean of each gradient over the ranks (for parameters outside DistributedDataParallel)."""
    if not is_distributed():
        return
    world = dist.get_world_size()
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(world)


def gather_objects(obj: object) -> list[object]:
    """Every rank's `obj`, in rank order ([obj] in a single process)."""
    if not is_distributed():
        return [obj]
    objects: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(objects, obj)
    return objects


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """In place: the tensor summed over the ranks (for epoch statistics)."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor
