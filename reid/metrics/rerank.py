"""k-reciprocal re-ranking with bounded memory.

Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017, with
the semantics of the authors' code (N = num_query + num_gallery points, queries first):

1. D = squared Euclidean distances between all N features; original_dist = D divided per column
   by the column's maximum over all N rows, transposed: original_dist[i, j] = D[j, i] / max_r
   D[r, i]. initial_rank[i] = the nearest neighbours of i by original_dist (i itself included).
2. R(i) = k1-reciprocal neighbours: j among the k1 + 1 nearest of i with i among the k1 + 1
   nearest of j. For every candidate c in R(i), its round(k1 / 2)-reciprocal set R(c) is added
   when |R(c) & R(i)| > 2/3 |R(c)|.
3. V[i, j] = exp(-original_dist[i, j]) over the expanded set, normalised to sum 1.
4. Local query expansion (k2 > 1): V[i] <- mean of V over the k2 nearest of i.
5. Jaccard distance 1 - sum_k min(V_ik, V_jk) / (2 - sum_k min(V_ik, V_jk)), and
   final = (1 - lambda) * jaccard + lambda * original_dist, query rows x gallery columns.

Nothing N x N is ever held: D is computed in (BLOCK_ROWS x BLOCK_ROWS) blocks, each
off-diagonal block once (D is symmetric) and used for its rows and its columns, keeping only
the running k nearest and the column maxima; V is sparse (COO index / value tensors) and the
Jaccard sums are accumulated for a block of queries at a time through V's inverted index.
Memory is O(N * D + num_query * num_gallery + nnz(V)); the output itself is Q x G float32.
Time is dominated by the N^2 / 2 * D multiply-adds of the distance blocks.

Neighbour order: only the sets matter, at the cuts k2, round(k1 / 2) + 1 and k1 + 1, and they
are those of the float64 distances of the features, ties broken by the lower index: the k
nearest are the k smallest (float64 distance, index) pairs at every cut. The distance GEMM
rounds differently on every device (and in float32 by far more than the gaps of near-tied
neighbours), so a row whose computed gap at a cut is within a bound of that rounding is
re-sorted by float64 distances (`_near_tie_rows`, `_exact_neighbours`): the sets, and thus the
result up to float rounding of the values, do not depend on the device's GEMM (TF32 aside: its
rounding exceeds the bound). (The authors' `np.argsort` leaves ties in an unspecified order.)
The authors store V in float16; here V and the Jaccard sums are float64 and the distances use
the feature dtype (float64 stays float64, else float32).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Rows (and columns) per distance block, and (pair) elements per chunk of sparse work.
BLOCK_ROWS = 4096
CHUNK_ELEMENTS = 1 << 22
# A row is re-sorted by float64 distances where a gap at a cut is within TIE_MARGIN * sqrt(dim)
# * eps * max |x|^2 (see _rounding_tolerance); among its kept neighbours, which are the `depth`
# nearest and SPARE_NEIGHBOURS (>= 1) more, unless these may be too few (then over all N).
TIE_MARGIN = 32.0
SPARE_NEIGHBOURS = 8


def k_reciprocal_rerank(
    q_feats: np.ndarray,
    g_feats: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Re-ranked query x gallery distances (Q, G) float32 from features q (Q, D) and g (G, D).

    Same result as the authors' dense code (up to float rounding), without an N x N matrix.
    `device=None` means the CPU (the same as "cpu"); a torch device (e.g. "cuda") runs the same
    code there. Features stay float64 if given so, otherwise they are computed in float32.
    """
    feats, num_query = _check_features(q_feats, g_feats)
    _check_params(k1, k2, lambda_value)
    device = torch.device("cpu") if device is None else torch.device(device)
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        logger.warning("TF32 matmul is enabled: re-ranking distances lose precision on %s", device)
    n = feats.shape[0]
    left, right = _augmented(feats.to(device))
    del feats

    depth = min(max(k1 + 1, k2), n)
    half = int(np.around(k1 / 2)) + 1  # the size of the half sets R(c, k1/2), self included
    cuts = {k1 + 1, half} | ({k2} if k2 != 1 else set())
    qg_dist = torch.empty((num_query, n - num_query), dtype=left.dtype)  # CPU
    near_idx, near_dist, col_max = _nearest_neighbours(left, right, depth, cuts, qg_dist)
    initial_rank = near_idx[:, :depth]

    with _one_thread_on_cpu(device):
        rows, cols = _expanded_reciprocal_sets(initial_rank, k1 + 1, half)
        dist = _original_distances(left, right, col_max, rows, cols, near_idx, near_dist)
        del near_idx, near_dist, left, right
        weight = torch.exp(-dist.double())
        total = torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, rows, weight)
        vals = weight / total[rows]
        if k2 != 1:
            rows, cols, vals = _query_expansion(rows, cols, vals, initial_rank[:, :k2], n)
        del initial_rank
        result = _jaccard_blend(rows, cols, vals, num_query, n, qg_dist, col_max, lambda_value)
    logger.debug("re-ranked %d x %d (nnz(V) = %d)", num_query, n - num_query, len(vals))
    return result.numpy()


