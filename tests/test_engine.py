"""The training engine: precision selection, LR schedule, checkpoints and resume after a kill."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reid.engine.checkpoint import load_checkpoint, save_checkpoint
from reid.engine.runtime import autocast_dtype
from reid.engine.train import TrainConfig, best_epoch, grad_scaler, lr_factor

HERE = Path(__file__).resolve().parent


def test_cpu_trains_in_fp32():
    assert autocast_dtype(torch.device("cpu"), amp=True) is None
    assert not grad_scaler(torch.device("cpu"), None).is_enabled()


def test_cuda_prefers_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(torch.device("cuda"), amp=True) is torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), amp=False) is None


def test_cuda_without_bf16_uses_fp16_with_one_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    dtype = autocast_dtype(torch.device("cuda"), amp=True)
    assert dtype is torch.float16


def test_grad_scaler_only_for_fp16():
    # CUDA is absent here (torch would disable a CUDA scaler), so decide on the CPU device:
    # the same function enables it for fp16 only; bf16 and fp32 need none.
    cpu = torch.device("cpu")
    assert grad_scaler(cpu, torch.float16).is_enabled()
    assert not grad_scaler(cpu, torch.bfloat16).is_enabled()
    assert not grad_scaler(cpu, None).is_enabled()


def test_forced_autocast_dtype_applies_on_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    assert autocast_dtype(cuda, amp=True, dtype="float16") is torch.float16
    assert autocast_dtype(cuda, amp=True, dtype="bfloat16") is torch.bfloat16
    assert autocast_dtype(torch.device("cpu"), amp=True, dtype="float16") is None
    assert autocast_dtype(cuda, amp=False, dtype="float16") is None
    with pytest.raises(ValueError, match="'fp8'"):
        autocast_dtype(cuda, amp=True, dtype="fp8")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(ValueError, match="no native bf16"):
        autocast_dtype(cuda, amp=True, dtype="bfloat16")
    assert autocast_dtype(torch.device("cpu"), amp=True, dtype="bfloat16") is None


def test_emulated_bf16_counts_as_unsupported(monkeypatch):
    # pre-Ampere GPUs emulate bf16 (slowly): torch reports it unless emulation is excluded
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)
    assert autocast_dtype(torch.device("cuda"), amp=True) is torch.float16


def test_lr_schedule_warmup_then_steps():
    cfg = TrainConfig(epochs=60, warmup_epochs=10, warmup_factor=0.01, milestones=(30, 55))
    assert lr_factor(0, cfg) == pytest.approx(0.01)
    assert lr_factor(5, cfg) == pytest.approx(0.01 * 0.5 + 0.5)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(29, cfg) == pytest.approx(1.0)
    assert lr_factor(30, cfg) == pytest.approx(0.1)
    assert lr_factor(55, cfg) == pytest.approx(0.01)


def test_checkpoint_is_ignored_for_other_settings(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"fingerprint": "abc", "epoch": 3})
    assert load_checkpoint(path, "abc")["epoch"] == 3
    assert load_checkpoint(path, "other") is None
    path.write_bytes(b"garbage")
    assert load_checkpoint(path, "abc") is None


def _start(ckpt: Path, out: Path, delay: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "resume_driver.py"), str(ckpt), str(out), str(delay)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _run(ckpt: Path, out: Path, delay: float = 0.0) -> subprocess.CompletedProcess:
    return _wait(_start(ckpt, out, delay))


def _wait(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    full = tmp_path / "full.pt"
    uninterrupted = _start(tmp_path / "a" / "last.pt", full)  # meanwhile, the killed run

    ckpt = tmp_path / "b" / "last.pt"
    killed = tmp_path / "killed.pt"
    child = _start(ckpt, killed, 0.04)
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.1)
    assert child.poll() is None, "the run ended before it could be killed"
    child.kill()
    child.wait()
    assert not killed.exists()
    stopped_at = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= stopped_at < 3

    proc = _run(ckpt, killed)
    assert proc.returncode == 0, proc.stderr
    assert "resuming from" in proc.stderr
    proc = _wait(uninterrupted)
    assert proc.returncode == 0, proc.stderr
    a = torch.load(full, weights_only=True)
    b = torch.load(killed, weights_only=True)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def _tiny_training(tmp_path: Path, **kwargs):
    """The resume driver's tiny net and data through the real engine, for 3 epochs."""
    from reid.data.batches import LoaderBatches
    from reid.data.sampler import RandomIdentitySampler
    from reid.engine.train import TrainConfig, train
    from reid.losses import ReidLoss
    from reid.models.head import ReidModel
    from tests.resume_driver import NUM_IDS, SlowRandomImages, TinyBackbone

    torch.manual_seed(0)
    model = ReidModel(TinyBackbone(), NUM_IDS)
    data = SlowRandomImages(0.0)
    cfg = TrainConfig(epochs=3, batch_size=16, num_instances=4, warmup_epochs=1,
                      milestones=(2,), num_workers=0, seed=7)
    device = torch.device("cpu")
    batches = LoaderBatches(data, RandomIdentitySampler(data.labels, 16, 4, seed=7), device,
                            num_workers=0, pin_memory=False)
    history = train(model, ReidLoss(NUM_IDS, TinyBackbone.num_features), batches, cfg,
                    device=device, checkpoint_path=tmp_path / "last.pt", progress=False,
                    **kwargs)
    return model, history


