"""`reid info MODEL`: what a model file is: backbone, dataset, input size, training."""

from __future__ import annotations

import argparse
import json
from typing import Any


def describe(saved: dict[str, Any]) -> dict[str, Any]:
    history = saved.get("history", [])
    last = history[-1] if history else {}
    return {
        "backbone": saved["backbone"],
        "dataset": saved.get("dataset"),
        "input_size": list(saved["input_size"]),
        "feature_dim": saved.get("feature_dim"),
        "num_classes": saved["num_classes"],
        "init": "ImageNet" if saved.get("pretrained") else "from scratch",
        "epochs": len(history),
        "final_loss": round(float(last["loss"]), 6) if "loss" in last else None,
        "train_config": saved.get("train_config"),
    }


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(name, help="describe a model file", description=__doc__)
    parser.add_argument("model", help="a model file of a train stage (models/<b>/<ds>.pt)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from reid.api import read_model_file

    info = describe(read_model_file(args.model))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0
