"""reid.metrics.k_reciprocal_rerank: equality with the dense published algorithm, bounded blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reid.metrics.rerank as rerank
from reid.metrics import k_reciprocal_rerank
from tests.reference_metrics import k_reciprocal_rerank_dense

DEVICES = [None, "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def clustered(rng, num, num_ids, dim, spread=0.8, dtype=np.float64):
    """Features with identity structure: id centre + Gaussian noise."""
    centres = rng.standard_normal((num_ids, dim))
    pids = rng.integers(0, num_ids, num)
    return (centres[pids] + spread * rng.standard_normal((num, dim))).astype(dtype)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks and chunks much smaller than the problem: every blocked loop runs many times."""
    monkeypatch.setattr(rerank, "BLOCK_ROWS", 48)
    monkeypatch.setattr(rerank, "CHUNK_ELEMENTS", 700)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "k1, k2, lam", [(20, 6, 0.3), (20, 1, 0.3), (7, 3, 0.0), (4, 2, 1.0), (1, 1, 0.5), (9, 12, 0.2)]
)
def test_matches_dense_oracle(small_blocks, device, k1, k2, lam):
    rng = np.random.default_rng(k1 * 100 + k2)
    feats = clustered(rng, 260, 25, 16)
    q, g = feats[:60], feats[60:]
    expected = k_reciprocal_rerank_dense(q, g, k1, k2, lam)
    result = k_reciprocal_rerank(q, g, k1, k2, lam, device=device)
    assert result.dtype == np.float32 and result.shape == (60, 200)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5)


def test_default_blocks_and_float32_features():
    rng = np.random.default_rng(1)
    feats = clustered(rng, 300, 30, 32, dtype=np.float32)
    q, g = feats[:50], feats[50:]
    result = k_reciprocal_rerank(q, g)
    np.testing.assert_allclose(result, k_reciprocal_rerank_dense(q, g), rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_float32():
    rng = np.random.default_rng(3)
    feats = clustered(rng, 500, 40, 64, dtype=np.float32)
    q, g = feats[:100], feats[100:]
    on_gpu = k_reciprocal_rerank(q, g, device="cuda")
    np.testing.assert_allclose(on_gpu, k_reciprocal_rerank(q, g), rtol=0, atol=1e-4)


def test_exact_ties_are_broken_by_index(small_blocks, monkeypatch):
    """Small-integer features: many exactly equal distances, also at the k-nearest cut."""
    calls = []
    exact = rerank._exact_neighbours
    monkeypatch.setattr(
        rerank, "_exact_neighbours", lambda *a: calls.append(len(a[2])) or exact(*a)
    )
    rng = np.random.default_rng(2)
    feats = rng.integers(0, 3, size=(150, 4)).astype(np.float64)
    q, g = feats[:40], feats[40:]
    for k1, k2 in [(6, 3), (10, 1)]:
        result = k_reciprocal_rerank(q, g, k1, k2, 0.3, device="cpu")
        expected = k_reciprocal_rerank_dense(q, g, k1, k2, 0.3)
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5)
    assert calls and sum(calls) > 0  # the tie path at the cut really ran


def test_hand_computed_1d_case():
    """x = 0 | 1, 10, 11.5 with k1 = 1, k2 = 1: reciprocal sets are the mutual nearest pairs."""
    q = np.array([[0.0]])
    g = np.array([[1.0], [10.0], [11.5]])
    # D row 0 = [0, 1, 100, 132.25], row 1 = [1, 0, 81, 110.25]; column maxima 132.25, 110.25.
    # R(0) = R(1) = {0, 1}; V[0] ~ (1, e^(-1/132.25)), V[1] ~ (e^(-1/110.25), 1), normalised.
    v0 = np.array([1.0, np.exp(-1 / 132.25)])
    v1 = np.array([np.exp(-1 / 110.25), 1.0])
    v0, v1 = v0 / v0.sum(), v1 / v1.sum()
    shared = np.minimum(v0, v1).sum()
    jaccard = np.array([1 - shared / (2 - shared), 1.0, 1.0])  # no overlap with {2, 3}
    original = np.array([1.0, 100.0, 132.25]) / 132.25
    expected = 0.7 * jaccard + 0.3 * original
    result = k_reciprocal_rerank(q, g, k1=1, k2=1, lambda_value=0.3)
    np.testing.assert_allclose(result[0], expected, rtol=0, atol=1e-6)


def test_lambda_one_is_the_normalised_original_distance():
    rng = np.random.default_rng(4)
    feats = clustered(rng, 120, 10, 8)
    q, g = feats[:20], feats[20:]
    sq_dist = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1)
    expected = sq_dist[:20, 20:] / sq_dist.max(axis=0)[:20, None]
    result = k_reciprocal_rerank(q, g, k1=5, k2=2, lambda_value=1.0)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)
    jaccard = k_reciprocal_rerank(q, g, k1=5, k2=2, lambda_value=0.0)
    assert jaccard.min() >= -1e-7 and jaccard.max() <= 1.0 + 1e-7
    assert (jaccard < 1.0).any() and (jaccard == 1.0).any()


