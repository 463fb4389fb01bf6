"""PNG plots (readable offline, unlike DVC's vega charts) of training curves and CMC curves."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from reid.io import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_training_curves(curves: pd.DataFrame, path: str | Path, *, title: str,
                         evals: pd.DataFrame | None = None) -> None:
    """Loss terms, training accuracy and learning rate per epoch (columns of `curves`), and
    with `evals` (epoch, mAP, rank1, split) the scores of the evaluated epochs beside them."""
    scored = evals is not None and not evals.empty
    fig, axes = plt.subplots(1, 4 if scored else 3, figsize=(17 if scored else 13, 3.6))
    for key in ("loss", "ce", "triplet", "center"):
        axes[0].plot(curves["epoch"], curves[key], marker=".", label=key)
    axes[0].set_title("loss terms (center unweighted)")
    axes[0].set_yscale("log")
    axes[0].legend()
    axes[1].plot(curves["epoch"], curves["accuracy"], marker=".")
    axes[1].set_title("training accuracy")
    axes[1].set_ylim(0, 1)
    axes[2].plot(curves["epoch"], curves["lr"], marker=".")
    axes[2].set_title("learning rate")
    axes[2].set_yscale("log")
    if scored:
        for key in ("mAP", "rank1"):
            axes[3].plot(evals["epoch"], evals[key], marker="o", label=key)
        axes[3].set_title(f"{evals['split'].iloc[0]} split during training (%)")
        axes[3].legend()
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title, y=1.03)
    _save(fig, Path(path))


def plot_cmc(curves: Mapping[str, np.ndarray], path: str | Path, *, title: str) -> None:
    """CMC curves (rank 1..len) of several models, given in percent (as the metrics and CSV)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, cmc in curves.items():
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(ranks, np.asarray(cmc), label=name)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title)
    _save(fig, Path(path))
