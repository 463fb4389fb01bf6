"""`reid.tracking`: one MLflow run per trained model, found again by the model file's digest."""

from __future__ import annotations

import dataclasses
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from reid.data.manifest import write_manifest
from reid.io import file_digest
from reid.params import load_params
from reid.paths import manifest_path, split_dir
from reid.tracking import EXPERIMENT_TAGS, Tracker, model_params, model_run_name, rows_digest
from tests.dvc_stages import REPO

EXPERIMENT = "reid-test"


@pytest.fixture
def store(tmp_path, monkeypatch) -> MlflowClient:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.chdir(tmp_path)  # artifacts of a new experiment go under the working folder
    return MlflowClient(uri)


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def model_tracker(params, **kwargs) -> Tracker:
    return Tracker(True, EXPERIMENT, model_run_name("resnet50", "market1501"), params=params,
                   run_params={"run.backbone": "resnet50", "run.dataset": "market1501"},
                   match=lambda flat: model_params(flat, "resnet50", "market1501"),
                   parent={"stage": "train_resnet50"}, **kwargs)


def test_evaluation_continues_the_training_run_while_params_agree(store, params):
    with model_tracker(params, tags={"stage": "train_resnet50"}) as train:
        train.log_metrics({"loss": 3.0}, step=1)
        train.set_tags({"model_sha256": "abc"})
    with model_tracker(params, find={"model_sha256": "abc"}) as evaluate:
        evaluate.log_metrics({"test.mAP": 20.5})
    assert evaluate.run_id == train.run_id
    run = store.get_run(train.run_id)
    assert run.data.metrics == {"loss": 3.0, "test.mAP": 20.5}
    assert run.data.tags["stage"] == "train_resnet50"  # the training's tags are kept
    assert run.info.run_name == "resnet50-market1501"
    experiment = store.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_other_params_or_another_model_start_a_new_run(store, params, monkeypatch):
    with model_tracker(params, tags={"stage": "train_resnet50"}) as train:
        train.set_tags({"model_sha256": "abc"})
    cosine = dataclasses.replace(params, eval=dataclasses.replace(params.eval, metric="cosine"))
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lynx")
    with model_tracker(cosine, find={"model_sha256": "abc"}) as evaluate:
        evaluate.log_metrics({"test.mAP": 21.0})
    with model_tracker(params, find={"model_sha256": "def"}) as other:
        pass
    assert len({train.run_id, evaluate.run_id, other.run_id}) == 3
    run = store.get_run(evaluate.run_id)
    assert run.data.params["eval.metric"] == "cosine"
    assert run.data.tags["model_sha256"] == "abc"
    assert run.data.tags["dvc_exp_name"] == "brisk-lynx"
    assert run.info.run_name == "resnet50-market1501 @ brisk-lynx"
    assert "test.mAP" not in store.get_run(train.run_id).data.metrics
    assert run.data.tags["mlflow.parentRunId"] == train.run_id  # nested under its training
    assert "mlflow.parentRunId" not in store.get_run(other.run_id).data.tags  # no such model
    # the second evaluation under the cosine params finds the cosine run, not the training's
    with model_tracker(cosine, find={"model_sha256": "abc"}) as rerank:
        pass
    assert rerank.run_id == evaluate.run_id
    euclidean_k5 = dataclasses.replace(params, rerank=dataclasses.replace(params.rerank, k1=5))
    with model_tracker(euclidean_k5, find={"model_sha256": "abc"}) as third:
        pass
    assert store.get_run(third.run_id).data.tags["mlflow.parentRunId"] == train.run_id


def test_without_its_training_run_a_new_run_nests_under_nothing(store, params):
    """A model trained with tracking off: its evaluations are not nested under each other."""
    with model_tracker(params, find={"model_sha256": "abc"}) as first:
        pass
    cosine = dataclasses.replace(params, eval=dataclasses.replace(params.eval, metric="cosine"))
    with model_tracker(cosine, find={"model_sha256": "abc"}) as second:
        pass
    assert first.run_id != second.run_id
    for run_id in (first.run_id, second.run_id):
        assert "mlflow.parentRunId" not in store.get_run(run_id).data.tags


