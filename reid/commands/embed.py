"""`reid embed MODEL IMAGES... -o feats.npz`: embeddings of image files or folders.

The output holds `features` (N, D) float32, one row per image in the order given (a folder's
images sorted by path), and `paths`. The embedding is the pipeline's: BNNeck feature,
flip-averaged and L2-normalised, as the evaluate stage scored it (see `reid.api`).

MODEL may also be an ONNX file written by `reid export` (`.onnx`): it runs under ONNX Runtime
on the CPU, on the same preprocessing (read from the file's metadata), with the flip averaging
and normalisation it was exported with.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from reid.io import atomic_path


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="embed images with a trained model", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a model file of a train stage (models/<b>/<ds>.pt), "
                                      "or an .onnx file of `reid export`")
    parser.add_argument("images", nargs="+", help="image files and/or folders of images")
    parser.add_argument("-o", "--output", required=True, help="the .npz file to write")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda | cuda:N (an .onnx model runs on the CPU)")
    parser.add_argument("--no-flip", action="store_true", help="do not average with the mirror")
    parser.add_argument("--no-normalize", action="store_true", help="do not L2-normalise")


def run(args: argparse.Namespace) -> int:
    from reid.commands.loading import load_any_model
    from reid.data.images import image_paths

    paths = image_paths(args.images)
    model = load_any_model(args.model, device=args.device)
    onnx = Path(args.model).suffix.lower() == ".onnx"
    if onnx:
        # flip / normalisation are in the graph: as exported, unless asked off (checked there)
        features = model.embed(paths, batch_size=args.batch_size,
                               flip=False if args.no_flip else None,
                               normalize=False if args.no_normalize else None)
    else:
        features = model.embed(paths, batch_size=args.batch_size, flip=not args.no_flip,
                               normalize=not args.no_normalize)
    output = Path(args.output)
    with atomic_path(output) as tmp, tmp.open("wb") as fh:
        np.savez(fh, features=features, paths=np.array([str(p) for p in paths]))
    print(f"{output}: {features.shape[0]} images x {features.shape[1]} features "
          f"({model.backbone}, {'x'.join(map(str, model.input_size))}"
          f"{', ONNX Runtime' if onnx else ''})")
    return 0
