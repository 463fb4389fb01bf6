"""evaluate/rerank helpers: per-query tables, intervals in the table, cosine re-ranking."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reid.metrics import evaluate_ranking, k_reciprocal_rerank
from reid.params import load_params
from reid.pipeline.evaluation import per_query_table, rerank_features
from reid.report.tables import results_table
from tests.dvc_stages import REPO


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
