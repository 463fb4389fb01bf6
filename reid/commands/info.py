"""`reid info MODEL`: what a model file is: backbone, dataset, input size, training, code and,
when the pipeline that wrote it scored it, its test metrics.

Test metrics come from `metrics/<dataset>/{evaluate,rerank}.json` of the pipeline the file
lies in (`<root>/models/<backbone>/<dataset>.pt`), and only when that evaluation recorded
this very file (`per_query*/models.json` holds each scored model's sha256).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reid.io import file_digest

if TYPE_CHECKING:
    from reid.models.model_file import ModelFile


def recorded_test_metrics(path: Path, model_file: ModelFile) -> dict[str, Any] | None:
    """{"test": {...}, "test_rerank": {...}} scored on this file, or None when not recorded."""
    parents = path.resolve().parents
    if len(parents) < 3:  # not in <root>/models/<backbone>/: no pipeline around it
        return None
    root = parents[2]
    digest = None
    found: dict[str, Any] = {}
    for stage, folder, key in (("evaluate", "per_query", "test"),
                               ("rerank", "per_query_rerank", "test_rerank")):
        metrics_dir = root / "metrics" / str(model_file.dataset)
        record, metrics = metrics_dir / folder / "models.json", metrics_dir / f"{stage}.json"
        if not (record.is_file() and metrics.is_file()):
            continue
        digest = digest or file_digest(path, "sha256")
        if json.loads(record.read_text()).get(model_file.backbone) != digest:
            continue
        found[key] = json.loads(metrics.read_text()).get(model_file.backbone)
    return found or None


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="describe a model file", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a model file of a train stage (models/<b>/<ds>.pt)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from reid.models.model_file import describe, read_model_file

    model_file = read_model_file(args.model)
    info = {**describe(model_file),
            "test_metrics": recorded_test_metrics(Path(args.model), model_file)}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        if key == "test_metrics":
            value = _metrics_line(value)
        print(f"{key:<{width}}  {value}")
    return 0


def _metrics_line(found: dict[str, Any] | None) -> str:
    if not found:
        return "none recorded for this file (its evaluate stage has not scored it)"
    parts = []
    for key, label in (("test", "test"), ("test_rerank", "re-ranked")):
        if m := found.get(key):
            lo, hi = m.get("ci95", {}).get("mAP", (None, None))
            ci = f" [95% CI {lo}, {hi}]" if lo is not None else ""
            parts.append(f"{label}: mAP {m['mAP']}{ci}, rank-1 {m['rank1']}, mINP {m['mINP']}")
    return "; ".join(parts)
