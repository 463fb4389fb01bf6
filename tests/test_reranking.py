"""Re-ranking's parameters: fixed from params, or chosen per backbone on the validation split
(never the test split), and recorded in rerank.json, the results notes and MLflow."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
import yaml

from reid.errors import InputError
from reid.metrics import evaluate_ranking
from reid.params import BACKBONES, ParamsError, RerankGridParams, load_params, parse_params
from reid.pipeline import evaluation
from reid.pipeline.evaluation import evaluate, rerank
from reid.pipeline.reranking import (
    RerankChoice,
    choose_on_validation,
    load_validation_features,
    rerank_choices,
)
from reid.report.results import results_notes
from tests.dvc_stages import REPO
from tests.reference_metrics import k_reciprocal_rerank_dense

GRID = RerankGridParams(k1=[2, 5, 20], k2=[1, 3], lambda_value=[0.3, 0.9])
VAL_SEEDS = dict(zip(BACKBONES, (1, 2, 4), strict=True))  # each picks another grid point


def split_arrays(seed: int, ids: int = 6, dim: int = 8, spread: float = 1.2
                 ) -> dict[str, np.ndarray]:
    """A query / gallery split in the features' layout: `ids` people with 2 images on each of
    cameras 0-2, the first of each camera a query."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(ids), 6)
    camids = np.tile(np.repeat(np.arange(3), 2), ids)
    feats = (rng.normal(size=(ids, dim))[pids] + spread * rng.normal(size=(len(pids), dim)))
    first = np.arange(len(pids)) % 2 == 0
    return {"query": feats[first].astype(np.float32), "gallery": feats[~first].astype(np.float32),
            "query_pids": pids[first], "query_camids": camids[first],
            "gallery_pids": pids[~first], "gallery_camids": camids[~first]}


def reference_maps(val: dict[str, np.ndarray], grid: RerankGridParams) -> dict[tuple, float]:
    """Each grid point's validation mAP, by the dense published re-ranking."""
    q, g = val["query"].astype(np.float64), val["gallery"].astype(np.float64)
    return {point: evaluate_ranking(k_reciprocal_rerank_dense(q, g, *point), val["query_pids"],
                                    val["gallery_pids"], val["query_camids"],
                                    val["gallery_camids"])["mAP"]
            for point in itertools.product(grid.k1, grid.k2, grid.lambda_value)}


@pytest.fixture
def params():
    return load_params(REPO / "params.yaml")


def with_rerank(params, **changes):
    return dataclasses.replace(params, rerank=dataclasses.replace(params.rerank, **changes))


@pytest.mark.parametrize("seed", VAL_SEEDS.values())
def test_the_choice_is_the_grid_point_of_best_validation_map(params, seed):
    val = split_arrays(seed)
    maps = reference_maps(val, GRID)
    best = max(maps.values())
    expected = next(point for point, m in maps.items() if m == best)
    assert len(set(maps.values())) > 1 and expected != next(iter(maps))  # the grid matters
    choice = choose_on_validation(val, params.eval, GRID)
    assert (choice.k1, choice.k2, choice.lambda_value) == expected
    assert choice.validation_mAP == round(100 * best, 2)
    assert choice.record() == {
        "k1": expected[0], "k2": expected[1], "lambda_value": expected[2],
        "select": "validation", "validation_ids": 6, "validation_queries": 18,
        "validation_gallery": 18, "grid_points": 12, "validation_mAP": round(100 * best, 2)}


def test_ties_go_to_the_first_point_in_grid_order(params):
    val = split_arrays(0, spread=0.01)  # people far apart: every point scores mAP 100
    grid = RerankGridParams(k1=[2, 5], k2=[1, 3], lambda_value=[0.3, 0.9])
    assert set(reference_maps(val, grid).values()) == {1.0}
    choice = choose_on_validation(val, params.eval, grid)
    assert (choice.k1, choice.k2, choice.lambda_value) == (2, 1, 0.3)
    reordered = RerankGridParams(k1=[5, 2], k2=[3, 1], lambda_value=[0.9, 0.3])
    choice = choose_on_validation(val, params.eval, reordered)
    assert (choice.k1, choice.k2, choice.lambda_value) == (5, 3, 0.9)


