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
    lines = [f"## {title}", "", *markdown_table(table, text_columns=2)]
    lines += ["", *[f"- {note}" for note in notes], ""]
    write_text(markdown_path, "\n".join(lines))


def markdown_table(table: pd.DataFrame, *, text_columns: int) -> list[str]:
    """The lines of a Markdown table: the first `text_columns` columns left-aligned, the others
    right-aligned; floats with one decimal."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" if i < text_columns else "---:"
                          for i in range(len(table.columns))) + "|"
    lines = [header, rule]
    for row in table.itertuples(index=False):
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


CROSS_CORNER = "Train \\ Test"


def cross_domain_table(matrix: Mapping[str, Mapping[str, Mapping[str, Any]]],
                       backbone: str) -> pd.DataFrame:
    """One backbone's cross-dataset matrix: a row per training dataset, a column per test
    dataset, each cell "mAP / R-1" (percent, one decimal). `matrix` is
    `{train: {test: {backbone: scores}}}` (`reid.pipeline.scoring.scores`' keys)."""
    return pd.DataFrame([
        {CROSS_CORNER: train, **{test: f"{by_backbone[backbone]['mAP']:.1f} / "
                                       f"{by_backbone[backbone]['rank1']:.1f}"
                                 for test, by_backbone in row.items()}}
        for train, row in matrix.items()
    ])


def write_cross_domain(
    matrix: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
    markdown_path: Path, csv_path: Path, *, title: str, notes: Sequence[str],
) -> None:
    """A matrix table per backbone in Markdown, the notes under them; the CSV holds one row
    per (backbone, train, test) with every metric, for a spreadsheet."""
    first_row = next(iter(matrix.values()))
    backbones = list(next(iter(first_row.values())))  # every cell holds the same backbones
    long = pd.DataFrame([
        {"backbone": backbone, "train": train, "test": test, **by_backbone[backbone]}
        for backbone in backbones
        for train, row in matrix.items() for test, by_backbone in row.items()
    ])
    with atomic_path(csv_path) as tmp:
        long.to_csv(tmp, index=False)
    lines = [f"## {title}", ""]
    for backbone in backbones:
        lines += [f"### {DISPLAY_NAMES.get(backbone, backbone)}", "",
                  *markdown_table(cross_domain_table(matrix, backbone), text_columns=1), ""]
    lines += [*[f"- {note}" for note in notes], ""]
    write_text(markdown_path, "\n".join(lines))
