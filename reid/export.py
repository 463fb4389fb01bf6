"""ONNX export of a trained model, and embedding with the exported file under ONNX Runtime.

    from reid.export import export_onnx, load_onnx
    diff = export_onnx("models/resnet50/market1501.pt", "market1501.onnx", images=["query/"])
    features = load_onnx("market1501.onnx").embed(["a.jpg", "b.jpg"])   # (2, D) float32

The graph is the embedding of `reid.engine.extract.extract_features` and nothing else: input
`images` (N, 3, H, W) float32, already preprocessed; output `features` (N, D) float32, the
BNNeck feature, averaged with the mirrored image's (`flip`) and L2-normalised (`normalize`) as
chosen at export time. The batch axis is dynamic. Preprocessing (RGB, resize, scale to [0, 1],
ImageNet mean/std) is the caller's, never the graph's, so it cannot be applied twice; the file's
`metadata_props` (`reid.*`, see `METADATA_KEYS`) say exactly what it is, and `OnnxModel`
reads them and runs the pipeline's own test transform and loader
(`reid.data.images.image_loader`).

Which exporter: `torch.onnx.export(..., dynamo=True)`, the `torch.export` based one (PyTorch's
default since 2.9, needs `onnxscript`). It marks the batch dimension symbolic from
`dynamic_shapes` and `torch.export` fails the export if any operation would specialise it, so a
dynamic batch is checked, not hoped for; the feature dimension stays a number (2048). The
legacy TorchScript exporter (`dynamo=False`) is deprecated since 2.9 (a DeprecationWarning on
every call, removal announced); it traces one example batch, warns that timm's shape checks
"might cause the trace to be incorrect", and leaves the feature dimension symbolic. Both
produce the same numbers on torch 2.14 (max difference to PyTorch about 1e-7); the dynamo
exporter is the one that will still be there. Opset 18 is the exporter's native opset (no
version conversion), the same on torch 2.11 to 2.14; ONNX Runtime >= 1.14 runs it.

Every export is checked before it is kept: ONNX Runtime (CPU) and PyTorch's `extract_features`
embed the same preprocessed batches of real images, and a maximum absolute difference above the
tolerance (1e-4 by default, fp32) raises `ParityError` with the file never renamed into place.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from reid.api import TrainedModel, load_model
from reid.data.images import Images, image_loader, image_paths
from reid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_test_transform
from reid.engine.extract import embedding, extract_features
from reid.errors import InputError
from reid.io import atomic_path, check_writable, file_digest
from reid.models import ReidModel

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-4
INPUT_NAME = "images"
OUTPUT_NAME = "features"
METADATA_KEYS = (
    "reid.backbone",
    "reid.dataset",
    "reid.input_size",
    "reid.mean",
    "reid.std",
    "reid.preprocessing",
    "reid.flip_averaged",
    "reid.l2_normalized",
    "reid.source_model",
)


class ParityError(InputError):
    """The exported graph does not reproduce PyTorch's embedding within the tolerance."""


class EmbeddingModule(nn.Module):
    """images (N, 3, H, W), preprocessed -> features (N, D): `reid.engine.extract.embedding`
    (the one `extract_features` runs) as a module to export. No autocast: fp32 throughout."""

    def __init__(self, model: ReidModel, *, flip: bool, normalize: bool) -> None:
        super().__init__()
        self.model, self.flip, self.normalize = model, flip, normalize

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return embedding(self.model, images, flip=self.flip, normalize=self.normalize)


def _floats(values: Sequence[float]) -> str:
    return ",".join(map(str, values))


def preprocessing_text(height: int, width: int) -> str:
    """What the caller does to an image before the graph (the pipeline's test transform)."""
    return (f"The caller preprocesses, the graph does not (so it is never applied twice): "
            f"decode as RGB, resize to {height}x{width} (height x width) with bilinear "
            f"interpolation (antialiased), scale to [0, 1] as float32, subtract reid.mean and "
            f"divide by reid.std per channel (RGB order), layout (N, 3, {height}, {width}).")


def export_onnx(
    model_path: str | Path,
    onnx_path: str | Path,
    *,
    images: Sequence[str | Path],
    tolerance: float = DEFAULT_TOLERANCE,
    flip: bool = True,
    normalize: bool = True,
    opset: int = DEFAULT_OPSET,
    batch_size: int = 32,
) -> float:
    """Export a train stage's model file to ONNX, checked on `images`; returns the parity.

    `images` (files and/or folders) are real crops for the parity check (`onnx_parity`): the
    file is written under a temporary name and renamed onto `onnx_path` only if the maximum
    absolute difference is at most `tolerance`; otherwise `ParityError` and nothing is left.
    """
    import onnx  # 1.3 s to import: only here, not for `reid --help` or embedding

    if not tolerance > 0:
        raise InputError(f"the parity tolerance must be positive, got {tolerance}")
    model_path, onnx_path = Path(model_path), Path(onnx_path)
    model = load_model(model_path, device="cpu")
    paths = image_paths(images)
    check_writable(onnx_path)
    height, width = model.input_size
    wrapper = EmbeddingModule(model.network, flip=flip, normalize=normalize).eval()
    # batch 2, not 1: torch.export specialises a dimension whose example size is 0 or 1
    example = torch.zeros(2, 3, height, width)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            wrapper, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=opset, dynamo=True, external_data=False, optimize=True,
            verbose=False, dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    proto = program.model_proto
    _set_metadata(proto, {
        "reid.backbone": model.backbone,
        "reid.dataset": model.dataset or "",
        "reid.input_size": f"{height},{width}",
        "reid.mean": _floats(IMAGENET_MEAN),
        "reid.std": _floats(IMAGENET_STD),
        "reid.preprocessing": preprocessing_text(height, width),
        "reid.flip_averaged": str(flip).lower(),
        "reid.l2_normalized": str(normalize).lower(),
        "reid.source_model": f"{model_path.name} sha256:{file_digest(model_path, 'sha256')}",
    })
    with atomic_path(onnx_path) as tmp:
        onnx.save_model(proto, tmp)
        diff = onnx_parity(tmp, model, paths, batch_size=batch_size)
        logger.info("parity of %s: max |onnx - torch| = %.1e on %d images", onnx_path, diff,
                    len(paths))
        if not diff <= tolerance:  # also NaN
            raise ParityError(
                f"{onnx_path}: the ONNX model does not reproduce PyTorch: max |onnx - torch| = "
                f"{diff:.1e} on {len(paths)} images, above the tolerance {tolerance:.0e}; "
                "nothing was written (raise --tolerance if that difference is acceptable)")
    return diff