def test_params_that_do_not_bear_on_the_model_keep_its_run(store, params):
    with model_tracker(params) as train:
        train.set_tags({"model_sha256": "abc"})
    others = dataclasses.replace(
        params, backbone="effnetv2", report=dataclasses.replace(params.report, top_k=3),
        models={**params.models, "effnetv2": dataclasses.replace(params.models["effnetv2"],
                                                                 epochs=99)})
    with model_tracker(others, find={"model_sha256": "abc"}) as evaluate:
        pass
    assert evaluate.run_id == train.run_id
    rerank = dataclasses.replace(params, rerank=dataclasses.replace(params.rerank, k1=5))
    with model_tracker(rerank, find={"model_sha256": "abc"}) as new:
        pass
    assert new.run_id != train.run_id


def test_a_tag_value_that_needs_quoting_is_refused(store, params):
    with pytest.raises(ValueError, match="cannot be searched for"):
        with model_tracker(params, find={"model_sha256": "x' or '1"}):
            pass


def test_an_older_experiment_gets_the_runs_view_tag(store, params):
    experiment_id = store.create_experiment(EXPERIMENT)
    with model_tracker(params):
        pass
    tags = store.get_experiment(experiment_id).tags
    assert {k: tags.get(k) for k in EXPERIMENT_TAGS} == EXPERIMENT_TAGS


def test_a_disabled_tracker_does_nothing(store, params):
    with Tracker(False, EXPERIMENT, "x", params=params) as tracker:
        tracker.log_metrics({"a": 1.0})
        tracker.log_model(torch.nn.Linear(2, 2))
        tracker.log_dataset(pd.DataFrame({"a": [1]}), "x", "x.csv", "training")
    assert tracker.run_id is None
    assert store.get_experiment_by_name(EXPERIMENT) is None


def test_a_training_run_names_the_rows_it_trained_on(store, params):
    """The runs table's Dataset column: the training rows and the rows scored during training,
    each with the digest of its rows, the manifest as source and its context, logged once even
    when a resumed training logs them again into its run."""
    from reid.pipeline.training import log_training_data

    manifest = pd.DataFrame({
        "path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"], "pid": [3, 3, 5, 7, 7],
        "camid": [1, 2, 1, 1, 2], "split": ["train", "train", "train", "query", "gallery"],
        "label": [0, 0, 1, -1, -1]})
    split_dir("market1501").mkdir(parents=True)
    write_manifest(manifest, manifest_path("market1501"))
    (split_dir("market1501") / "summary.json").write_text(json.dumps({"source": "generated"}))
    sha256 = file_digest(manifest_path("market1501"), "sha256")
    train, test = manifest.iloc[:3], manifest.iloc[3:]
    run_id = None
    for _ in range(2):  # the training, then its resumption in the same run
        with model_tracker(params, run_id=run_id) as tracker:
            log_training_data(tracker, "market1501", sha256, train, test, "test")
        run_id = tracker.run_id
    logged_inputs = store.get_run(run_id).inputs.dataset_inputs
    assert sorted(i.dataset.name for i in logged_inputs) == ["market1501-test", "market1501-train"]
    inputs = {i.dataset.name: i for i in logged_inputs}
    for name, rows, context in (("market1501-train", train, "training"),
                                ("market1501-test", test, "test")):
        logged = inputs[name]
        assert logged.dataset.digest == rows_digest(rows)
        assert logged.dataset.source_type == "local"
        assert json.loads(logged.dataset.source) == {"uri": "data/split/market1501/manifest.csv"}
        assert json.loads(logged.dataset.profile)["num_rows"] == len(rows)
        assert {t.key: t.value for t in logged.tags} == {
            "mlflow.data.context": context, "raw_source": "generated", "manifest_sha256": sha256}
    assert rows_digest(train) != rows_digest(test)
    assert rows_digest(test.reset_index(drop=True)) == rows_digest(test)  # rows, not positions
    assert rows_digest(train.assign(label=[1, 1, 0])) != rows_digest(train)


def test_logged_model_gives_back_the_same_embeddings(store, params):
    from reid.engine.extract import extract_features
    from reid.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet50", 4).eval()
    with model_tracker(params) as tracker:
        tracker.log_model(model)
    loaded = mlflow.pytorch.load_model(f"runs:/{tracker.run_id}/model")
    images = torch.rand(3, 3, 64, 32)
    loader = [(images, torch.zeros(3))]
    cpu = torch.device("cpu")
    np.testing.assert_array_equal(extract_features(loaded, loader, device=cpu),
                                  extract_features(model, loader, device=cpu))
