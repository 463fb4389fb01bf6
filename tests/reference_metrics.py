"""Reference implementations of `reid.metrics`: the oracles its fast code is checked against.

Used by tests/test_ranking.py, tests/test_rerank.py and benchmarks/bench_evaluation.py. They are
written for clarity, not speed, and follow the published definitions / the authors' code.
"""

from __future__ import annotations

import numpy as np
import torch


def evaluate_ranking_argsort(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> dict:
    """mAP / CMC / mINP by a stable argsort of every row (the `eval_market1501` protocol).

    Per query: sort the gallery (ties by index), drop same pid + same camera and pid -1, then
    ranks of the positives give AP = mean(precision at each positive) and INP = P / last rank.
    """
    aps, inps, cmcs, valid_queries, firsts = [], [], [], [], []
    skipped = 0
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        pids, cams = g_pids[order], g_camids[order]
        valid = (pids != -1) & ~((pids == q_pids[i]) & (cams == q_camids[i]))
        matches = pids[valid] == q_pids[i]
        if not matches.any():
            skipped += 1
            continue
        ranks = np.flatnonzero(matches) + 1
        valid_queries.append(i)
        firsts.append(ranks[0])
        aps.append((np.arange(1, len(ranks) + 1) / ranks).sum() / len(ranks))
        inps.append(len(ranks) / ranks[-1])
        cmc = np.ones(max_rank)  # after the last gallery entry the query stays matched
        hit = (np.cumsum(matches) > 0)[:max_rank]
        cmc[: len(hit)] = hit
        cmcs.append(cmc)
    return {
        "mAP": float(np.mean(aps)),
        "mINP": float(np.mean(inps)),
        "cmc": np.sum(cmcs, axis=0) / len(aps),
        "num_valid_queries": len(aps),
        "num_skipped_queries": skipped,
        "per_query": {"query": np.array(valid_queries), "ap": np.array(aps),
                      "first_match_rank": np.array(firsts)},
    }


def k_reciprocal_rerank_dense(
    q_feats: np.ndarray,
    g_feats: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Dense k-reciprocal re-ranking (Zhong et al., CVPR 2017), the authors' code in NumPy.

    Differences to the authors' code: V and the Jaccard distances are float32/float64 (not
    float16), and `np.argsort(kind="stable")` orders tied distances by index. Memory O(N^2).
    Loops and array layout as in the authors' `re_ranking` (reid-strong-baseline / person-re-
    ranking), so its time and memory are those of the classic code.
    """
    feats = np.concatenate([q_feats, g_feats])
    dtype = np.float64 if feats.dtype == np.float64 else np.float32
    feats = feats.astype(dtype)
    query_num = q_feats.shape[0]
    all_num = feats.shape[0]
    # As the authors: torch addmm (beta=1, alpha=-2); also avoids a crash seen in OpenBLAS syrk.
    feat = torch.from_numpy(feats)
    sq = (feat**2).sum(dim=1)
    original_dist = torch.addmm(sq[:, None] + sq[None, :], feat, feat.T, alpha=-2).numpy()
    del feat
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist)
    initial_rank = np.argsort(original_dist, axis=1, kind="stable").astype(np.int32)

    half = int(np.around(k1 / 2))
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for candidate in k_reciprocal_index:
            candidate_forward = initial_rank[candidate, : half + 1]
            candidate_backward = initial_rank[candidate_forward, : half + 1]
            fi_candidate = np.where(candidate_backward == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward[fi_candidate]
            overlap = len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index))
            if overlap > 2 / 3 * len(candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = weight / np.sum(weight)
    original_dist = original_dist[:query_num,]
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    invIndex = []
    for i in range(all_num):
        invIndex.append(np.where(V[:, i] != 0)[0])

    jaccard_dist = np.zeros_like(original_dist)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=dtype)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)

    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:].astype(np.float32)
