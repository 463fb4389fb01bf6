"""End to end: a tiny `dvc repro` in a temporary copy of the repository (the `repro` fixture of
tests/conftest.py, shared with tests/test_dvc_params.py).

Checks that every stage of dvc.yaml ran and wrote its outputs, that MLflow holds one run per
model with its training data and test metrics (the metrics also on a live `mlflow server`),
that a DVC remote shares the results with a fresh clone (and a registered model by its artifact
name), and that `dvc exp run -S backbone=effnetv2` re-runs only the stages that read `backbone`
and shows up in `dvc metrics diff`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from reid.params import BACKBONES
from tests.tiny import BIN, run, run_stage

DATASETS = ("market1501", "cuhk03")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(repro_env) -> dict[str, str]:
    """The environment of the pipeline's commands in the copy (tests/conftest.py)."""
    return repro_env


def test_every_stage_wrote_its_outputs(repro):
    for ds in DATASETS:
        assert any((repro / "data/raw" / ds).rglob("*.*"))
        assert (repro / "data/split" / ds / "manifest.csv").is_file()
        for backbone in BACKBONES:
            assert (repro / "models" / backbone / f"{ds}.pt").is_file()
            assert (repro / "plots/train" / backbone / ds / "curves.png").is_file()
            evals = (repro / "plots/train" / backbone / ds / "eval.csv").read_text()
            assert evals.startswith("epoch,mAP,rank1") and evals.rstrip().endswith(",test")
            assert (repro / "features" / ds / f"{backbone}.npz").is_file()
        assert (repro / "plots/cmc" / ds / "cmc.png").is_file()
        assert list((repro / "results" / ds / "ranked").glob("*.png"))
        table = (repro / "results" / ds / "results.md").read_text()
        assert "+ re-ranking" in table and "Protocol" in table
    assert "detected" in (repro / "results/cuhk03/results.md").read_text()
    cross = json.loads((repro / "metrics/cross_domain.json").read_text())
    assert [list(row) for row in cross.values()] == [list(DATASETS)] * len(DATASETS)
    assert "| Train \\ Test |" in (repro / "results/cross_domain.md").read_text()
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
    assert "| Epochs |" in table and "| 32x16 | 1 |" in table
    assert "Training: lr 0.001, batches of 4 ids x 4 images" in table
    untrained = json.loads((repro / "metrics/market1501/untrained.json").read_text())
    assert set(untrained) == set(BACKBONES)
    assert table.count(", before training") == len(BACKBONES)


def test_pipeline_is_up_to_date_after_repro(repro, env):
    status = run(["dvc", "status", "--json"], repro, env)
    assert json.loads(status) == {}


def test_training_is_reproducible(repro, env, tmp_path):
    """Re-running a train stage with the same params gives the same weights, bit for bit, and
    the same model file, byte for byte (no times or paths in it)."""
    import torch

    model = repro / "models/resnet50/market1501.pt"
    curves = repro / "plots/train/resnet50/market1501"
    before = torch.load(model, weights_only=True)["state_dict"]
    # The curves also hold timings: restored afterwards, as dvc.lock knows them.
    saved = {f: f.read_bytes() for f in [model, *curves.iterdir()]}
    # its MLflow run goes to a store of its own: the same file again would be a second run of
    # the model's digest in the shared store, which the later tests count
    retrain_store = f"sqlite:///{tmp_path / 'retrain-mlflow.db'}"
    # in this process: the first training ran in a process of its own, under `dvc repro`
    run_stage("train.py", "--backbone", "resnet50", "--dataset", "market1501", "--quiet",
              cwd=repro, env={"MLFLOW_TRACKING_URI": retrain_store})
    after = torch.load(model, weights_only=True)["state_dict"]
    same_file = model.read_bytes() == saved[model]
    for path, content in saved.items():
        path.write_bytes(content)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert same_file


def model_runs(client, experiment: str = "reid-pipeline") -> dict[str, list]:
    """The runs of each model file's digest."""
    exp = client.get_experiment_by_name(experiment)
    runs: dict[str, list] = {}
    for r in client.search_runs([exp.experiment_id], max_results=1000):
        runs.setdefault(r.data.tags.get("model_sha256", ""), []).append(r)
    return runs