def write_features(root, dataset: str, *, poison_test: bool = False) -> dict[str, dict]:
    """`features/<ds>/<b>.npz` of every backbone with a validation split (`val_*`, its own per
    backbone) and the split summary: what evaluate and rerank read."""
    (root / "data/split" / dataset).mkdir(parents=True)
    (root / "data/split" / dataset / "summary.json").write_text(json.dumps(
        {"protocol": "p", "source": "generated", "num_train_images": 60, "num_train_ids": 10}))
    (root / "features" / dataset).mkdir(parents=True)
    written = {}
    for i, backbone in enumerate(BACKBONES):
        f = split_arrays(10 + i, ids=8)
        if poison_test:  # anything computed from the test features is NaN or fails
            f["query"] = np.full_like(f["query"], np.nan)
            f["gallery"] = np.full_like(f["gallery"], np.nan)
        for split in ("query", "gallery"):
            f[f"{split}_paths"] = np.array([f"data/raw/x/{split}/{j:04d}.jpg"
                                            for j in range(len(f[f"{split}_pids"]))])
        f.update({f"val_{k}": v for k, v in split_arrays(VAL_SEEDS[backbone]).items()})
        f["model_info"] = np.array(json.dumps({
            "model_sha256": str(i) * 64, "epochs": 2, "input_size": [64, 32],
            "pretrained": False, "selected": None}))
        np.savez(root / "features" / dataset / f"{backbone}.npz", **f)
        written[backbone] = f
    return written


def test_the_choice_never_reads_the_test_split(params, tmp_path, monkeypatch):
    """Only `val_*` arrays are read for the choice: with NaN test features it is the same."""
    monkeypatch.chdir(tmp_path)
    write_features(tmp_path, "ds", poison_test=True)
    read = []
    npz_item = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, key: read.append(key) or npz_item(self, key))
    choices = rerank_choices(with_rerank(params, select="validation", grid=GRID), "ds")
    assert read and all(key.startswith("val_") for key in read)
    for backbone, seed in VAL_SEEDS.items():
        assert choices[backbone] == choose_on_validation(split_arrays(seed), params.eval, GRID)
    assert len({(c.k1, c.k2, c.lambda_value) for c in choices.values()}) == 3  # one each


def test_validation_needs_the_validation_features(params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "features/ds").mkdir(parents=True)
    np.savez(tmp_path / "features/ds/resnet50.npz", **split_arrays(0))
    with pytest.raises(InputError, match=r"features/ds/resnet50\.npz: no validation split"):
        load_validation_features("resnet50", "ds")


