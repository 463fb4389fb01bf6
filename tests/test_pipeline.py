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
import yaml

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
    env["PYTHONPATH"] = str(workdir)  # the copy's reid, whose files DVC hashes, not the repo's
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


def assert_metrics_match_per_query(repo: Path, ds: str, headline: str) -> None:
    """evaluate.json and rerank.json agree with their per-query files, intervals and CMC."""
    import pandas as pd

    cmc = pd.read_csv(repo / "plots/cmc" / ds / "cmc.csv")
    for stage, folder in (("evaluate", "per_query"), ("rerank", "per_query_rerank")):
        metrics = json.loads((repo / "metrics" / ds / f"{stage}.json").read_text())
        assert metrics["headline"]["backbone"] == headline
        assert metrics["headline"]["mAP"] == metrics[headline]["mAP"]
        for backbone in BACKBONES:
            m = metrics[backbone]
            table = pd.read_csv(repo / "metrics" / ds / folder / f"{backbone}.csv")
            assert m["mAP"] == round(100 * table["ap"].mean(), 2)
            assert m["rank1"] == round(100 * (table["first_match_rank"] == 1).mean(), 2)
            assert m["rank5"] == round(100 * (table["first_match_rank"] <= 5).mean(), 2)
            for key in ("mAP", "rank1"):
                lo, hi = m["ci95"][key]
                assert lo <= m[key] <= hi
                assert lo < hi or m[key] in (0.0, 100.0)  # only a constant has no spread
            if stage == "evaluate":
                assert round(cmc[backbone].iloc[0], 2) == m["rank1"]  # percent, as the metrics


def test_metrics_agree_with_per_query_results(repro):
    for ds in DATASETS:
        assert_metrics_match_per_query(repro, ds, "resnet50")
    table = (repro / "results/market1501/results.md").read_text()
    assert "mAP 95% CI" in table and "bootstrap over query identities" in table
    # the recipe that made the models, read from the model files: 1 epoch (tiny params)
    assert "| Epochs |" in table and "| 64x32 | 1 |" in table
    assert "Training: lr 0.001, batches of 4 ids x 4 images" in table
    untrained = json.loads((repro / "metrics/market1501/untrained.json").read_text())
    assert set(untrained) == set(BACKBONES)
    assert table.count(", before training") == len(BACKBONES)


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
    for ds in DATASETS:
        assert_metrics_match_per_query(repro, ds, "effnetv2")
    changed = diff["metrics/market1501/evaluate.json"]
    assert changed["headline.backbone"] == {"old": "resnet50", "new": "effnetv2"}


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
    headline = yaml.safe_load((repro / "params.yaml").read_text())["backbone"]
    for ds in DATASETS:
        assert_metrics_match_per_query(repro, ds, headline)
    assert json.loads(run(["dvc", "status", "--json"], repro, env)) == {}