def assert_model_runs_hold_test_metrics(client, repo: Path, *, trained: bool,
                                        datasets: tuple[str, ...] = DATASETS) -> None:
    """One run per model file with its final test metrics, the same keys for every model."""
    from reid.io import file_digest

    runs = model_runs(client)
    key_sets = set()
    for ds in datasets:
        evaluated = json.loads((repo / "metrics" / ds / "evaluate.json").read_text())
        reranked = json.loads((repo / "metrics" / ds / "rerank.json").read_text())
        for backbone in BACKBONES:
            digest = file_digest(repo / "models" / backbone / f"{ds}.pt", "sha256")
            [run] = [r for r in runs[digest] if "test.mAP" in r.data.metrics]
            metrics = run.data.metrics
            assert run.info.run_name == f"{backbone}-{ds}"
            assert metrics["test.mAP"] == evaluated[backbone]["mAP"]
            assert metrics["test.rerank.mAP"] == reranked[backbone]["mAP"]
            assert metrics["test.mAP_ci95_low"] == evaluated[backbone]["ci95"]["mAP"][0]
            assert ("loss" in metrics) == trained  # the training's own run, when it is here
            key_sets.add(frozenset(k for k in metrics if k.startswith("test.")))
    assert len(key_sets) == 1 and {"test.rank1", "test.mINP", "test.rerank.rank1"} <= set(
        next(iter(key_sets)))


def test_mlflow_holds_one_run_per_model(repro):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{repro / 'test-mlflow.db'}")
    assert_model_runs_hold_test_metrics(client, repro, trained=True)
    exp = client.get_experiment_by_name("reid-pipeline")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    names = {r.info.run_name for r in runs}
    assert names == {f"{b}-{ds}" for b in BACKBONES for ds in DATASETS}  # no per-stage runs
    keys = set().union(*(r.data.metrics for r in runs))
    assert {"loss", "triplet", "center", "accuracy", "lr", "images_per_s", "eval.mAP",
            "selected_epoch"} <= keys
    commits = {r.data.tags["git_commit"] for r in runs}
    head = run(["git", "rev-parse", "HEAD"], repro, dict(os.environ)).strip()
    assert commits == {head}
    assert_runs_name_their_data(client, runs, repro)


def assert_runs_name_their_data(client, runs: list, repo: Path) -> None:
    """The runs table's Dataset column: each training run's rows, by the digest of the rows."""
    from reid.data.manifest import read_manifest
    from reid.params import load_params
    from reid.pipeline.training import training_rows
    from reid.tracking import rows_digest

    params = load_params(repo / "params.yaml")
    for r in runs:
        ds = r.data.tags["dataset"]
        manifest = f"data/split/{ds}/manifest.csv"
        rows, scored, split = training_rows(params, read_manifest(repo / manifest))
        assert split == "test"  # the tiny params score the test split during training
        inputs = {i.dataset.name: i for i in client.get_run(r.info.run_id).inputs.dataset_inputs}
        assert sorted(inputs) == [f"{ds}-test", f"{ds}-train"]
        for name, expected, context in ((f"{ds}-train", rows, "training"),
                                        (f"{ds}-test", scored, "test")):
            assert inputs[name].dataset.digest == rows_digest(expected)
            assert json.loads(inputs[name].dataset.source) == {"uri": manifest}
            tags = {t.key: t.value for t in inputs[name].tags}
            assert tags["mlflow.data.context"] == context and tags["raw_source"] == "generated"