def test_distance_blocks_stay_bounded(small_blocks, monkeypatch):
    """No N x N distance matrix: every block is at most BLOCK_ROWS square, each pair once."""
    shapes = []
    blocks = rerank._sq_distances

    def spy(left, right, a, b, c, e, out=None):
        shapes.append((b - a, e - c))
        return blocks(left, right, a, b, c, e, out=out)

    monkeypatch.setattr(rerank, "_sq_distances", spy)
    rng = np.random.default_rng(5)
    feats = clustered(rng, 200, 20, 8)
    k_reciprocal_rerank(feats[:50], feats[50:], k1=6, k2=3)
    num_blocks = -(-200 // 48)
    assert len(shapes) == num_blocks * (num_blocks + 1) // 2  # upper triangle only
    assert max(max(s) for s in shapes) <= 48


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros((3, 4)), np.zeros((5, 3))), "dim"),
        ((np.zeros(4), np.zeros((5, 4))), "q_feats must be a non-empty 2-D"),
        ((np.ones((3, 4)), np.full((5, 4), np.nan)), "g_feats contains NaN"),
        ((np.ones((3, 4)), np.ones((5, 4)), 0), "k1"),
        ((np.ones((3, 4)), np.ones((5, 4)), 5, 0), "k2"),
        ((np.ones((3, 4)), np.ones((5, 4)), 5, 2, 1.5), "lambda_value"),
        ((np.ones((3, 4)), np.ones((5, 4))), "identical"),
    ],
)
def test_bad_inputs_raise(args, message):
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank(*args)


def near_tie_clusters(rng, num_clusters, dim, cuts, size=24):
    """Float32 (queries, gallery) with near ties in the squared distances at the given cuts.

    Cluster m: query x (a centre) and `size` gallery points x + w, by increasing |w|^2. In x's
    neighbour list (x itself first), ranks c - 1 and c of every cut c hold a pair x + u and
    x + P u + t e, with P a cyclic shift of the coordinates (|P u| = |u| exactly), e the last unit
    vector, unused elsewhere: their squared distances to x differ by t^2 = 2^-30 (relative ~1e-9),
    far below float32 resolution. Every value is a multiple of 2^-15 below 4, so float32 holds
    the features exactly and every float64 distance is exact: float64 runs agree to the bit.
    Clusters are far apart (centre distances ~9, cluster radii ~1.1).
    """
    centres = np.zeros((num_clusters, dim))
    centres[:, :-1] = rng.integers(-32, 33, (num_clusters, dim - 1)) / 16
    gallery = []
    for x in centres:
        w = np.zeros((size, dim))
        w[:, :-1] = np.round(rng.normal(0.0, 0.2, (size, dim - 1)) * 256) / 256
        w = w[np.argsort((w**2).sum(1))]
        for c in cuts:  # w[i] is at rank i + 1: the pair at ranks c - 1, c is w[c - 2], w[c - 1]
            w[c - 1, :-1] = np.roll(w[c - 2, :-1], 1)
            w[c - 1, -1] = 2.0**-15
        gallery.append(x + w)
    gallery = np.concatenate(gallery)[rng.permutation(num_clusters * size)]
    return centres.astype(np.float32), gallery.astype(np.float32)


@pytest.mark.parametrize("device", DEVICES[1:])
@pytest.mark.parametrize("spare", [1, rerank.SPARE_NEIGHBOURS])
def test_near_ties_at_the_cuts_follow_float64(small_blocks, monkeypatch, device, spare):
    """Float32 features: the sets at every cut are those of the exact (float64) distances.

    Near ties that float32 cannot resolve sit at the cuts k2, round(k1 / 2) + 1 and k1 + 1; the
    float32 run must choose as the float64 run does, whatever the GEMM's rounding on `device`.
    With one spare neighbour, the rows tied at the deepest cut are re-sorted over all points;
    with more, among their kept neighbours.
    """
    monkeypatch.setattr(rerank, "SPARE_NEIGHBOURS", spare)
    over_all = []
    exact = rerank._exact_neighbours
    monkeypatch.setattr(
        rerank, "_exact_neighbours", lambda *a: over_all.append(len(a) == 4) or exact(*a)
    )
    k1, k2, lam = 20, 6, 0.3
    q, g = near_tie_clusters(np.random.default_rng(6), 20, 32, [k2, round(k1 / 2) + 1, k1 + 1])
    q64, g64 = q.astype(np.float64), g.astype(np.float64)
    expected = k_reciprocal_rerank_dense(q64, g64, k1, k2, lam)
    in_float64 = k_reciprocal_rerank(q64, g64, k1, k2, lam, device=device)
    np.testing.assert_allclose(in_float64, expected, rtol=0, atol=1e-5)
    in_float32 = k_reciprocal_rerank(q, g, k1, k2, lam, device=device)
    np.testing.assert_allclose(in_float32, in_float64, rtol=0, atol=1e-4)
    assert any(over_all) == (spare == 1) and not all(over_all)