def test_best_epoch_is_the_first_of_equal_maxima_among_scored_epochs():
    history = [{"epoch": 1, "eval.mAP": 0.2}, {"epoch": 2}, {"epoch": 3, "eval.mAP": 0.5},
               {"epoch": 4, "eval.mAP": 0.5}, {"epoch": 5, "eval.mAP": 0.4}]
    assert best_epoch(history, "mAP") == 3
    assert best_epoch([{"epoch": 1}, {"epoch": 2}], "mAP") is None


def test_evaluation_during_training_and_keeping_the_best_epoch(tmp_path):
    """Scored at the chosen epochs in eval mode; `keep_best` ends on that epoch's weights."""
    scripted = iter([20.0, 50.0, 30.0])
    seen = []

    def evaluator(model):
        assert not model.training
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"mAP": next(scripted), "rank1": 1.0}

    model, history = _tiny_training(tmp_path, evaluator=evaluator, eval_period=1,
                                    keep_best="mAP")
    assert [h["eval.mAP"] for h in history] == [20.0, 50.0, 30.0]
    assert all(h["eval_seconds"] >= 0 for h in history)
    assert model.training  # back in training mode after each evaluation
    final = model.state_dict()
    assert all(torch.equal(final[k], seen[1][k]) for k in final)  # epoch 2, the best
    assert not all(torch.equal(final[k], seen[2][k]) for k in final)


def test_eval_period_scores_every_n_epochs_and_the_last(tmp_path):
    from reid.engine.train import eval_due

    assert [e + 1 for e in range(12) if eval_due(e, 12, 4)] == [4, 8, 12]
    assert [e + 1 for e in range(10) if eval_due(e, 10, 4)] == [4, 8, 10]
    assert not any(eval_due(e, 10, 0) for e in range(10))
    calls = []
    _, history = _tiny_training(tmp_path, evaluator=lambda m: calls.append(1) or {"mAP": 1.0},
                                eval_period=2)
    assert len(calls) == 2 and ["eval.mAP" in h for h in history] == [False, True, True]


def test_evaluating_during_training_does_not_change_the_training(tmp_path):
    """Scoring draws random numbers (a DataLoader seeds itself); the weights must not move."""
    def evaluator(model):
        torch.rand(3)
        list(torch.utils.data.DataLoader(range(4), shuffle=True))
        return {"mAP": 1.0}

    plain, _ = _tiny_training(tmp_path / "a")
    scored, _ = _tiny_training(tmp_path / "b", evaluator=evaluator, eval_period=1)
    a, b = plain.state_dict(), scored.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("period", "written"), [(1, [0, 1]), (2, [1]), (0, [])])
def test_checkpoints_every_period_and_not_after_the_last_epoch(tmp_path, monkeypatch, period,
                                                              written):
    import reid.engine.train as engine

    saved = []
    monkeypatch.setattr(engine, "save_checkpoint", lambda path, state: saved.append(
        state["epoch"]))
    _, history = _tiny_training(tmp_path, checkpoint_period=period)
    assert len(history) == 3 and saved == written  # 0-based epochs of a 3-epoch run


def test_a_run_resumes_from_its_last_periodic_checkpoint(tmp_path):
    """Killed in epoch 3 of 3 with checkpoints every 2 epochs: the re-run trains epoch 3 again
    from the epoch-2 checkpoint and ends as the uninterrupted run."""
    full_model, full = _tiny_training(tmp_path / "full")

    def crash(stats):
        if stats["epoch"] == 3:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        _tiny_training(tmp_path / "b", checkpoint_period=2, on_epoch=crash)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 1
    model, resumed = _tiny_training(tmp_path / "b", checkpoint_period=2)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in full]
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
