"""The `cross_domain` stage: the cells of `cross_eval` gathered into the cross-dataset matrix.

Reads `metrics/cross_domain/<train>/<test>.json` for every pair of `datasets` (stale cells of
datasets no longer listed are ignored) and writes `metrics/cross_domain.json`,
`{train: {test: {backbone: {mAP, rank1, rank5, rank10, mINP}}}}` with the diagonal, and the
matrix tables `results/cross_domain.md` and `.csv`. No model or feature is read here.
"""

from __future__ import annotations

import json
from typing import Any

from reid.io import write_json
from reid.params import Params
from reid.paths import cross_domain_cell_path, cross_domain_metrics_path, cross_domain_table_paths
from reid.report.tables import write_cross_domain


def _read_cell(train: str, test: str) -> dict[str, Any]:
    path = cross_domain_cell_path(train, test)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run cross_eval@{train}-{test} first)")
    return json.loads(path.read_text())


def cross_domain(params: Params) -> dict[str, Any]:
    """The matrix of every (train, test) pair of `datasets` -> metrics JSON and tables."""
    datasets = params.datasets
    cells = {train: {test: _read_cell(train, test) for test in datasets} for train in datasets}
    matrix = {train: {test: cell["scores"] for test, cell in row.items()}
              for train, row in cells.items()}
    write_json(cross_domain_metrics_path(), matrix)
    ev = params.eval
    notes = [
        "Each cell: mAP / rank-1 (%) of the model trained on the row's dataset, tested on the "
        "column's dataset under that dataset's protocol (its query and gallery; same-id "
        "same-camera gallery images ignored), with no adaptation. The diagonal is the "
        "within-dataset result, as in metrics/<dataset>/evaluate.json.",
        *(_protocol_note(test, cells[test][test]) for test in datasets),
        f"Distance: {ev.metric} on {'L2-normalised ' if ev.normalize else ''}BNNeck features"
        f"{' averaged with the flipped image' if ev.flip else ''}; the test images are "
        "resized to the input size the model was trained at. All metrics: "
        f"{cross_domain_table_paths()[1]} and {cross_domain_metrics_path()}.",
    ]
    markdown, csv = cross_domain_table_paths()
    write_cross_domain(matrix, markdown, csv,
                       title="Cross-dataset evaluation (direct transfer)", notes=notes)
    return matrix


def _protocol_note(test: str, cell: dict[str, Any]) -> str:
    return (f"Test on {test}: {cell['protocol']}; query {cell['num_query']} images "
            f"({cell['num_valid_queries']} valid), gallery {cell['num_gallery']} images.")