@contextmanager
def _one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run the sparse stages on one CPU thread (the thread count is restored afterwards).

    They are many sorts and scatters of 1e4..1e7 items: torch's intra-op threads gain little on
    them and lose a lot when the CPU is shared with other processes, where each parallel section
    waits for a descheduled thread (torch.isin of 4e4 items on this 2-core machine under load:
    0.003 s on one thread, 0.67 s on two).
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check_features(q_feats, g_feats) -> tuple[torch.Tensor, int]:
    arrays = []
    for name, value in (("q_feats", q_feats), ("g_feats", g_feats)):
        value = np.asarray(value)
        if value.ndim != 2 or value.shape[0] == 0 or value.shape[1] == 0:
            raise ValueError(
                f"k_reciprocal_rerank: {name} must be a non-empty 2-D array (num, dim), "
                f"got shape {value.shape}"
            )
        if not np.issubdtype(value.dtype, np.number) or np.iscomplexobj(value):
            raise ValueError(f"k_reciprocal_rerank: {name} must be real numbers, got {value.dtype}")
        if not np.isfinite(value).all():
            raise ValueError(f"k_reciprocal_rerank: {name} contains NaN or inf")
        arrays.append(value)
    q, g = arrays
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"k_reciprocal_rerank: q_feats has dim {q.shape[1]} but g_feats has dim {g.shape[1]}"
        )
    dtype = np.float64 if np.float64 in (q.dtype, g.dtype) else np.float32
    feats = torch.from_numpy(np.concatenate([q, g]).astype(dtype, copy=False))
    return feats, len(q)


def _check_params(k1, k2, lambda_value) -> None:
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"k_reciprocal_rerank: {name} must be an int >= 1, got {value!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"k_reciprocal_rerank: lambda_value must be in [0, 1], got {lambda_value}")


