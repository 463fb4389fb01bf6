"""Ranking metrics for person re-identification: mAP, CMC and mINP.

Protocol (Market-1501 / DukeMTMC / CUHK03, as in the widely used reference `eval_market1501`):
for each query the gallery entries with the same pid AND the same camera are removed (the same
person seen by the same camera is too easy), and gallery entries with pid -1 (Market-1501 junk)
are removed too. The remaining gallery entries with the query's pid are its positives; a query
without any positive is skipped (and counted).

The gallery is ranked by ascending distance; equal distances are ordered by gallery index, i.e.
exactly what a stable sort (`np.argsort(..., kind="stable")`) gives.

- AP (per query) = mean over its positives of the precision at that positive's rank;
  mAP = mean AP over the valid queries.
- CMC[k] = fraction of valid queries with a positive among the first k + 1 entries (defined for
  every k < max_rank, also when fewer gallery entries remain: it then stays at its last value).
- INP (per query) = num_positives / rank of the hardest positive (1-based); mINP = mean INP.
  Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook", TPAMI 2021.

Speed: no row is fully sorted. The rank of a positive is 1 + the number of positives before it
+ the number of valid negatives before it; only the few positives per row are sorted, and only
the negatives at most as far as the hardest positive can precede one, so those are the only
entries counted (bucketed with searchsorted against the sorted positives).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)

JUNK_PID = -1
# Queries per block on the torch path, and elements per (negative x positive) comparison chunk.
BLOCK_ROWS = 256
CHUNK_ELEMENTS = 1 << 22


def evaluate_ranking(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
    *,
    device: str | torch.device | None = None,
) -> dict:
    """mAP, CMC and mINP of a query x gallery distance matrix (smaller = more similar).

    distmat (Q, G) real; q_pids, q_camids (Q,) int; g_pids, g_camids (G,) int.
    `device=None` runs a per-query NumPy loop (fastest on CPU); a device (e.g. "cpu", "cuda")
    runs the blocked torch version on it. Both give identical results.

    Returns {"mAP": float, "mINP": float, "cmc": np.ndarray (max_rank,) float64,
    "num_valid_queries": int, "num_skipped_queries": int, "per_query": {"query": (V,) int64
    indices of the V valid queries, "ap": (V,) float64, "first_match_rank": (V,) int64 1-based
    rank of the first true match}}; the per-query arrays are what confidence intervals and
    paired comparisons resample.
    """
    distmat, q_pids, g_pids, q_camids, g_camids = _check_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank
    )
    pos_idx, num_pos = _positive_indices(q_pids, g_pids, q_camids, g_camids)
    valid = np.flatnonzero(num_pos > 0)
    if len(valid) == 0:
        raise ValueError(
            "evaluate_ranking: no query has a positive in the gallery (same pid, other camera); "
            "check that q_pids / g_pids and the camera ids belong to the same split"
        )
    if device is None:
        ranks = _positive_ranks_numpy(distmat, q_pids, g_pids, pos_idx, num_pos, valid)
    else:
        ranks = _positive_ranks_torch(
            distmat, q_pids, g_pids, pos_idx, num_pos, valid, torch.device(device)
        )
    result = _metrics_from_ranks(ranks, num_pos[valid], max_rank)
    result["per_query"] = {"query": valid.astype(np.int64), "ap": result.pop("ap"),
                           "first_match_rank": ranks[:, 0].copy()}
    result["num_skipped_queries"] = len(q_pids) - len(valid)
    logger.debug(
        "evaluated %d queries (%d skipped): mAP %.4f",
        len(valid),
        result["num_skipped_queries"],
        result["mAP"],
    )
    return result


def _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"evaluate_ranking: distmat must be 2-D (Q, G), got shape {distmat.shape}")
    if not np.issubdtype(distmat.dtype, np.number) or np.iscomplexobj(distmat):
        raise ValueError(f"evaluate_ranking: distmat must be real numbers, got {distmat.dtype}")
    num_q, num_g = distmat.shape
    arrays = {"q_pids": q_pids, "g_pids": g_pids, "q_camids": q_camids, "g_camids": g_camids}
    lengths = {"q_pids": num_q, "g_pids": num_g, "q_camids": num_q, "g_camids": num_g}
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.shape != (lengths[name],) or not np.issubdtype(value.dtype, np.integer):
            raise ValueError(
                f"evaluate_ranking: {name} must be a 1-D integer array of length "
                f"{lengths[name]} to match distmat {distmat.shape}, got {value.dtype} {value.shape}"
            )
        arrays[name] = value.astype(np.int64, copy=False)
    if num_g == 0:
        raise ValueError("evaluate_ranking: the gallery is empty (distmat has 0 columns)")
    if isinstance(max_rank, bool) or not isinstance(max_rank, int | np.integer) or max_rank < 1:
        raise ValueError(f"evaluate_ranking: max_rank must be a positive int, got {max_rank!r}")
    if not np.issubdtype(distmat.dtype, np.floating):
        distmat = distmat.astype(np.float64)
    if np.isnan(distmat).any():
        raise ValueError("evaluate_ranking: distmat contains NaN")
    distmat = np.ascontiguousarray(distmat)  # rows are read one at a time
    return distmat, arrays["q_pids"], arrays["g_pids"], arrays["q_camids"], arrays["g_camids"]


def _positive_indices(
    q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gallery indices of each query's positives, ascending: (Q, W) padded with 0, and (Q,) counts.

    Positives = same pid, other camera, pid not junk. Found through a stable sort of the gallery
    pids, so no (Q, G) mask is built.
    """
    order = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[order]
    start = np.searchsorted(sorted_pids, q_pids, side="left")
    same_count = np.searchsorted(sorted_pids, q_pids, side="right") - start
    same_count[q_pids == JUNK_PID] = 0
    cols = np.arange(max(int(same_count.max(initial=0)), 1))
    inside = cols[None, :] < same_count[:, None]
    same = order[np.minimum(start[:, None] + cols[None, :], len(order) - 1)]
    is_pos = inside & (g_camids[same] != q_camids[:, None])
    # Move the positives to the front of each row, keeping their ascending gallery order.
    front = np.argsort(~is_pos, axis=1, kind="stable")
    num_pos = is_pos.sum(axis=1)
    width = max(int(num_pos.max(initial=0)), 1)
    pos_idx = np.take_along_axis(same, front, axis=1)[:, :width]
    pos_idx[np.arange(width)[None, :] >= num_pos[:, None]] = 0
    return pos_idx, num_pos


