"""Cross-dataset evaluation: the `cross_eval` cells and the `cross_domain` matrix and tables.

A tiny workspace: both generated datasets downloaded and split, a model file per backbone and
dataset (seeded random weights, in the train stage's format: training adds nothing to what is
tested here), features extracted and evaluated, then every cell and the matrix, each through
its stage script.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from reid.metrics import evaluate_ranking
from reid.metrics.distance import pairwise_distance
from reid.params import BACKBONES
from reid.pipeline.scoring import scores
from reid.report.tables import DISPLAY_NAMES, cross_domain_table
from tests.conftest import write_model_file
from tests.dvc_stages import REPO
from tests.tiny import run_stage, tiny_params

DATASETS = ("market1501", "cuhk03")
SCORE_KEYS = ["mAP", "rank1", "rank5", "rank10", "mINP"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("cross")
    params_file = work / "params.yaml"
    params_file.write_text((REPO / "params.yaml").read_text())
    tiny_params(params_file, tracking=False)
    raw = yaml.safe_load(params_file.read_text())
    raw["eval"]["untrained_baseline"] = False
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        for i, ds in enumerate(DATASETS):
            run_stage("download.py", "--dataset", ds)
            run_stage("split.py", "--dataset", ds)
            for j, backbone in enumerate(BACKBONES):
                write_model_file(work / "models" / backbone / f"{ds}.pt", backbone, ds,
                                 seed=10 * i + j)
            run_stage("extract_features.py", "--dataset", ds)
            run_stage("evaluate.py", "--dataset", ds)
        for train in DATASETS:
            for test in DATASETS:
                run_stage("cross_eval.py", "--train", train, "--test", test)
        run_stage("cross_domain.py")
    return work


def read_json(path: Path):
    return json.loads(path.read_text())


def test_matrix_has_every_pair_and_backbone_with_the_scores(work):
    matrix = read_json(work / "metrics/cross_domain.json")
    assert list(matrix) == list(DATASETS)
    for train in DATASETS:
        assert list(matrix[train]) == list(DATASETS)
        for test in DATASETS:
            assert list(matrix[train][test]) == list(BACKBONES)
            for backbone in BACKBONES:
                values = matrix[train][test][backbone]
                assert list(values) == SCORE_KEYS
                assert all(isinstance(v, float) and 0 <= v <= 100 for v in values.values())
            cell = read_json(work / "metrics/cross_domain" / train / f"{test}.json")
            assert (cell["train"], cell["test"]) == (train, test)
            assert cell["scores"] == matrix[train][test]


def test_diagonal_is_evaluate_json_exactly(work):
    matrix = read_json(work / "metrics/cross_domain.json")
    for ds in DATASETS:
        evaluated = read_json(work / "metrics" / ds / "evaluate.json")
        for backbone in BACKBONES:
            assert matrix[ds][ds][backbone] == {k: evaluated[backbone][k] for k in SCORE_KEYS}


def test_diagonal_reads_the_extracted_features_and_no_model(work, monkeypatch):
    """The diagonal is not embedded again: it runs without the model files."""
    import reid.models.model_file as model_file

    def no_model(*args, **kwargs):
        raise AssertionError("the diagonal loaded a model")

    monkeypatch.chdir(work)
    monkeypatch.setattr(model_file, "read_model_file", no_model)  # imported where used
    cell = work / "metrics/cross_domain/cuhk03/cuhk03.json"
    before = cell.read_text()
    cell.unlink()
    try:
        run_stage("cross_eval.py", "--train", "cuhk03", "--test", "cuhk03")
        after = cell.read_text()
    finally:
        cell.write_text(before)
    assert after == before


def independent_scores(work: Path, train: str, test: str, backbone: str) -> dict[str, float]:
    """The `train` model of `backbone` on the `test` set, through the public embedding API."""
    from reid.api import load_model

    manifest = pd.read_csv(work / "data/split" / test / "manifest.csv")
    query, gallery = (manifest[manifest["split"] == s] for s in ("query", "gallery"))
    model = load_model(work / "models" / backbone / f"{train}.pt", device="cpu")
    result = evaluate_ranking(
        pairwise_distance(model.embed(query["path"].tolist()),
                          model.embed(gallery["path"].tolist())),
        query["pid"].to_numpy(), gallery["pid"].to_numpy(),
        query["camid"].to_numpy(), gallery["camid"].to_numpy(),
    )
    return scores(result)


@pytest.mark.parametrize(("train", "test"), [("market1501", "cuhk03"), ("cuhk03", "market1501")])
def test_off_diagonal_is_the_train_model_on_the_test_set(work, monkeypatch, train, test):
    monkeypatch.chdir(work)  # the manifest's paths are relative to the workspace
    matrix = read_json(work / "metrics/cross_domain.json")
    for backbone in BACKBONES:
        assert matrix[train][test][backbone] == independent_scores(work, train, test, backbone)
    # the check could tell another model apart: the test dataset's own models score differently
    assert any(matrix[train][test][b] != matrix[test][test][b] for b in BACKBONES)
    cell = read_json(work / "metrics/cross_domain" / train / f"{test}.json")
    own = read_json(work / "metrics/cross_domain" / test / f"{test}.json")
    summary = read_json(work / "data/split" / test / "summary.json")
    assert cell["protocol"] == summary["protocol"]
    assert {k: cell[k] for k in ("num_query", "num_valid_queries", "num_gallery")} == {
        k: own[k] for k in ("num_query", "num_valid_queries", "num_gallery")}


def test_tables_show_each_backbone_matrix_and_each_test_protocol(work):
    matrix = read_json(work / "metrics/cross_domain.json")
    text = (work / "results/cross_domain.md").read_text()
    for backbone in BACKBONES:
        assert f"### {DISPLAY_NAMES[backbone]}\n" in text
        section = text.split(f"### {DISPLAY_NAMES[backbone]}\n")[1].split("###")[0]
        assert "| Train \\ Test | market1501 | cuhk03 |" in section
        for train in DATASETS:
            cells = [f"{matrix[train][t][backbone]['mAP']:.1f} / "
                     f"{matrix[train][t][backbone]['rank1']:.1f}" for t in DATASETS]
            assert f"| {train} | {' | '.join(cells)} |" in section
    assert "Each cell: mAP / rank-1 (%) of the model trained on the row's dataset" in text
    for test in DATASETS:
        protocol = read_json(work / "data/split" / test / "summary.json")["protocol"]
        assert f"Test on {test}: {protocol};" in text
    table = pd.read_csv(work / "results/cross_domain.csv")
    assert list(table.columns) == ["backbone", "train", "test", *SCORE_KEYS]
    assert len(table) == len(BACKBONES) * len(DATASETS) ** 2
    for row in table.itertuples(index=False):
        assert {k: getattr(row, k) for k in SCORE_KEYS} == matrix[row.train][row.test][
            row.backbone]


def test_matrix_table_rows_are_train_and_columns_test():
    scores_of = {("a", "a"): 10.0, ("a", "b"): 20.0, ("b", "a"): 30.0, ("b", "b"): 40.0}
    matrix = {train: {test: {"resnet50": {"mAP": v, "rank1": v + 1}}
                      for (tr, test), v in scores_of.items() if tr == train}
              for train in ("a", "b")}
    table = cross_domain_table(matrix, "resnet50")
    assert list(table.columns) == ["Train \\ Test", "a", "b"]
    assert table.values.tolist() == [["a", "10.0 / 11.0", "20.0 / 21.0"],
                                     ["b", "30.0 / 31.0", "40.0 / 41.0"]]


def test_cells_of_datasets_no_longer_listed_are_ignored(work, monkeypatch):
    monkeypatch.chdir(work)
    before = (work / "metrics/cross_domain.json").read_text()
    stale = work / "metrics/cross_domain/msmt17/market1501.json"
    stale.parent.mkdir()
    stale.write_text("{}")
    try:
        run_stage("cross_domain.py")
    finally:
        stale.unlink()
        stale.parent.rmdir()
    assert (work / "metrics/cross_domain.json").read_text() == before


def test_a_missing_cell_names_its_stage(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    cell = work / "metrics/cross_domain/market1501/cuhk03.json"
    saved = cell.read_text()
    cell.unlink()
    try:
        with pytest.raises(SystemExit):
            run_stage("cross_domain.py")
    finally:
        cell.write_text(saved)
    assert "run cross_eval@market1501-cuhk03 first" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--train", "--test"])
def test_a_pair_outside_datasets_is_refused(work, monkeypatch, capsys, flag):
    monkeypatch.chdir(work)
    args = {"--train": "market1501", "--test": "cuhk03", flag: "duke"}
    with pytest.raises(SystemExit):
        run_stage("cross_eval.py", *[x for kv in args.items() for x in kv])
    assert f"{flag} 'duke' is not in params datasets" in capsys.readouterr().err
