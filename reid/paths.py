"""Where each stage reads and writes, relative to the repository root (mirrors dvc.yaml)."""

from __future__ import annotations

from pathlib import Path


def raw_dir(dataset: str) -> Path:
    return Path("data/raw") / dataset


def split_dir(dataset: str) -> Path:
    """manifest.csv, summary.json and (CUHK03 release format) the extracted images/."""
    return Path("data/split") / dataset


def manifest_path(dataset: str) -> Path:
    return split_dir(dataset) / "manifest.csv"


def model_path(backbone: str, dataset: str) -> Path:
    return Path("models") / backbone / f"{dataset}.pt"


def checkpoint_path(backbone: str, dataset: str) -> Path:
    """Outside DVC's outputs, so that DVC never deletes it before a resumed run."""
    return Path("checkpoints") / backbone / dataset / "last.pt"


def train_plot_dir(backbone: str, dataset: str) -> Path:
    return Path("plots/train") / backbone / dataset


def features_path(backbone: str, dataset: str) -> Path:
    return Path("features") / dataset / f"{backbone}.npz"


def metrics_path(dataset: str, stage: str) -> Path:
    return Path("metrics") / dataset / f"{stage}.json"


def per_query_dir(dataset: str, stage: str) -> Path:
    """Per-query AP and first-match rank of each backbone, from `evaluate` or `rerank`."""
    name = "per_query" if stage == "evaluate" else f"per_query_{stage}"
    return Path("metrics") / dataset / name


def cmc_plot_dir(dataset: str) -> Path:
    return Path("plots/cmc") / dataset


def results_dir(dataset: str) -> Path:
    """The results table (Markdown, CSV) and ranked-list pictures of one dataset."""
    return Path("results") / dataset


def cross_domain_cell_path(train: str, test: str) -> Path:
    """One cell of the cross-dataset matrix: models trained on `train`, tested on `test`."""
    return Path("metrics/cross_domain") / train / f"{test}.json"


def cross_domain_metrics_path() -> Path:
    """The whole matrix, `{train: {test: {backbone: scores}}}`."""
    return Path("metrics/cross_domain.json")


def cross_domain_table_paths() -> tuple[Path, Path]:
    """The matrix tables (Markdown, CSV): files beside the `results/<ds>/` folders."""
    return Path("results/cross_domain.md"), Path("results/cross_domain.csv")
