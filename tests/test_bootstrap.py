"""Bootstrap intervals and paired differences over query identities."""

from __future__ import annotations

import numpy as np
import pytest

from reid.metrics.bootstrap import (
    bootstrap_intervals,
    identity_counts,
    paired_difference,
    per_query_scores,
)


def test_per_query_scores_are_percent_ap_and_rank1_hits():
    out = per_query_scores(np.array([0.5, 1.0, 0.25]), np.array([3, 1, 1]))
    np.testing.assert_array_equal(out["mAP"], [50.0, 100.0, 25.0])
    np.testing.assert_array_equal(out["rank1"], [0.0, 100.0, 100.0])


def test_interval_holds_the_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    ap = rng.random(300)
    groups = np.repeat(np.arange(100), 3)
    scores = {"mAP": 100 * ap}
    a = bootstrap_intervals(scores, groups, seed=1)
    assert a == bootstrap_intervals(scores, groups, seed=1)
    assert a != bootstrap_intervals(scores, groups, seed=2)
    lo, hi = a["mAP"]
    assert lo < 100 * ap.mean() < hi


def test_identities_are_resampled_not_queries():
    """Four identical queries per identity carry the information of one: the interval is that
    of one query per identity, and wider than a bootstrap of independent queries would give."""
    rng = np.random.default_rng(3)
    per_id = rng.random(50)
    repeated = {"mAP": np.repeat(per_id, 4)}
    groups = np.repeat(np.arange(50), 4)
    by_identity = bootstrap_intervals(repeated, groups, seed=0)["mAP"]
    one_each = bootstrap_intervals({"mAP": per_id}, np.arange(50), seed=0)["mAP"]
    assert by_identity == one_each
    by_query = bootstrap_intervals(repeated, np.arange(200), seed=0)["mAP"]
    assert by_query[1] - by_query[0] < 0.7 * (by_identity[1] - by_identity[0])


def test_interval_width_matches_the_binomial_standard_error():
    rng = np.random.default_rng(5)
    hits = (rng.random(2000) < 0.3).astype(float) * 100
    lo, hi = bootstrap_intervals({"rank1": hits}, np.arange(2000), seed=0)["rank1"]
    p = hits.mean() / 100
    expected = 2 * 1.96 * 100 * np.sqrt(p * (1 - p) / 2000)
    assert abs((hi - lo) - expected) < 0.15 * expected


def test_counts_draw_as_many_identities_as_there_are():
    counts, index = identity_counts(np.array([7, 7, 3, 9, 9, 9]), resamples=20, seed=0)
    assert counts.shape == (20, 3)
    np.testing.assert_array_equal(counts.sum(axis=1), 3)
    np.testing.assert_array_equal(index, [1, 1, 0, 2, 2, 2])
    with pytest.raises(ValueError, match="resamples"):
        identity_counts(np.array([1]), resamples=0, seed=0)
    with pytest.raises(ValueError, match="0 query identities"):
        identity_counts(np.array([], dtype=int), resamples=10, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        identity_counts(np.array([4, 4, 4]), resamples=10, seed=0)


def test_paired_difference_of_equal_results_is_zero_and_not_significant():
    a = np.random.default_rng(0).random(120) * 100
    out = paired_difference(a, a.copy(), np.repeat(np.arange(40), 3))
    assert out == {"delta": 0.0, "interval": [0.0, 0.0], "p_value": 1.0, "significant": False}


def test_paired_difference_sees_a_small_consistent_gain():
    """A 1-point gain on every query is certain although the scores spread over 0..100: the
    pairing cancels what the two share (an unpaired comparison would see nothing)."""
    rng = np.random.default_rng(1)
    a = rng.random(200) * 99
    groups = np.repeat(np.arange(50), 4)
    out = paired_difference(a, a + 1.0, groups, resamples=1000)
    assert out["delta"] == 1.0
    assert out["interval"] == [1.0, 1.0]
    assert out["p_value"] == pytest.approx(1e-3) and out["significant"]
    unpaired = bootstrap_intervals({"a": a, "b": a + 1.0}, groups)
    assert unpaired["a"][1] > unpaired["b"][0]  # the two separate intervals overlap


def test_paired_difference_of_noise_is_not_significant():
    rng = np.random.default_rng(2)
    a = rng.random(400) * 100
    b = a + rng.normal(0, 5, 400)
    out = paired_difference(a, b, np.repeat(np.arange(100), 4), seed=0)
    lo, hi = out["interval"]
    assert lo < 0 < hi and out["p_value"] >= 0.05 and not out["significant"]
    with pytest.raises(ValueError, match="same queries"):
        paired_difference(a, b[:-1], np.arange(400))