def _augmented(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right), (N, dim + 2): left[i] . right[j] = |x_i|^2 + |x_j|^2 - 2 x_i . x_j = D[i, j].

    A block of squared distances is then one matrix product, with no pass to add the norms.
    """
    sq_norm = (feats * feats).sum(dim=1, keepdim=True)
    ones = torch.ones_like(sq_norm)
    return torch.cat([feats, sq_norm, ones], dim=1), torch.cat([-2.0 * feats, ones, sq_norm], dim=1)


def _sq_distances(left, right, a, b, c, e, out=None) -> torch.Tensor:
    """Squared Euclidean distances D[a:b, c:e], into `out` (a flat buffer) when given."""
    if out is not None:
        out = out[: (b - a) * (e - c)].view(b - a, e - c)
    return torch.mm(left[a:b], right[c:e].T, out=out)


def _nearest_neighbours(
    left: torch.Tensor, right: torch.Tensor, depth: int, cuts: set[int], qg_dist: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The nearest neighbours of every point, and the column maxima of D (N,).

    Returns indices (N, K) and original_dist values (N, K), K = min(depth + SPARE_NEIGHBOURS, N),
    sorted by (original_dist, index): the first `depth` columns are initial_rank[:, :depth]. Also
    fills `qg_dist` (Q, G) with D[query, gallery]. One pass over the upper-triangle blocks of D;
    each row keeps its K smallest distances, merged block by block with torch.topk. Rows with a
    near tie at one of the `cuts` (set sizes <= depth) are then re-sorted by float64 distances,
    so that the sets at the cuts are those of the exact distances, whatever the GEMM's rounding.
    """
    n = left.shape[0]
    keep = min(depth + SPARE_NEIGHBOURS, n)
    device = left.device
    best_d = torch.full((n, keep), float("inf"), dtype=left.dtype, device=device)
    best_i = torch.zeros((n, keep), dtype=torch.long, device=device)
    col_max = torch.full((n,), float("-inf"), dtype=left.dtype, device=device)
    buffer = torch.empty(min(BLOCK_ROWS, n) ** 2, dtype=left.dtype, device=device)

    def merge(a: int, block: torch.Tensor, c: int) -> None:
        # rows a:b of D over columns c:c+block.shape[1]: keep the `keep` smallest per row
        b = a + block.shape[0]
        vals, idx = torch.topk(block, min(keep, block.shape[1]), dim=1, largest=False)
        vals = torch.cat([best_d[a:b], vals], dim=1)
        idx = torch.cat([best_i[a:b], idx + c], dim=1)
        vals, pos = torch.topk(vals, keep, dim=1, largest=False)
        best_d[a:b] = vals
        best_i[a:b] = idx.gather(1, pos)

    starts = range(0, n, BLOCK_ROWS)
    for a in starts:
        b = min(a + BLOCK_ROWS, n)
        for c in starts:
            if c < a:
                continue  # D is symmetric: block (c, a) was used for these rows already
            e = min(c + BLOCK_ROWS, n)
            block = _sq_distances(left, right, a, b, c, e, out=buffer)
            merge(a, block, c)
            col_max[c:e] = torch.maximum(col_max[c:e], block.amax(dim=0))
            _store_query_gallery(qg_dist, block, a, c)
            if c != a:
                merge(c, block.T, a)
                col_max[a:b] = torch.maximum(col_max[a:b], block.amax(dim=1))
                _store_query_gallery(qg_dist, block.T, c, a)
    del buffer, block  # before the float64 re-sorts below
    if not bool((col_max > 0).all()):
        raise ValueError("k_reciprocal_rerank: all features are identical (zero distances)")

    # Sort the kept neighbours by (original_dist, index): index first, then a stable sort.
    best_i, order = torch.sort(best_i, dim=1)
    best_d = (best_d / col_max[:, None]).gather(1, order)
    best_d, order = torch.sort(best_d, dim=1, stable=True)
    best_i = best_i.gather(1, order)
    tol = _rounding_tolerance(left) / col_max  # per row, in units of original_dist
    tied = _near_tie_rows(best_d, cuts, tol)
    # Their exact `depth` nearest are among the K kept, unless the K-th kept is within tol of the
    # depth-th (the test of a cut: nearer ones may lie beyond) and not all N are kept.
    spread = best_d[tied, keep - 1] - best_d[tied, depth - 1]
    over_all = (spread <= tol[tied]) & (keep < n)
    local, full = tied[~over_all], tied[over_all]
    message = "%d of %d rows with near ties at a cut: re-sorted in float64 (%d over all points)"
    logger.debug(message, len(tied), n, len(full))
    feats = left[:, :-2]
    if len(local):
        with _one_thread_on_cpu(device):  # small gathers and sorts: see _one_thread_on_cpu
            d, i = _exact_neighbours(feats, col_max, local, keep, best_i[local])
        best_d[local], best_i[local] = d, i
    if len(full):
        best_d[full], best_i[full] = _exact_neighbours(feats, col_max, full, keep)
    return best_i, best_d, col_max