class RecordingTracker:
    """Stands for `reid.tracking.Tracker`: the metrics each model's run would get."""

    logged: dict[str, dict[str, float]] = {}

    def __init__(self, *args, tags, **kwargs):
        self.backbone = tags["backbone"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def log_metrics(self, values):
        self.logged.setdefault(self.backbone, {}).update(values)

    def log_artifact(self, *args):
        pass


def run_stages(params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    written = write_features(tmp_path, "ds")
    RecordingTracker.logged = {}
    monkeypatch.setattr(evaluation, "Tracker", RecordingTracker)
    params = dataclasses.replace(params, report=dataclasses.replace(params.report,
                                                                    num_queries=0))
    evaluate(params, "ds")
    return written, rerank(params, "ds")


def test_rerank_chosen_on_validation_is_recorded(params, tmp_path, monkeypatch):
    params = with_rerank(params, select="validation", grid=GRID)
    written, output = run_stages(params, tmp_path, monkeypatch)
    saved = json.loads((tmp_path / "metrics/ds/rerank.json").read_text())
    assert saved == json.loads(json.dumps(output))
    notes = (tmp_path / "results/ds/results.md").read_text()
    assert "chosen for each backbone on the validation split (next note)" in notes
    assert "among the 12 points of k1 in [2, 5, 20] x k2 in [1, 3] x lambda in [0.3, 0.9]" in (
        notes)
    assert "on the validation split (6 training identities held out of training, 18 query " \
           "and 18 gallery images; never the test split)" in notes
    for backbone, seed in VAL_SEEDS.items():
        choice = choose_on_validation(split_arrays(seed), params.eval, GRID)
        assert saved["parameters"][backbone] == choice.record()
        # the test split re-ranked once, with the choice
        f = written[backbone]
        distmat = k_reciprocal_rerank_dense(f["query"].astype(np.float64),
                                            f["gallery"].astype(np.float64),
                                            choice.k1, choice.k2, choice.lambda_value)
        expected = evaluate_ranking(distmat, f["query_pids"], f["gallery_pids"],
                                    f["query_camids"], f["gallery_camids"])["mAP"]
        assert saved[backbone]["mAP"] == round(100 * expected, 2)
        assert (f"{backbone} k1={choice.k1}, k2={choice.k2}, lambda={choice.lambda_value} "
                f"(validation mAP {choice.validation_mAP:.2f})") in notes
        logged = RecordingTracker.logged[backbone]
        assert {k: logged[f"rerank.chosen.{k}"] for k in ("k1", "k2", "lambda_value")} == {
            "k1": choice.k1, "k2": choice.k2, "lambda_value": choice.lambda_value}
        assert logged["rerank.chosen.validation_mAP"] == choice.validation_mAP
        assert logged["test.rerank.mAP"] == saved[backbone]["mAP"]


def test_fixed_parameters_leave_rerank_json_as_it_was(params, tmp_path, monkeypatch):
    assert params.rerank.select == "fixed"  # the default: the paper's values
    _, output = run_stages(params, tmp_path, monkeypatch)
    assert list(output) == ["headline", *BACKBONES]
    notes = (tmp_path / "results/ds/results.md").read_text()
    assert (f"Re-ranking: k-reciprocal on euclidean distances, k1={params.rerank.k1}, "
            f"k2={params.rerank.k2}, lambda={params.rerank.lambda_value}.") in notes
    assert "validation" not in notes
    assert not any(k.startswith("rerank.chosen") for m in RecordingTracker.logged.values()
                   for k in m)


def notes_for(params, gallery_per_identity, plain_maps, reranked_maps, k1s):
    protocol = {"summary": {"protocol": "p", "source": "s", "num_train_images": 1,
                            "num_train_ids": 1},
                "num_query": 1, "num_valid_queries": 1, "num_skipped_queries": 0,
                "num_gallery": 1, "gallery_per_identity": gallery_per_identity}
    reranking = {b: RerankChoice(k1, 6, 0.3, "fixed").record()
                 for b, k1 in zip(BACKBONES, k1s, strict=True)}
    return results_notes(params.eval, params.rerank, "resnet50", protocol, {},
                         reranking=reranking,
                         plain={b: {"mAP": m} for b, m in zip(BACKBONES, plain_maps, strict=True)},
                         reranked={b: {"mAP": m} for b, m in
                                   zip(BACKBONES, reranked_maps, strict=True)})


def test_notes_say_why_reranking_lowers_map_where_it_does(params):
    lowers = [n for n in notes_for(params, 6.17, [10, 10, 10], [7, 11, 9], [20, 20, 20])
              if n.startswith("Re-ranking lowers")]
    assert lowers == ["Re-ranking lowers the mAP of resnet50, effnetv2: the gallery holds 6.2 "
                      "images per query identity on average, fewer than k1 = 20, so the "
                      "k-reciprocal neighbourhoods fill with other people."]
    lowers = [n for n in notes_for(params, 6.0, [10, 10, 10], [7, 9, 9], [20, 10, 5])
              if n.startswith("Re-ranking lowers")]  # k1 = 5 is no more than 6 per identity
    assert lowers == ["Re-ranking lowers the mAP of resnet50, resnet50_ibn_a: the gallery holds "
                      "6.0 images per query identity on average, fewer than k1 (20 for "
                      "resnet50, 10 for resnet50_ibn_a), so the k-reciprocal neighbourhoods "
                      "fill with other people."]
    for plain, reranked, k1s in (([10] * 3, [10, 12, 11], [20] * 3), ([10] * 3, [9] * 3, [5] * 3)):
        assert not [n for n in notes_for(params, 6.0, plain, reranked, k1s)
                    if n.startswith("Re-ranking lowers")]


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["rerank"].update(select="validation"),
     "rerank.select: validation chooses k1, k2 and lambda_value on the validation split, so it "
     "needs eval.val_ids > 0 (got 0)"),
    (lambda r: r["rerank"].update(select="test"), "rerank.select: 'test' is not one of fixed"),
    (lambda r: r["rerank"]["grid"].update(k1=[]), "rerank.grid.k1 must list 1 to 10 different"),
    (lambda r: r["rerank"]["grid"].update(k2=[3, 3]), "rerank.grid.k2 must list 1 to 10"),
    (lambda r: r["rerank"]["grid"].update(k1=list(range(1, 12))), "rerank.grid.k1 must list"),
    (lambda r: r["rerank"]["grid"].update(k1=[5, 0]), "rerank.grid.k1[1] must be >= 1, got 0"),
    (lambda r: r["rerank"]["grid"].update(lambda_value=[1.5]),
     "rerank.grid.lambda_value[0] must be in [0, 1], got 1.5"),
    (lambda r: r["rerank"]["grid"].pop("k2"), "missing key rerank.grid.k2"),
    (lambda r: r["rerank"].pop("grid"), "missing key rerank.grid"),
])
def test_bad_rerank_params_are_one_line_naming_the_key(edit, message):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(raw)
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_validation_with_a_validation_split_loads():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["rerank"]["select"] = "validation"
    raw["eval"]["val_ids"] = 4
    assert parse_params(raw).rerank.grid.k1 == raw["rerank"]["grid"]["k1"]