def _positive_ranks_numpy(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    pos_idx: np.ndarray,
    num_pos: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    """1-based ranks of each valid query's positives, ascending: (len(valid), W) int64, padded."""
    ranks = np.zeros((len(valid), pos_idx.shape[1]), dtype=np.int64)
    for n, q in enumerate(valid):
        row = distmat[q]
        count = num_pos[q]
        pos_j = pos_idx[q, :count]
        order = np.argsort(row[pos_j], kind="stable")  # (distance, index) order: pos_j ascends
        pos_j = pos_j[order]
        pos_d = row[pos_j]
        # Only entries no farther than the hardest positive can precede a positive.
        cand = np.flatnonzero(row <= pos_d[-1])
        cand_pids = g_pids[cand]
        neg_j = cand[(cand_pids != q_pids[q]) & (cand_pids != JUNK_PID)]
        neg_d = row[neg_j]
        # before[e] = number of positives ranked before negative e.
        before = np.searchsorted(pos_d, neg_d, side="left")
        tie_end = np.searchsorted(pos_d, neg_d, side="right")
        for e in np.flatnonzero(tie_end > before):  # equal distances: the lower index goes first
            before[e] += np.searchsorted(pos_j[before[e] : tie_end[e]], neg_j[e])
        # A negative precedes positive k exactly when before <= k.
        neg_ahead = np.cumsum(np.bincount(before, minlength=count + 1))[:count]
        ranks[n, :count] = neg_ahead + np.arange(1, count + 1)
    return ranks


def _positive_ranks_torch(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    pos_idx: np.ndarray,
    num_pos: np.ndarray,
    valid: np.ndarray,
    device: torch.device,
) -> np.ndarray:
    """Same as `_positive_ranks_numpy`, in blocks of queries as torch tensors on `device`."""
    width = pos_idx.shape[1]
    num_g = distmat.shape[1]
    g_pids_t = torch.from_numpy(g_pids).to(device)
    cols = torch.arange(width, device=device)
    ranks = np.zeros((len(valid), width), dtype=np.int64)
    for a in range(0, len(valid), BLOCK_ROWS):
        rows = valid[a : a + BLOCK_ROWS]
        num_rows = len(rows)
        dist = torch.from_numpy(distmat[rows]).to(device)
        count = torch.from_numpy(num_pos[rows]).to(device)
        pos_j = torch.from_numpy(pos_idx[rows]).to(device)
        pad = cols[None, :] >= count[:, None]
        # Pads sort after every real positive: distance +inf and an index past the gallery.
        pos_d = dist.gather(1, pos_j).masked_fill(pad, float("inf"))
        pos_j = pos_j.masked_fill(pad, num_g)
        order = torch.sort(pos_d, dim=1, stable=True).indices  # (distance, index) order
        pos_d, pos_j = pos_d.gather(1, order), pos_j.gather(1, order)
        hardest = pos_d.gather(1, (count - 1)[:, None])
        r, c = torch.nonzero(dist <= hardest, as_tuple=True)
        cand_pids = g_pids_t[c]
        q_pid = torch.from_numpy(q_pids[rows]).to(device)
        keep = (cand_pids != q_pid[r]) & (cand_pids != JUNK_PID)
        r, c = r[keep], c[keep]
        d = dist[r, c]
        before = torch.empty_like(r)
        step = max(1, CHUNK_ELEMENTS // width)
        for s in range(0, len(r), step):
            rs, ds, cs = r[s : s + step], d[s : s + step, None], c[s : s + step, None]
            ahead = (pos_d[rs] < ds) | ((pos_d[rs] == ds) & (pos_j[rs] < cs))
            before[s : s + step] = ahead.sum(dim=1)
        hist = torch.bincount(r * (width + 1) + before, minlength=num_rows * (width + 1))
        neg_ahead = hist.view(num_rows, width + 1).cumsum(dim=1)[:, :width]
        ranks[a : a + num_rows] = (neg_ahead + cols + 1).cpu().numpy()
    return ranks


def _metrics_from_ranks(ranks: np.ndarray, num_pos: np.ndarray, max_rank: int) -> dict:
    """mAP / mINP / CMC from the ascending 1-based positive ranks (V, W) of the V valid queries."""
    num_valid = len(num_pos)
    aps = np.empty(num_valid)
    inps = np.empty(num_valid)
    for n in range(num_valid):
        r = ranks[n, : num_pos[n]]
        aps[n] = (np.arange(1, len(r) + 1) / r).sum() / len(r)
        inps[n] = len(r) / r[-1]
    first = np.minimum(ranks[:, 0], max_rank + 1)
    hits = np.cumsum(np.bincount(first, minlength=max_rank + 2))[1 : max_rank + 1]
    return {
        "mAP": float(np.mean(aps)),
        "mINP": float(np.mean(inps)),
        "cmc": hits.astype(np.float64) / num_valid,
        "num_valid_queries": num_valid,
        "ap": aps,
    }
