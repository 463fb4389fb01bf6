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
CI_METRICS = ("mAP", "rank1")  # the metrics given with a bootstrap interval


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
    """Rows of {"model", "image_size", ["epochs"], mAP, rank1, ..., ["ci95"]} -> the table.

    A row's `ci95` ({"mAP": [lo, hi], "rank1": [lo, hi]}) becomes a "95% CI" column beside each
    of the two metrics; rows without one (the untrained baselines) leave it empty.
    """
    records = []
    for row in rows:
        record = {"Model": row["model"], "Image size": row["image_size"]}
        if "epochs" in row:
            record["Epochs"] = row["epochs"]
        for key, column in METRIC_COLUMNS.items():
            record[column] = row[key]
            if key in CI_METRICS:
                interval = row.get("ci95", {}).get(key)
                record[f"{column} 95% CI"] = (
                    f"[{interval[0]:.1f}, {interval[1]:.1f}]" if interval else ""
                )
        records.append(record)
    return pd.DataFrame(records)


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