def test_extract_features_embeds_the_held_out_validation_split(tmp_path, monkeypatch):
    """With eval.val_ids the features file also holds the validation split the model was
    trained without (`val_*`); the test arrays are the same as without it; a model trained
    on those identities is refused."""
    import torch

    from reid.data.manifest import read_manifest, validation_split
    from reid.models.model_file import ModelFile, write_model_file
    from reid.paths import features_path, manifest_path, model_path, raw_dir, split_dir
    from reid.pipeline import features
    from reid.pipeline.download import download
    from reid.pipeline.models import initial_model
    from reid.pipeline.split import split
    from tests.tiny import tiny_params

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    tiny_params(tmp_path / "params.yaml", tracking=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(features, "BACKBONES", ("resnet50",))
    params = load_params("params.yaml")
    params = dataclasses.replace(params, eval=dataclasses.replace(
        params.eval, untrained_baseline=False))
    download("market1501", params.data["market1501"], raw_dir("market1501"))
    split("market1501", params.data["market1501"], raw_dir("market1501"),
          split_dir("market1501"))
    manifest = read_manifest(manifest_path("market1501"))
    kept, val = validation_split(manifest[manifest["split"] == "train"], 2, params.train.seed)

    def extract(val_ids: int, num_classes: int) -> dict[str, np.ndarray]:
        torch.manual_seed(0)
        network = initial_model(params, "resnet50", num_classes)
        write_model_file(model_path("resnet50", "market1501"), ModelFile(
            backbone="resnet50", num_classes=num_classes, input_size=(64, 32),
            state_dict=network.state_dict(), dataset="market1501"))
        features.extract(dataclasses.replace(params, eval=dataclasses.replace(
            params.eval, val_ids=val_ids)), "market1501")
        with np.load(features_path("resnet50", "market1501")) as data:
            return {key: data[key] for key in data.files}

    held_out = extract(2, kept["pid"].nunique())
    for split_name in ("query", "gallery"):
        rows = val[val["split"] == split_name]
        np.testing.assert_array_equal(held_out[f"val_{split_name}_pids"], rows["pid"])
        np.testing.assert_array_equal(held_out[f"val_{split_name}_camids"], rows["camid"])
        assert held_out[f"val_{split_name}"].shape == (len(rows), held_out["query"].shape[1])
    plain = extract(0, kept["pid"].nunique())
    assert not [key for key in plain if key.startswith("val_")]
    assert all(np.array_equal(plain[k], held_out[k]) for k in plain)
    with pytest.raises(InputError, match=r"market1501\.pt: trained on 8 identities, but "
                                         r"eval\.val_ids: 2 leaves 6"):
        extract(2, manifest[manifest["split"] == "train"]["pid"].nunique())
