"""Multi-process training (DDP on gloo, 2 CPU processes) against one process on the same batch.

The P x K sampler gives rank r the identities [r * P, (r + 1) * P) of each global batch, the
triplet loss mines over the gathered global batch, DDP averages the model's gradients and the
engine the centres'. Without batch statistics in the model, 2 x 8 images must then train
exactly like 1 x 16 (up to float rounding); with the BNNeck, whose statistics are per rank
unless train.sync_bn, the losses stay close.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reid.distributed import DistInfo, distributed, torchrun_command

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "ddp_driver.py"
LOSS_KEYS = ("loss", "ce", "triplet", "center", "accuracy")


def start_driver(out: Path, nproc: int, batch_size: int, neck: str,
                 *options: str) -> subprocess.Popen:
    """The driver's run in the background, so that runs which do not depend on each other
    overlap (most of a run is starting Python and torch)."""
    out.mkdir(exist_ok=True)
    argv = [str(DRIVER), str(out), str(batch_size), neck, *options]
    command = torchrun_command(nproc, argv) if nproc > 1 else [sys.executable, *argv]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**_env(), "PYTHONPATH": str(REPO)})


def driver_result(proc: subprocess.Popen, out: Path, nproc: int,
                  expect_fail: bool = False) -> list[dict]:
    """Wait for the run of `start_driver`; what each rank saved."""
    _, stderr = proc.communicate(timeout=300)
    if expect_fail:
        assert proc.returncode != 0
        return []
    assert proc.returncode == 0, stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(nproc)]


def run_driver(
    out: Path, nproc: int, batch_size: int, neck: str, *options: str, expect_fail: bool = False
) -> list[dict]:
    proc = start_driver(out, nproc, batch_size, neck, *options)
    return driver_result(proc, out, nproc, expect_fail)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list[dict]]:
    tmp = tmp_path_factory.mktemp("ddp")
    started = {
        f"{neck}-{nproc}": (start_driver(tmp / f"{neck}{nproc}", nproc, 16 // nproc, neck),
                            tmp / f"{neck}{nproc}", nproc)
        for neck in ("identity", "bn")
        for nproc in (1, 2)
    }
    return {name: driver_result(*run) for name, run in started.items()}


def max_weight_diff(a: dict, b: dict) -> float:
    return max(float((a["weights"][k] - b["weights"][k]).abs().max()) for k in a["weights"])


@pytest.mark.parametrize("neck", ["identity", "bn"])
def test_ranks_hold_the_same_weights(runs, neck: str) -> None:
    rank0, rank1 = runs[f"{neck}-2"]
    assert max_weight_diff(rank0, rank1) == 0.0
    assert torch.equal(rank0["centers"], rank1["centers"])
    for a, b in zip(rank0["history"], rank1["history"], strict=True):  # of the global batch
        assert {k: a[k] for k in LOSS_KEYS} == {k: b[k] for k in LOSS_KEYS}


def test_two_processes_train_like_one_on_the_global_batch(runs) -> None:
    (single,), (multi, _) = runs["identity-1"], runs["identity-2"]
    losses = [[h[k] for h in run["history"]] for run in (single, multi)
              for k in ("loss", "ce", "triplet", "center")]
    assert len(single["history"]) == 3
    for a, b in zip(losses[:4], losses[4:], strict=True):  # loss, ce, triplet, center
        assert a == pytest.approx(b, rel=1e-5)
    assert max_weight_diff(single, multi) < 1e-5
    assert float((single["centers"] - multi["centers"]).abs().max()) < 1e-5
    # the weights moved: runs that skipped their steps would also "match"
    moved = max(float((single["weights"][k] - single["initial"][k]).abs().max())
                for k in single["weights"])
    assert moved > 100 * max_weight_diff(single, multi)


def test_with_the_bnneck_losses_stay_close(runs) -> None:
    """Per-rank BNNeck statistics over 8 instead of 16 images: close, not equal."""
    (single,), (multi, _) = runs["bn-1"], runs["bn-2"]
    for a, b in zip(single["history"], multi["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=0.02)
    assert max_weight_diff(single, multi) > 0  # BN statistics differ, as documented


def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path) -> None:
    """Rank 0 dies after epoch 2; the re-run resumes every rank with its own random streams."""
    whole_run = start_driver(tmp_path / "whole", 2, 8, "bn", "noise")
    run_driver(tmp_path / "resumed", 2, 8, "bn", "noise", "crash=2", expect_fail=True)
    (whole, _) = driver_result(whole_run, tmp_path / "whole", 2)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "rank0.pt").exists()
    (resumed, _) = run_driver(tmp_path / "resumed", 2, 8, "bn", "noise")
    assert max_weight_diff(whole, resumed) == 0.0
    for a, b in zip(whole["history"], resumed["history"], strict=True):
        assert {k: a[k] for k in LOSS_KEYS} == {k: b[k] for k in LOSS_KEYS}


def test_plain_run_is_one_process(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed(torch.device("cpu")) as (info, device):
        assert info == DistInfo() and info.is_main and device == torch.device("cpu")


def test_torchrun_command() -> None:
    command = torchrun_command(4, ["stages/train.py", "--dataset", "cuhk03"])
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in command and "--standalone" in command
    assert command[-3:] == ["stages/train.py", "--dataset", "cuhk03"]