def _rounding_tolerance(left: torch.Tensor) -> float:
    """Bound on the GEMM's rounding of the difference of two computed D[i, j] of one row.

    D[i, j] is a (dim + 2)-term product of augmented rows whose terms sum to at most 4 max |x|^2
    in absolute value; float GEMMs (blocked, FMA: MKL, OpenBLAS, cuBLAS) round it with errors
    that grow like sqrt(dim) * eps times that (the dim * eps worst case of sequential sums is
    not met). On the Market-size benchmark (2048-d, |x| = 1, float32) the largest errors were
    0.11 sqrt(dim) eps max|x|^2 on the CPU (6.0e-7; 1500 rows x all) and 0.86 on an H200
    (4.7e-6; all N x N, 4096-blocks as here). A gap at a cut misleads only when two errors sum
    to more than it, so TIE_MARGIN = 32 leaves a margin of ~19 over that GPU, and re-sorts ~9%
    of the rows there, among their kept neighbours (well under a second). For float64 features
    the bound is ~3e-13 max|x|^2 (2048-d): practically only exact ties.
    """
    dim = left.shape[1] - 2
    max_sq_norm = float(left[:, dim].max())
    return TIE_MARGIN * dim**0.5 * torch.finfo(left.dtype).eps * max_sq_norm


def _near_tie_rows(best_d, cuts, tol) -> torch.Tensor:
    """Rows whose set of the c nearest, for some c in `cuts`, may depend on the rounding of D.

    best_d: sorted original_dist (N, K); tol (N,). If every computed value is within tol / 2 of
    the exact one, a computed gap best_d[:, c] - best_d[:, c - 1] > tol proves that the c nearest
    are the exact c nearest (moving a neighbour across the cut takes two errors summing to more
    than the gap).
    """
    cuts = [c for c in sorted(cuts) if c < best_d.shape[1]]
    cuts = torch.tensor(cuts, dtype=torch.long, device=best_d.device)
    gaps = best_d[:, cuts] - best_d[:, cuts - 1]
    return torch.nonzero((gaps <= tol[:, None]).any(dim=1)).flatten()


def _store_query_gallery(qg_dist: torch.Tensor, block: torch.Tensor, a: int, c: int) -> None:
    """Copy the query-row x gallery-column part of block D[a:, c:] into qg_dist (Q, G)."""
    num_query = qg_dist.shape[0]
    rows = slice(a, min(a + block.shape[0], num_query))
    first_col = max(c, num_query)
    if rows.start >= rows.stop or first_col >= c + block.shape[1]:
        return
    part = block[: rows.stop - a, first_col - c :]
    qg_dist[rows, first_col - num_query : first_col - num_query + part.shape[1]] = part.cpu()