def test_stage_runs_land_on_a_live_mlflow_server(repro, env, tmp_path):
    """A lab's shared server: `MLFLOW_TRACKING_URI=http://...` sends the stage's runs there."""
    import socket
    import time
    import urllib.request

    from mlflow import MlflowClient

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(  # without the GenAI job runners (three more processes)
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        saved = {p: p.read_bytes() for p in (repro / "metrics").rglob("*") if p.is_file()}
        for stage in ("evaluate", "rerank"):  # one dataset: the other runs the same code
            run_stage(f"{stage}.py", "--dataset", "cuhk03", cwd=repro,
                      env={"MLFLOW_TRACKING_URI": uri})
        assert {p: p.read_bytes() for p in saved} == saved  # the same scores, rewritten
        # the server had no training runs: the stages started one run per model for them
        assert_model_runs_hold_test_metrics(MlflowClient(uri), repro, trained=False,
                                            datasets=("cuhk03",))
        assert list((tmp_path / "artifacts").rglob("results.md"))
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_info_names_the_commit_and_the_test_metrics_of_the_file(repro, env, capsys):
    """`reid info` (its `main`, in this process: the metrics are found from the file's path)."""
    from reid.commands import main

    def info(model: Path) -> dict:
        capsys.readouterr()
        assert main(["info", str(model), "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    model = repro / "models/resnet50/market1501.pt"
    evaluated = json.loads((repro / "metrics/market1501/evaluate.json").read_text())
    reranked = json.loads((repro / "metrics/market1501/rerank.json").read_text())
    described = info(model)
    assert described["test_metrics"] == {"test": evaluated["resnet50"],
                                         "test_rerank": reranked["resnet50"]}
    assert described["git_commit"] == run(["git", "rev-parse", "HEAD"], repro, env).strip()
    import torch

    other = repro / "models/resnet50/other.pt"  # another file beside it: no metrics claimed
    saved = torch.load(model, weights_only=True)
    torch.save({**saved, "history": saved["history"][:-1] + [{"epoch": 0, "loss": 9.0}]}, other)
    try:
        assert info(other)["test_metrics"] is None
    finally:
        other.unlink()


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
    # `backbone` picks the headline only: each model's metrics stay in its training's run
    from mlflow import MlflowClient

    runs = [r for rs in model_runs(MlflowClient(env["MLFLOW_TRACKING_URI"])).values()
            for r in rs]
    assert not [r for r in runs if r.data.tags.get("dvc_exp_name")]
    evaluated = {r.data.tags.get("evaluated_dvc_exp_name") for r in runs if "loss" in
                 r.data.metrics and "test.mAP" in r.data.metrics}
    assert len(evaluated) == 1 and evaluated != {None}  # the experiment's name


def test_exp_run_trains_with_two_processes(repro, env):
    """`-S train.nproc=2`: a train stage relaunches itself under torchrun (gloo on CPU), and its
    MLflow run is named after the experiment. One stage: the six run the same command, and which
    stages a params change re-runs is test_dvc_params' and the backbone experiment's to check."""
    stage = "train_resnet50@market1501"
    # batch_size is per process: 2 ids x 4 images each, 4 ids in a global batch
    command = ["dvc", "exp", "run", "-S", "train.nproc=2", "-S", "train.batch_size=8", stage]
    # the workspace before the experiment, for the tests after this one: the params, the lock
    # and the uncached curves (the model comes back from the cache)
    curves = repro / "plots/train/resnet50/market1501"
    saved = {path: path.read_bytes() for path in [repro / "params.yaml", repro / "dvc.lock",
                                                 *curves.iterdir()]}
    proc = subprocess.run(command, cwd=repro, env=env,
                          capture_output=True, text=True, timeout=1500)
    output = proc.stdout + proc.stderr
    try:
        assert proc.returncode == 0, output[-5000:]
        ran = {line.split("'")[1] for line in proc.stdout.splitlines()
               if line.startswith("Running stage")}
        assert ran == {stage}
        assert "launching 2 processes" in output and "rank 1 of 2" in output
        assert json.loads(run(["dvc", "status", "--json", stage], repro, env)) == {}
        # the new model: a run named after the experiment, with its losses and the evaluation
        # during training (read with a fresh sqlite connection: this process's MLflow client
        # may hold an old view)
        with closing(sqlite3.connect(repro / "test-mlflow.db")) as db:
            named = db.execute("select r.run_uuid, r.name, t.value from runs r join tags t on "
                               "r.run_uuid = t.run_uuid where t.key = 'dvc_exp_name'").fetchall()
            [(run_id, name, exp_name)] = named
            keys = {k for (k,) in db.execute(
                "select key from latest_metrics where run_uuid = ?", (run_id,))}
        assert name == f"resnet50-market1501 @ {exp_name}"
        assert {"loss", "triplet", "center", "eval.mAP"} <= keys
    finally:
        for path, content in saved.items():
            path.write_bytes(content)
        run(["dvc", "checkout", "-q", "--force"], repro, env)
        assert json.loads(run(["dvc", "status", "--json"], repro, env)) == {}


def test_a_dvc_remote_shares_data_and_models(repro, env, tmp_path):
    """`dvc push` to a lab's remote, `dvc pull` in a fresh clone: up to date, nothing to train."""
    run(["dvc", "remote", "add", "-d", "lab", str(tmp_path / "remote")], repro, env)
    run(["git", "add", "-A"], repro, env)
    run(["git", "commit", "-qm", "share"], repro, env)
    run(["dvc", "push"], repro, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repro), str(clone)], tmp_path, env)
    run(["dvc", "pull"], clone, env)
    assert json.loads(run(["dvc", "status", "--json"], clone, env)) == {}
    model = "models/resnet50/market1501.pt"
    assert (clone / model).read_bytes() == (repro / model).read_bytes()
    # a registered version of a dvc.yaml artifact (a git tag, as `gto register` makes), by name
    run(["git", "tag", "-a", "resnet50-ibn-a-cuhk03@v1.0.0", "-m", "v1.0.0"], repro, env)
    run(["dvc", "artifacts", "get", str(repro), "resnet50-ibn-a-cuhk03", "--rev", "v1.0.0",
         "-o", str(tmp_path / "got.pt")], tmp_path, env)
    assert (tmp_path / "got.pt").read_bytes() == (repro / "models/resnet50_ibn_a/cuhk03.pt"
                                                  ).read_bytes()