def _set_metadata(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def onnx_parity(
    onnx_path: str | Path,
    model: TrainedModel,
    images: Images,
    *,
    batch_size: int = 32,
) -> float:
    """Max |ONNX Runtime - PyTorch| over the embeddings of `images` (fp32, CPU or not).

    Both run on the same batches, preprocessed once by the pipeline's test transform; PyTorch's
    side is `extract_features` itself (autocast off), with the flip and normalisation that the
    ONNX file's metadata declares.
    """
    exported = load_onnx(onnx_path)
    if exported.input_size != model.input_size:
        raise InputError(f"{onnx_path}: input size {exported.input_size} but the model's is "
                         f"{model.input_size}")
    batches = list(image_loader(images, model.transform, batch_size=batch_size))
    reference = extract_features(model.network, batches, device=model.device, flip=exported.flip,
                                 normalize=exported.normalize, amp=False, desc="parity")
    return float(np.abs(exported.run_batches(batches) - reference).max())


class OnnxModel:
    """An ONNX model of `reid export` under ONNX Runtime (CPU), embedding like
    `reid.api.TrainedModel`."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX model file not found")
        import onnxruntime as ort  # here, not at import: `reid --help` needs no runtime

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only: no optimiser notes on stderr
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types: not an ONNX file
            raise InputError(f"{path}: not an ONNX model ({err})") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in METADATA_KEYS if k not in meta]
        names = ([i.name for i in self.session.get_inputs()],
                 [o.name for o in self.session.get_outputs()])
        if missing or names != ([INPUT_NAME], [OUTPUT_NAME]):
            raise InputError(f"{path}: not an ONNX model exported by `reid export` (missing "
                             f"{', '.join(missing) or 'inputs images / outputs features'}); "
                             "export one with `reid export MODEL.pt -o MODEL.onnx`")
        try:
            height, width = (int(v) for v in meta["reid.input_size"].split(","))
            mean, std = (tuple(map(float, meta[k].split(","))) for k in ("reid.mean", "reid.std"))
        except ValueError as err:
            raise InputError(f"{path}: unreadable reid.input_size / mean / std ({err})") from err
        if not (np.allclose(mean, IMAGENET_MEAN) and np.allclose(std, IMAGENET_STD)):
            raise InputError(f"{path}: normalised with mean {mean} / std {std}, but this "
                             f"version's test transform uses {IMAGENET_MEAN} / {IMAGENET_STD}")
        self.path = path
        self.backbone: str = meta["reid.backbone"]
        self.dataset: str | None = meta["reid.dataset"] or None
        self.input_size: tuple[int, int] = (height, width)
        self.flip: bool = meta["reid.flip_averaged"] == "true"
        self.normalize: bool = meta["reid.l2_normalized"] == "true"
        self.feature_dim: int = self.session.get_outputs()[0].shape[1]
        self.source_model: str = meta["reid.source_model"]
        self.threads: int = options.intra_op_num_threads
        self.transform = build_test_transform(height, width)

    def embed(
        self,
        images: Images,
        *,
        batch_size: int = 64,
        flip: bool | None = None,
        normalize: bool | None = None,
        num_workers: int = 0,
    ) -> np.ndarray:
        """(N, D) float32 embeddings of the inputs `TrainedModel.embed` takes, in order.

        Flip averaging and normalisation are part of the graph: `None` takes them as exported;
        asking for the other setting is an error (export again with `--no-flip` /
        `--no-normalize`), never a silently different embedding.
        """
        for asked, exported, option in ((flip, self.flip, "flip"),
                                        (normalize, self.normalize, "normalize")):
            if asked is not None and asked != exported:
                how = f"without --no-{option}" if asked else f"with --no-{option}"
                raise InputError(f"{self.path} was exported {'with' if exported else 'without'}"
                                 f" {option}; to embed {'with' if asked else 'without'} it, "
                                 f"export it again {how} (reid export)")
        loader = image_loader(images, self.transform, batch_size=batch_size,
                              num_workers=num_workers)
        return self.run_batches(tqdm(loader, desc="embed", unit="batch", leave=False,
                                     disable=None))

    def run_batches(self, batches: Iterable[tuple[torch.Tensor, object]]) -> np.ndarray:
        """(N, D) float32 features of preprocessed `(images (B, 3, H, W), labels)` batches."""
        chunks = [self.session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
                  for images, _ in batches]
        if not chunks:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)


def load_onnx(path: str | Path, *, threads: int | None = None) -> OnnxModel:
    """Open an ONNX model written by `reid export`; `threads` defaults to torch's count."""
    return OnnxModel(path, threads=threads)