def _exact_neighbours(
    feats, col_max, rows, width, candidates=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """original_dist and indices of the `width` nearest of `rows`, by float64 distances.

    Among `candidates` (len(rows), C) indices, or all N points when None. D = |x_i|^2 + |x_j|^2
    - 2 x_i . x_j from the features (N, dim) with every term in float64, whose rounding is far
    below the gaps float32 can tell apart, then a stable sort of the candidates in index order:
    the order is by (float64 distance, index). Values are returned in the features' dtype.
    Memory: about CHUNK_ELEMENTS float64 at a time, and one BLOCK_ROWS x dim block over all N.
    """
    n, dim = feats.shape
    # Written in place: per-chunk results kept in lists fragmented the heap (peak RSS +0.5 GB).
    values = torch.empty((len(rows), width), dtype=feats.dtype, device=feats.device)
    indices = torch.empty((len(rows), width), dtype=torch.long, device=feats.device)
    if candidates is None:
        step = max(1, CHUNK_ELEMENTS // n)
    else:  # (rows, C, dim) float64 gathers of 1/8 chunk (4 MB): they add little to the peak
        step = max(1, CHUNK_ELEMENTS // (8 * candidates.shape[1] * dim))
    for s in range(0, len(rows), step):
        r = rows[s : s + step]
        x = feats[r].double()
        if candidates is None:
            cols = None
            dist = torch.empty((len(r), n), dtype=torch.float64, device=feats.device)
            for c in range(0, n, BLOCK_ROWS):
                y = feats[c : c + BLOCK_ROWS].double()
                dist[:, c : c + len(y)] = torch.addmm((y * y).sum(dim=1), x, y.T, alpha=-2.0)
        else:
            cols = torch.sort(candidates[s : s + step], dim=1).values
            y = feats[cols].double()  # (rows, C, dim)
            dist = (y * y).sum(dim=2) - 2.0 * torch.bmm(y, x[:, :, None])[:, :, 0]
        dist += (x * x).sum(dim=1, keepdim=True)
        dist, order = torch.sort(dist, dim=1, stable=True)
        values[s : s + step] = dist[:, :width] / col_max[r, None]
        indices[s : s + step] = (order if cols is None else cols.gather(1, order))[:, :width]
    return values, indices


def _segments(starts: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For segments [starts[s], starts[s] + lengths[s]): (owner segment, position) of each item."""
    owner = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    pos = torch.arange(len(owner), device=lengths.device) - first[owner] + starts[owner]
    return owner, pos


def _csr_pointer(rows: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, count) per row of COO entries sorted by row."""
    count = torch.bincount(rows, minlength=n)
    return torch.cumsum(count, 0) - count, count


def _reciprocal_pairs(initial_rank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, j) with j among the first k of initial_rank[i] and i among the first k of j; by i."""
    n = initial_rank.shape[0]
    forward = initial_rank[:, :k]
    rows = torch.arange(n, device=forward.device).repeat_interleave(forward.shape[1])
    cols = forward.reshape(-1)
    reciprocal = torch.isin(cols * n + rows, rows * n + cols)
    return rows[reciprocal], cols[reciprocal]


def _expanded_reciprocal_sets(
    initial_rank: torch.Tensor, k: int, half: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """COO (rows, cols) of the expanded k-reciprocal sets, sorted by (row, col).

    `k` and `half`: the sizes (self included) of the sets R(i, k1) and R(c, k1/2).
    """
    n = initial_rank.shape[0]
    r_rows, r_cols = _reciprocal_pairs(initial_rank, k)
    half_rows, half_cols = _reciprocal_pairs(initial_rank, half)
    half_start, half_count = _csr_pointer(half_rows, n)
    # For each candidate pair (i, c), c in R(i): the members m of R(c, k1/2).
    cand_len = half_count[r_cols]
    pair, pos = _segments(half_start[r_cols], cand_len)
    owner, member = r_rows[pair], half_cols[pos]
    in_r = torch.isin(owner * n + member, r_rows * n + r_cols)
    overlap = torch.zeros(len(r_rows), dtype=torch.long, device=r_rows.device)
    overlap.index_add_(0, pair, in_r.long())
    accepted = overlap > (2.0 / 3.0) * cand_len.double()  # the authors' float test
    taken = accepted[pair]
    keys = torch.cat([r_rows * n + r_cols, owner[taken] * n + member[taken]])
    keys = torch.unique(keys)
    return keys // n, keys % n


def _pair_sq_distances(left, right, rows, cols) -> torch.Tensor:
    """D[rows[p], cols[p]] for each pair p, in chunks to bound memory."""
    out = torch.empty(len(rows), dtype=left.dtype, device=left.device)
    step = max(1, CHUNK_ELEMENTS // left.shape[1])
    for s in range(0, len(rows), step):
        r, c = rows[s : s + step], cols[s : s + step]
        out[s : s + step] = (left[r] * right[c]).sum(dim=1)
    return out


def _original_distances(left, right, col_max, rows, cols, near_idx, near_dist):
    """original_dist[rows[p], cols[p]] = D[cols, rows] / col_max[rows] for each pair p.

    Read from the kept nearest neighbours (near_idx, near_dist: (N, K)) where the pair is among
    them, which is most pairs; computed from the features otherwise.
    """
    n, width = near_idx.shape
    keys = torch.arange(n, device=rows.device).repeat_interleave(width) * n + near_idx.reshape(-1)
    keys, order = torch.sort(keys)
    wanted = rows * n + cols
    pos = torch.searchsorted(keys, wanted).clamp_max(len(keys) - 1)
    dist = near_dist.reshape(-1)[order[pos]]
    missing = torch.nonzero(keys[pos] != wanted).flatten()
    logger.debug("%d of %d pairs of V computed from the features", len(missing), len(wanted))
    r, c = rows[missing], cols[missing]
    dist[missing] = _pair_sq_distances(left, right, r, c) / col_max[r]
    return dist


def _query_expansion(rows, cols, vals, neighbours, n):
    """V_qe[i] = mean of V[neighbours[i]] for sparse V (COO sorted by row); (N, k2) neighbours."""
    start, count = _csr_pointer(rows, n)
    k = neighbours.shape[1]
    out_rows, out_cols, out_vals = [], [], []
    nnz_per_row = max(1, int(count.max()) * k)
    step = max(1, CHUNK_ELEMENTS // nnz_per_row)
    for a in range(0, n, step):
        src = neighbours[a : a + step].reshape(-1)
        dst = torch.arange(a, a + len(src) // k, device=rows.device).repeat_interleave(k)
        item, pos = _segments(start[src], count[src])
        keys, inverse = torch.unique(dst[item] * n + cols[pos], return_inverse=True)
        total = torch.zeros(len(keys), dtype=vals.dtype, device=vals.device)
        total.index_add_(0, inverse, vals[pos])
        out_rows.append(keys // n)
        out_cols.append(keys % n)
        out_vals.append(total / k)
    return torch.cat(out_rows), torch.cat(out_cols), torch.cat(out_vals)


def _jaccard_blend(rows, cols, vals, num_query, n, qg_dist, col_max, lambda_value):
    """(1 - lambda) * Jaccard(V_q, V_g) + lambda * original_dist, (Q, G) float32 on the CPU.

    Jaccard = 1 - s / (2 - s) with s = sum_k min(V_ik, V_jk), which has terms only where both
    are non-zero: for query i, walk its non-zero columns k and, through the inverted index of the
    gallery rows, the gallery j with V_jk > 0. Most (i, j) share nothing (s = 0, Jaccard = 1), so
    each block is first set to (1 - lambda) + lambda * original_dist and only the pairs with s > 0
    are then lowered by (1 - lambda) * s / (2 - s).
    """
    num_gallery = n - num_query
    device = vals.device
    is_query = rows < num_query
    q_rows, q_cols, q_vals = rows[is_query], cols[is_query], vals[is_query]
    g_rows, g_cols, g_vals = rows[~is_query] - num_query, cols[~is_query], vals[~is_query]
    by_col = torch.sort(g_cols, stable=True).indices
    g_rows, g_vals = g_rows[by_col], g_vals[by_col]
    col_start, col_count = _csr_pointer(g_cols[by_col], n)
    q_start, q_count = _csr_pointer(q_rows, num_query)

    # Cost of query i = number of (i, k, j) terms; blocks of queries bounded by rows and terms.
    cost = torch.zeros(num_query, dtype=torch.long, device=device)
    cost.index_add_(0, q_rows, col_count[q_cols])
    cum_cost = np.cumsum(cost.cpu().numpy())
    max_rows = max(1, CHUNK_ELEMENTS // num_gallery)
    # s for a block of queries, flattened; only the touched entries are reset after use.
    shared = torch.zeros(max_rows * num_gallery, dtype=torch.float64, device=device)
    out = qg_dist  # overwritten block by block
    if out.dtype != torch.float32:
        out = torch.empty(qg_dist.shape, dtype=torch.float32)
    a = 0
    while a < num_query:
        budget = (cum_cost[a - 1] if a else 0) + CHUNK_ELEMENTS
        b = int(np.searchsorted(cum_cost, budget, side="right"))
        b = min(max(b, a + 1), a + max_rows, num_query)
        block = qg_dist[a:b].to(device)  # D[query, gallery]; on the CPU a view, updated in place
        block.mul_(lambda_value / col_max[a:b, None]).add_(1.0 - lambda_value)
        lo, hi = int(q_start[a]), int(q_start[b - 1] + q_count[b - 1])
        k = q_cols[lo:hi]
        item, pos = _segments(col_start[k], col_count[k])
        flat = (q_rows[lo:hi][item] - a) * num_gallery + g_rows[pos]
        shared.index_add_(0, flat, torch.minimum(q_vals[lo:hi][item], g_vals[pos]))
        s = shared[flat]
        lowered = block.view(-1)[flat] - ((1.0 - lambda_value) * s / (2.0 - s)).to(block.dtype)
        block.view(-1)[flat] = lowered  # repeated (i, j) write the same value
        shared[flat] = 0.0
        if block.data_ptr() != out[a:b].data_ptr():  # else block already is out[a:b]
            out[a:b] = block
        a = b
    return out
