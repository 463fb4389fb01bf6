"""Query x gallery distance matrices for ranking."""

from __future__ import annotations

import numpy as np


def pairwise_distance(
    query: np.ndarray, gallery: np.ndarray, metric: str = "euclidean"
) -> np.ndarray:
    """Distances (Q, G), float32: squared Euclidean, or cosine distance 1 - cos.

    Squared Euclidean ranks exactly like Euclidean and is what the reference evaluation code
    computes (||q||^2 + ||g||^2 - 2 q.g).
    """
    q = np.asarray(query, dtype=np.float32)
    g = np.asarray(gallery, dtype=np.float32)
    if metric == "euclidean":
        dist = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * (q @ g.T)
        return np.maximum(dist, 0.0, out=dist)
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ gn.T
    raise ValueError(f"unknown distance metric {metric!r}; choose 'euclidean' or 'cosine'")
