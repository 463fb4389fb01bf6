"""Results tables in the shape of the reproduced project's: Markdown and CSV, protocol below."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from reid.io import atomic_path, write_text

DISPLAY_NAMES = {
    "resnet50": "ResNet50",
    "resnet50_ibn_a": "ResNet50-IBN-A",
    "effnetv2": "EfficientNet-v2",
}
METRIC_COLUMNS = {"mAP": "mAP", "rank1": "R-1", "rank5": "R-5", "rank10": "R-10", "mINP": "mINP"}


def scores(result: Mapping[str, Any]) -> dict[str, float]:
    """Percentages (2 decimals) with stable keys from an `evaluate_ranking` result."""
    cmc = result["cmc"]
    return {
        "mAP": round(100 * float(result["mAP"]), 2),
        "rank1": round(100 * float(cmc[0]), 2),
        "rank5": round(100 * float(cmc[4]), 2),
        "rank10": round(100 * float(cmc[9]), 2),
        "mINP": round(100 * float(result["mINP"]), 2),
    }


def model_label(backbone: str, pretrained: bool, suffix: str = "") -> str:
    init = "ImageNet" if pretrained else "from scratch"
    return f"{DISPLAY_NAMES.get(backbone, backbone)} ({init}){suffix}"


def results_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows of {"model", "image_size", mAP, rank1, ...} -> the published table's columns."""
    table = pd.DataFrame(rows)
    return table.rename(columns={"model": "Model", "image_size": "Image size", **METRIC_COLUMNS})


def write_results(
    table: pd.DataFrame, markdown_path: Path, csv_path: Path, *, title: str, notes: Sequence[str]
) -> None:
    """The table as CSV and as Markdown with a title line and the protocol notes under it."""
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" if i < 2 else "---:" for i in range(len(table.columns))) + "|"
    lines = [f"## {title}", "", header, rule]
    for row in table.itertuples(index=False):
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *[f"- {note}" for note in notes], ""]
    write_text(markdown_path, "\n".join(lines))
