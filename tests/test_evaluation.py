"""evaluate/rerank: the one scoring loop, per-query tables, intervals in the table, cosine
re-ranking, ranked-list pictures."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from reid.errors import InputError
from reid.metrics import evaluate_ranking, k_reciprocal_rerank
from reid.params import BACKBONES, load_params
from reid.pipeline.evaluation import (
    gallery_record,
    per_query_table,
    plain_distance,
    rerank_features,
    reranked_distance,
    score_backbones,
)
from reid.pipeline.scoring import score, scores
from reid.report.ranked import draw_queries
from reid.report.tables import results_table
from tests.dvc_stages import REPO

SCORE_KEYS = ("mAP", "rank1", "rank5", "rank10", "mINP")


@pytest.fixture
def eval_params():
    return load_params(REPO / "params.yaml").eval


def features(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pids_q, pids_g = rng.integers(0, 8, 24), rng.integers(0, 8, 60)
    centres = rng.normal(size=(8, 16))
    return {
        "query": (centres[pids_q] + rng.normal(size=(24, 16))).astype(np.float32),
        "gallery": (centres[pids_g] + rng.normal(size=(60, 16))).astype(np.float32),
        "query_pids": pids_q, "gallery_pids": pids_g,
        "query_camids": np.zeros(24, dtype=int), "gallery_camids": np.ones(60, dtype=int),
        "query_paths": np.array([f"data/raw/x/query/{i:04d}.jpg" for i in range(24)]),
    }


def rerank_with(f, ev):
    return k_reciprocal_rerank(*rerank_features(f, ev), k1=5, k2=3, lambda_value=0.3)


def test_cosine_reranking_ignores_feature_length(eval_params):
    """Cosine distance does not see a vector's length, so neither may its re-ranking;
    the squared Euclidean re-ranking of the raw features does."""
    f = features()
    scaled = dict(f)
    rng = np.random.default_rng(1)
    scaled["query"] = f["query"] * rng.uniform(0.5, 3, (24, 1)).astype(np.float32)
    scaled["gallery"] = f["gallery"] * rng.uniform(0.5, 3, (60, 1)).astype(np.float32)
    cosine = dataclasses.replace(eval_params, metric="cosine", normalize=False)
    euclidean = dataclasses.replace(eval_params, metric="euclidean", normalize=False)
    np.testing.assert_allclose(rerank_with(f, cosine), rerank_with(scaled, cosine), atol=1e-5)
    assert np.abs(rerank_with(f, euclidean) - rerank_with(scaled, euclidean)).max() > 1e-2


def test_per_query_table_rows_are_the_valid_queries(eval_params):
    f = features()
    f["query_pids"][0] = 99  # no gallery image: skipped
    dist = ((f["query"][:, None] - f["gallery"][None]) ** 2).sum(-1)
    result = evaluate_ranking(dist, f["query_pids"], f["gallery_pids"], f["query_camids"],
                              f["gallery_camids"])
    table = per_query_table(result, f)
    assert list(table.columns) == ["query", "path", "pid", "camid", "ap", "first_match_rank"]
    assert table["query"].tolist() == list(range(1, 24))
    assert table["path"].iloc[0] == "0001.jpg"
    assert table["ap"].mean() == pytest.approx(result["mAP"])
    assert (table["first_match_rank"] == 1).mean() == pytest.approx(result["cmc"][0])


def test_results_table_gives_intervals_beside_map_and_rank1():
    row = {"mAP": 20.66, "rank1": 11.83, "rank5": 41.9, "rank10": 61.3, "mINP": 14.0}
    table = results_table([
        {"model": "ResNet50", "image_size": "64x32", **row,
         "ci95": {"mAP": [16.04, 25.5], "rank1": [5.38, 18.28]}},
        {"model": "ResNet50, before training", "image_size": "64x32", **row},
    ])
    assert list(table.columns) == ["Model", "Image size", "mAP", "mAP 95% CI", "R-1",
                                   "R-1 95% CI", "R-5", "R-10", "mINP"]
    assert table.iloc[0]["mAP 95% CI"] == "[16.0, 25.5]"
    assert table.iloc[0]["R-1 95% CI"] == "[5.4, 18.3]"
    assert table.iloc[1]["mAP 95% CI"] == ""


def write_features(root, dataset: str, gallery_paths: dict[str, list[str]] | None = None):
    """`features/<dataset>/<b>.npz` of every backbone (the first with untrained features) and
    the split summary, under `root`: the files the scoring loop reads."""
    (root / "data/split" / dataset).mkdir(parents=True)
    (root / "data/split" / dataset / "summary.json").write_text(json.dumps({"protocol": "p"}))
    (root / "features" / dataset).mkdir(parents=True)
    written = {}
    for i, backbone in enumerate(BACKBONES):
        f = features(seed=0)
        rng = np.random.default_rng(i)
        f["query"] = f["query"] + rng.normal(size=f["query"].shape).astype(np.float32)
        f["gallery_paths"] = np.array((gallery_paths or {}).get(
            backbone, [f"data/raw/x/gallery/{j:04d}.jpg" for j in range(60)]))
        f["model_info"] = np.array(json.dumps({"model_sha256": str(i) * 64}))
        if i == 0:
            f["untrained_query"] = f["query"][::-1].copy()
            f["untrained_gallery"] = f["gallery"][::-1].copy()
        np.savez(root / "features" / dataset / f"{backbone}.npz", **f)
        written[backbone] = f
    return written


def test_one_loop_scores_every_backbone_on_one_gallery(eval_params, tmp_path, monkeypatch):
    """`score_backbones` gives each backbone's scores, per-query table and intervals under the
    distance it is passed, the untrained scores where extracted, the gallery they all share and
    the arrays of the backbone it keeps."""
    monkeypatch.chdir(tmp_path)
    written = write_features(tmp_path, "ds")
    params = dataclasses.replace(load_params(REPO / "params.yaml"), eval=eval_params)
    scored = score_backbones(params, "ds", plain_distance(eval_params), untrained=True,
                             keep=BACKBONES[1])
    assert list(scored.metrics) == list(BACKBONES)
    for backbone, f in written.items():
        result = score(f, eval_params)
        assert {k: scored.metrics[backbone][k] for k in SCORE_KEYS} == scores(result)
        assert set(scored.metrics[backbone]["ci95"]) == {"mAP", "rank1"}
        assert scored.tables[backbone].equals(per_query_table(result, f))
        np.testing.assert_array_equal(scored.cmc[backbone], result["cmc"])
        assert scored.infos[backbone] == json.loads(str(f["model_info"]))
    assert scored.untrained == {BACKBONES[0]: scores(score(written[BACKBONES[0]], eval_params,
                                                           prefix="untrained_"))}
    assert scored.protocol["num_gallery"] == 60 and scored.protocol["summary"] == {"protocol": "p"}
    assert scored.gallery == gallery_record(written[BACKBONES[2]], scored.protocol)
    arrays, distmat = scored.kept
    np.testing.assert_array_equal(arrays["query"], written[BACKBONES[1]]["query"])
    np.testing.assert_array_equal(distmat, plain_distance(eval_params)(arrays))

    reranked = score_backbones(params, "ds", reranked_distance(eval_params, params.rerank))
    assert reranked.kept is None and reranked.untrained == {}
    assert reranked.gallery == scored.gallery and reranked.metrics != scored.metrics


def test_backbones_scored_on_another_gallery_are_refused(eval_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = [f"data/raw/x/gallery/{j:04d}.jpg" for j in range(59)] + ["data/raw/x/gallery/a.jpg"]
    write_features(tmp_path, "ds", gallery_paths={BACKBONES[2]: other})
    params = dataclasses.replace(load_params(REPO / "params.yaml"), eval=eval_params)
    with pytest.raises(InputError, match=rf"features/ds/{BACKBONES[2]}\.npz: .*another"):
        score_backbones(params, "ds", plain_distance(eval_params))


def test_ranked_pictures_of_queries_spread_over_the_query_set(tmp_path):
    f = features()
    for split, n in (("query", 24), ("gallery", 60)):
        paths = [tmp_path / f"{split}{i}.png" for i in range(n)]
        for p in paths:
            Image.new("RGB", (4, 8), "gray").save(p)
        f[f"{split}_paths"] = np.array([str(p) for p in paths])
    distmat = plain_distance(load_params(REPO / "params.yaml").eval)(f)
    written = draw_queries(f, distmat, tmp_path / "ranked", num_queries=3, top_k=4,
                           name="resnet50", title="ds resnet50 (plain)")
    names = ["query00000_resnet50.png", "query00011_resnet50.png", "query00023_resnet50.png"]
    assert written == [tmp_path / "ranked" / n for n in names]
    assert sorted(p.name for p in (tmp_path / "ranked").iterdir()) == names
    with Image.open(written[0]) as picture:
        # the query, a gap, then the top 4: tiles 64 wide, 4-px frames, 4 px apart
        assert picture.width == 5 * (64 + 2 * 4 + 4) + 12
