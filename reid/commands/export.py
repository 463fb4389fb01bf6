"""`reid export MODEL -o model.onnx`: a trained model as an ONNX file, checked before it is kept.

The graph takes `images` (N, 3, H, W) float32, already preprocessed (RGB, resized to the model's
input size, scaled to [0, 1], ImageNet mean/std: the pipeline's test transform, done by the
caller, never by the graph), any batch size, and returns `features` (N, D) float32: the BNNeck
embedding the evaluate stage scores, flip-averaged and L2-normalised unless --no-flip /
--no-normalize. The file's metadata (reid.input_size, reid.mean, reid.std,
reid.preprocessing, reid.flip_averaged, reid.l2_normalized, reid.source_model with its sha256)
says so; `reid embed model.onnx IMAGES -o feats.npz` reads it and runs it with ONNX Runtime.

Parity: ONNX Runtime and PyTorch embed the same real images (--images, else the first 32
query images of the model's dataset manifest, data/split/<dataset>/manifest.csv); if the
largest absolute difference exceeds --tolerance the command fails and nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

PARITY_IMAGES = 32


def add_parser(subparsers: Any, name: str) -> None:
    # the defaults are reid.export's (a test keeps this help equal to them); importing that
    # module here would load torch for every `reid --help`
    parser = subparsers.add_parser(
        name, help="export a trained model to ONNX (checked against PyTorch)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a model file of a train stage (models/<b>/<ds>.pt)")
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--images", nargs="+", metavar="DIR_OR_FILE",
                        help="real image files and/or folders for the parity check (default: "
                             f"the first {PARITY_IMAGES} query images of the dataset manifest)")
    parser.add_argument("--tolerance", type=float,
                        help="largest |onnx - torch| accepted on any feature (default 1e-04, "
                             "fp32)")
    parser.add_argument("--no-flip", action="store_true",
                        help="export without averaging with the mirrored image")
    parser.add_argument("--no-normalize", action="store_true",
                        help="export without L2-normalising the features")
    parser.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    parser.add_argument("--batch-size", type=int, default=32, help="parity check batch size")


def parity_images(images: list[str] | None, dataset: str | None) -> tuple[list[Path], str]:
    """The images to check an export on, and where they come from (for the printout)."""
    from reid.data.images import image_paths
    from reid.data.manifest import read_manifest
    from reid.errors import InputError
    from reid.paths import manifest_path

    if images:
        return image_paths(images), "given"
    manifest = manifest_path(dataset) if dataset else None
    if manifest is not None and manifest.is_file():
        table = read_manifest(manifest)
        query = table.loc[table["split"] == "query", "path"].head(PARITY_IMAGES).tolist()
        if query:
            return image_paths(query), f"query images of {manifest}"
    where = f"no manifest at {manifest}" if manifest else "the model file names no dataset"
    raise InputError(f"no images to check the export on ({where}): give real crops with "
                     "--images DIR_OR_FILE ...")


def run(args: argparse.Namespace) -> int:
    from reid.export import DEFAULT_OPSET, DEFAULT_TOLERANCE, export_onnx
    from reid.models.model_file import read_model_file

    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    opset = DEFAULT_OPSET if args.opset is None else args.opset
    saved = read_model_file(args.model)
    paths, source = parity_images(args.images, saved.dataset)
    flip, normalize = not args.no_flip, not args.no_normalize
    diff = export_onnx(args.model, args.output, images=paths, tolerance=tolerance,
                       flip=flip, normalize=normalize, opset=opset, batch_size=args.batch_size)
    print(f"parity: max |onnx - torch| = {diff:.1e} on {len(paths)} images "
          f"(tolerance {tolerance:.0e}; {source})")
    height, width = saved.input_size
    print(f"{args.output}: {saved.backbone}, input (N, 3, {height}, {width}), "
          f"{'flip-averaged' if flip else 'no flip'}, "
          f"{'L2-normalised' if normalize else 'not normalised'}, opset {opset}")
    return 0
