"""reid.metrics.evaluate_ranking: hand-computed cases and equality with the argsort oracle."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import reid.metrics.ranking as ranking
from reid.metrics import evaluate_ranking
from tests.reference_metrics import evaluate_ranking_argsort

DEVICES = [None, "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def assert_identical(result: dict, expected: dict) -> None:
    assert result["mAP"] == expected["mAP"]
    assert result["mINP"] == expected["mINP"]
    np.testing.assert_array_equal(result["cmc"], expected["cmc"])
    assert result["num_valid_queries"] == expected["num_valid_queries"]
    assert result["num_skipped_queries"] == expected["num_skipped_queries"]
    for key, values in expected["per_query"].items():
        np.testing.assert_array_equal(result["per_query"][key], values, err_msg=key)
    assert np.mean(result["per_query"]["ap"]) == result["mAP"]


def random_problem(rng, num_q, num_g, num_ids, num_cams, dtype, levels=None):
    """Random pids (incl. junk -1, distractor 0 and query ids absent from the gallery), cameras
    and distances (optionally rounded to a few levels: many exact ties)."""
    dist = rng.random((num_q, num_g))
    if levels is not None:  # few distinct values: many exact ties
        dist = np.floor(dist * levels) / levels
    q_pids = rng.integers(1, num_ids + 3, num_q)
    q_pids[0] = -1
    g_pids = rng.integers(-1, num_ids + 1, num_g)
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    return dist.astype(dtype), q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("device", DEVICES)
def test_hand_computed_protocol(device):
    # Gallery: 0 neg, 1 same pid + same cam (removed), 2 pos, 3 junk (removed), 4 neg, 5 pos.
    g_pids = np.array([2, 1, 1, -1, 3, 1])
    g_cams = np.array([1, 0, 1, 1, 0, 2])
    q_pids = np.array([1, 2, 3])
    q_cams = np.array([0, 1, 1])
    dist = np.array(
        [
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # valid order 0 2 4 5: positives at ranks 2 and 4
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # pid 2 only seen by its own camera: skipped
            [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],  # valid order 5 4 2 0: the positive 4 at rank 2
        ]
    )
    result = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5, device=device)
    ap = [(1 / 2 + 2 / 4) / 2, 1 / 2]
    inp = [2 / 4, 1 / 2]
    assert result["mAP"] == pytest.approx(np.mean(ap), abs=1e-15)
    assert result["mINP"] == pytest.approx(np.mean(inp), abs=1e-15)
    np.testing.assert_allclose(result["cmc"], [0, 1, 1, 1, 1])
    assert result["cmc"].shape == (5,) and result["cmc"].dtype == np.float64
    assert result["num_valid_queries"] == 2
    assert result["num_skipped_queries"] == 1


@pytest.mark.parametrize("device", DEVICES)
def test_equal_distances_rank_by_gallery_index(device):
    q_pids, q_cams = np.array([1]), np.array([0])
    dist = np.array([[0.5, 0.5, 0.5]])
    # positive at index 1 behind the negative at index 0, ahead of the negative at index 2
    r = evaluate_ranking(
        dist, q_pids, np.array([2, 1, 3]), q_cams, np.array([1, 1, 1]), 3, device=device
    )
    assert r["mAP"] == 0.5 and r["mINP"] == 0.5
    np.testing.assert_array_equal(r["cmc"], [0, 1, 1])
    r = evaluate_ranking(
        dist, q_pids, np.array([1, 2, 3]), q_cams, np.array([1, 1, 1]), 3, device=device
    )
    assert r["mAP"] == 1.0
    np.testing.assert_array_equal(r["cmc"], [1, 1, 1])


@pytest.mark.parametrize("device", DEVICES)
def test_perfect_and_reversed_ranking(device):
    # 4 ids x 3 cameras in the gallery; each query's positives are its 2 other-camera images.
    g_pids = np.repeat(np.arange(1, 5), 3)
    g_cams = np.tile(np.arange(3), 4)
    q_pids, q_cams = np.arange(1, 5), np.zeros(4, dtype=int)
    same = (q_pids[:, None] == g_pids[None, :]).astype(float)
    best = evaluate_ranking(1 - same, q_pids, g_pids, q_cams, g_cams, 10, device=device)
    assert best["mAP"] == 1.0 and best["mINP"] == 1.0
    np.testing.assert_array_equal(best["cmc"], np.ones(10))
    worst = evaluate_ranking(same, q_pids, g_pids, q_cams, g_cams, 10, device=device)
    # 9 negatives first, then positives at ranks 10 and 11 (of 11 valid entries)
    assert worst["mAP"] == pytest.approx((1 / 10 + 2 / 11) / 2)
    assert worst["mINP"] == pytest.approx(2 / 11)
    np.testing.assert_array_equal(worst["cmc"], [0] * 9 + [1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "dtype, levels, seed",
    [(np.float32, None, 0), (np.float64, None, 1), (np.float32, 7, 2), (np.float64, 3, 3)],
)
def test_identical_to_argsort_oracle(monkeypatch, device, dtype, levels, seed):
    # Small blocks and chunks so that the torch path loops over several of each.
    monkeypatch.setattr(ranking, "BLOCK_ROWS", 16)
    monkeypatch.setattr(ranking, "CHUNK_ELEMENTS", 64)
    rng = np.random.default_rng(seed)
    problem = random_problem(rng, 60, 300, 12, 4, dtype, levels)
    expected = evaluate_ranking_argsort(*problem, max_rank=20)
    assert 0 < expected["num_valid_queries"] < 60  # some queries are skipped
    assert_identical(evaluate_ranking(*problem, max_rank=20, device=device), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_identity_structured_distances_match_oracle(device):
    # Positives mostly near the top (the fast path's common case), duplicates of one value.
    rng = np.random.default_rng(5)
    problem = list(random_problem(rng, 40, 400, 10, 3, np.float32))
    dist, q_pids, g_pids = problem[0], problem[1], problem[2]
    dist += 2.0 * (q_pids[:, None] != g_pids[None, :])
    dist[:, ::7] = dist[0, 0]
    expected = evaluate_ranking_argsort(*problem, max_rank=50)
    assert_identical(evaluate_ranking(*problem, max_rank=50, device=device), expected)


def test_matches_reference_cumsum_formula():
    """AP written as in `eval_market1501` (cumsum of hits / position, summed at hits)."""
    rng = np.random.default_rng(7)
    dist, q_pids, g_pids, q_cams, g_cams = random_problem(rng, 30, 200, 8, 3, np.float64)
    aps = []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        pids, cams = g_pids[order], g_cams[order]
        keep = (pids != -1) & ~((pids == q_pids[i]) & (cams == q_cams[i]))
        hits = (pids == q_pids[i])[keep].astype(float)
        if hits.sum() == 0:
            continue
        precision = hits.cumsum() / np.arange(1, len(hits) + 1)
        aps.append((precision * hits).sum() / hits.sum())
    result = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams)
    assert result["num_valid_queries"] == len(aps)
    assert result["mAP"] == pytest.approx(np.mean(aps), abs=1e-12)


def test_gallery_permutation_does_not_change_metrics():
    rng = np.random.default_rng(11)
    dist, q_pids, g_pids, q_cams, g_cams = random_problem(rng, 25, 150, 6, 3, np.float64)
    perm = rng.permutation(150)
    a = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams)
    b = evaluate_ranking(dist[:, perm], q_pids, g_pids[perm], q_cams, g_cams[perm])
    assert a["mAP"] == b["mAP"] and a["mINP"] == b["mINP"]
    np.testing.assert_array_equal(a["cmc"], b["cmc"])


def test_max_rank_beyond_gallery_saturates():
    rng = np.random.default_rng(3)
    dist, q_pids, g_pids, q_cams, g_cams = random_problem(rng, 10, 12, 2, 2, np.float64)
    result = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=30)
    assert result["cmc"].shape == (30,)
    assert result["cmc"][-1] == 1.0
    assert np.all(np.diff(result["cmc"]) >= 0)
    assert_identical(result, evaluate_ranking_argsort(dist, q_pids, g_pids, q_cams, g_cams, 30))


def test_market1501_names_from_shared_data():
    """Real Market-1501 pids / cameras (parsed from the file names), random distances."""
    root = Path(__file__).resolve().parents[2] / "shared" / "data"
    market = root / "market1501-mini" / "Market-1501-v15.09.15"
    if not (market / "query").is_dir() or not (market / "bounding_box_test").is_dir():
        pytest.skip(f"Market-1501 mini split not found under {market}")
    pattern = re.compile(r"^(-?\d+)_c(\d)")

    def ids(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        names = sorted(p.name for p in folder.glob("*.jpg"))
        parsed = [pattern.match(name).groups() for name in names]
        return np.array([int(p) for p, _ in parsed]), np.array([int(c) for _, c in parsed])

    q_pids, q_cams = ids(market / "query")
    g_pids, g_cams = ids(market / "bounding_box_test")
    assert len(q_pids) > 0 and len(g_pids) > 0
    rng = np.random.default_rng(0)
    dist = rng.random((len(q_pids), len(g_pids))).astype(np.float32)
    expected = evaluate_ranking_argsort(dist, q_pids, g_pids, q_cams, g_cams)
    for device in DEVICES:
        assert_identical(
            evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, device=device), expected
        )


def test_integer_distances_are_accepted():
    dist = np.array([[3, 1, 2]])
    result = evaluate_ranking(
        dist, np.array([1]), np.array([1, 2, 1]), np.array([0]), np.array([1, 1, 1])
    )
    assert result["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"distmat": np.zeros(3)}, "distmat must be 2-D"),
        ({"q_pids": np.array([1, 2, 3])}, "q_pids"),
        ({"g_camids": np.array([0.5, 1.0, 1.0, 0.0])}, "g_camids"),
        ({"distmat": np.array([[np.nan, 0, 0, 0], [0, 0, 0, 0]])}, "NaN"),
        ({"max_rank": 0}, "max_rank"),
        ({"g_pids": np.array([5, 5, 5, 5])}, "no query has a positive"),
    ],
)
def test_bad_inputs_raise(change, message):
    args = {
        "distmat": np.zeros((2, 4)),
        "q_pids": np.array([1, 2]),
        "g_pids": np.array([1, 2, 1, 2]),
        "q_camids": np.array([0, 0]),
        "g_camids": np.array([1, 1, 0, 0]),
        "max_rank": 3,
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        evaluate_ranking(**args)
