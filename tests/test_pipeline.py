"""End to end: a tiny `dvc repro` in a temporary copy of the repository.

Checks that every stage of dvc.yaml ran and wrote its outputs, that MLflow received the runs,
and that `dvc exp run -S backbone=effnetv2` re-runs only the stages that read `backbone` and
shows up in `dvc metrics diff`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import tiny_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATASETS = ("market1501", "cuhk03")
BACKBONES = ("resnet50", "resnet50_ibn_a", "effnetv2")

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{tail}"
    return proc.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    work = tmp_path_factory.mktemp("repo")
    for name in files:
        src = REPO / name
        if src.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / name)
    for generated in ("metrics", "results", "plots", "dvc.lock"):
        target = work / generated
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    tiny_params(work / "params.yaml")
    return work


@pytest.fixture(scope="module")
def env(workdir) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'test-mlflow.db'}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.com"
    return env


@pytest.fixture(scope="module")
def repro(workdir, env) -> Path:
    run(["git", "init", "-q"], workdir, env)
    run(["git", "add", "-A"], workdir, env)
    run(["git", "commit", "-qm", "copy"], workdir, env)
    run(["dvc", "repro"], workdir, env)
    return workdir


def test_every_stage_wrote_its_outputs(repro):
    for ds in DATASETS:
        assert any((repro / "data/raw" / ds).rglob("*.*"))
        assert (repro / "data/split" / ds / "manifest.csv").is_file()
        for backbone in BACKBONES:
            assert (repro / "models" / backbone / f"{ds}.pt").is_file()
            assert (repro / "plots/train" / backbone / ds / "curves.png").is_file()
            assert (repro / "features" / ds / f"{backbone}.npz").is_file()
        assert (repro / "plots/cmc" / ds / "cmc.png").is_file()
        assert list((repro / "results" / ds / "ranked").glob("*.png"))
        table = (repro / "results" / ds / "results.md").read_text()
        assert "+ re-ranking" in table and "Protocol" in table
    assert "detected" in (repro / "results/cuhk03/results.md").read_text()
    assert not (repro / "checkpoints/resnet50/market1501/last.pt").exists()


def test_metrics_have_stable_keys_in_range(repro):
    for ds in DATASETS:
        for stage in ("evaluate", "rerank"):
            metrics = json.loads((repro / "metrics" / ds / f"{stage}.json").read_text())
            assert set(metrics["headline"]) == {"mAP", "rank1", "rank5", "rank10"}
            for backbone in BACKBONES:
                assert 0 <= metrics[backbone]["mAP"] <= 100
                assert metrics[backbone]["rank1"] <= metrics[backbone]["rank10"]
            assert metrics["headline"]["mAP"] == metrics["resnet50"]["mAP"]


def test_pipeline_is_up_to_date_after_repro(repro, env):
    status = run(["dvc", "status", "--json"], repro, env)
    assert json.loads(status) == {}


def test_training_is_reproducible(repro, env):
    """Re-running a train stage with the same params gives the same weights, bit for bit."""
    import torch

    model = repro / "models/resnet50/market1501.pt"
    curves = repro / "plots/train/resnet50/market1501"
    before = torch.load(model, weights_only=False)["state_dict"]
    # The outputs also hold timings: restored afterwards, as dvc.lock knows them.
    saved = {f: f.read_bytes() for f in [model, *curves.iterdir()]}
    run([sys.executable, "stages/train.py", "--backbone", "resnet50", "--dataset", "market1501",
         "--quiet"], repro, env)
    after = torch.load(model, weights_only=False)["state_dict"]
    for path, content in saved.items():
        path.write_bytes(content)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_mlflow_received_runs(repro):
    db = sqlite3.connect(repro / "test-mlflow.db")
    names = {row[0] for row in db.execute("select name from runs")}
    keys = {row[0] for row in db.execute("select distinct key from metrics")}
    db.close()
    for ds in DATASETS:
        for backbone in BACKBONES:
            assert f"train-{backbone}-{ds}" in names
        assert f"evaluate-{ds}" in names and f"rerank-{ds}" in names
    assert {"loss", "triplet", "center", "accuracy", "lr", "images_per_s"} <= keys


def test_exp_run_backbone_reruns_only_what_reads_it(repro, env):
    run(["git", "add", "-A"], repro, env)
    run(["git", "commit", "-qm", "repro"], repro, env)
    out = run(["dvc", "exp", "run", "-S", "backbone=effnetv2"], repro, env)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {f"{s}@{ds}" for s in ("evaluate", "rerank") for ds in DATASETS}
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repro, env))
    evaluate = repro / "metrics/market1501/evaluate.json"
    after = json.loads(evaluate.read_text())
    assert after["headline"]["mAP"] == after["effnetv2"]["mAP"]
    changed = diff["metrics/market1501/evaluate.json"]
    assert "headline.mAP" in changed or after["effnetv2"]["mAP"] == after["resnet50"]["mAP"]


def test_exp_run_trains_with_two_processes(repro, env):
    """`-S train.nproc=2`: the train stages relaunch themselves under torchrun (gloo on CPU)."""
    # batch_size is per process: 2 ids x 4 images each, 4 ids in a global batch
    command = ["dvc", "exp", "run", "-S", "train.nproc=2", "-S", "train.batch_size=8"]
    proc = subprocess.run(command, cwd=repro, env=env,
                          capture_output=True, text=True, timeout=1500)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    ran = {line.split("'")[1] for line in proc.stdout.splitlines()
           if line.startswith("Running stage")}
    assert {f"train_{b}@{ds}" for b in ("resnet50", "ibn", "effnetv2") for ds in DATASETS} <= ran
    assert "launching 2 processes" in output and "rank 1 of 2" in output
    for ds in DATASETS:
        metrics = json.loads((repro / "metrics" / ds / "evaluate.json").read_text())
        assert 0 <= metrics["resnet50"]["mAP"] <= 100
    assert json.loads(run(["dvc", "status", "--json"], repro, env)) == {}
