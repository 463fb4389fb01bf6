"""Embedding throughput on the CPU: `reid embed`'s path with PyTorch and with ONNX Runtime.

    python benchmarks/bench_embed.py [--model models/resnet50/market1501.pt] [--images DIR ...]
                                     [-n 512] [--threads T]

Exports the model to a temporary ONNX file (`reid.export.export_onnx`, parity-checked on the
first 32 images), then times both runtimes on the same N real images (the query images of
the model's dataset manifest, data/split/<dataset>/manifest.csv, or --images; cycled when
there are fewer than N), best of --repeats passes after one warm-up batch each:
`embed` is the whole command path (`TrainedModel.embed` / `OnnxModel.embed`: decode, test
transform, network, flip averaging, L2 normalisation; one process, no loader workers);
`network` runs the network alone on batches preprocessed once. Both runtimes get the same
thread count (torch.set_num_threads and ONNX Runtime's intra-op threads). A benchmark, not a
test: it asserts nothing, but prints how far the two runtimes' features are apart.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from reid.api import load_model
from reid.data.images import image_loader, image_paths
from reid.data.manifest import read_manifest
from reid.engine.extract import extract_features
from reid.export import export_onnx, load_onnx
from reid.paths import manifest_path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    flags = set(next((ln for ln in text.splitlines() if ln.startswith("flags")), "").split())
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags)


def best_of(repeats: int, run: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """The fastest of `repeats` wall-clock runs of `run`, and its result."""
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def default_images(dataset: str | None) -> list[Path]:
    manifest = REPO / manifest_path(dataset or "market1501")
    table = read_manifest(manifest)
    return [REPO / p for p in table.loc[table["split"] == "query", "path"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models/resnet50/market1501.pt")
    parser.add_argument("--images", nargs="+", help="image files and/or folders (default: the "
                                                    "query images of the dataset's manifest)")
    parser.add_argument("-n", "--num-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="threads of both runtimes (default: torch's, %(default)s here)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.num_images < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("-n, --repeats and --threads must be at least 1")
    torch.set_num_threads(args.threads)

    model = load_model(args.model, device="cpu")
    found = image_paths(args.images) if args.images else default_images(model.dataset)
    paths = (found * math.ceil(args.num_images / len(found)))[: args.num_images]
    source = " ".join(args.images) if args.images else "query images of the manifest"
    print(f"cpu: {cpu_model()} ({cpu_flags()}), {os.cpu_count()} logical cores, "
          f"{args.threads} threads; torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(f"model: {args.model} ({model.backbone}, {'x'.join(map(str, model.input_size))}, "
          f"{model.feature_dim}-d, flip-averaged, L2-normalised), batch {args.batch_size}")
    print(f"images: {len(paths)} ({len(found)} distinct from {source})")

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        start = time.perf_counter()
        parity = export_onnx(args.model, onnx_path, images=found[:32])
        print(f"export: {time.perf_counter() - start:.1f} s, parity max |onnx - torch| = "
              f"{parity:.1e} on {len(found[:32])} images")
        exported = load_onnx(onnx_path, threads=args.threads)

        warm = paths[: args.batch_size]
        model.embed(warm, batch_size=args.batch_size)
        exported.embed(warm, batch_size=args.batch_size)
        rows = {}
        rows["pytorch"] = best_of(args.repeats, lambda: model.embed(
            paths, batch_size=args.batch_size))
        rows["onnxruntime"] = best_of(args.repeats, lambda: exported.embed(
            paths, batch_size=args.batch_size))
        batches = list(image_loader(paths, model.transform, batch_size=args.batch_size))
        network = {
            "pytorch": best_of(args.repeats, lambda: extract_features(
                model.network, batches, device=model.device, desc="network"))[0],
            "onnxruntime": best_of(args.repeats, lambda: exported.run_batches(batches))[0],
        }

    print(f"{'runtime':<14}{'embed s':>9}{'embed img/s':>13}{'network s':>11}"
          f"{'network img/s':>15}")
    for name, (seconds, _) in rows.items():
        print(f"{name:<14}{seconds:>9.2f}{len(paths) / seconds:>13.0f}{network[name]:>11.2f}"
              f"{len(paths) / network[name]:>15.0f}")
    print(f"onnxruntime / pytorch: embed x{rows['pytorch'][0] / rows['onnxruntime'][0]:.2f}, "
          f"network x{network['pytorch'] / network['onnxruntime']:.2f} (images/s ratio)")
    diff = np.abs(rows["onnxruntime"][1] - rows["pytorch"][1]).max()
    print(f"features: max |onnx - torch| = {diff:.1e} over {len(paths)} images")


if __name__ == "__main__":
    main()
