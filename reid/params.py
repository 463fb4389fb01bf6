"""Typed, validated view of `params.yaml`.

Each stage loads the file once into frozen dataclasses; an unknown key, a missing key or a
value of the wrong type fails here with a message naming the key (e.g. `train.epochs`), so
nothing below the stages ever sees the raw dictionary.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

BACKBONES = ("resnet50", "resnet50_ibn_a", "effnetv2")
DATASETS = ("market1501", "cuhk03")


class ParamsError(ValueError):
    """A params file that does not match the expected schema."""


@dataclass(frozen=True)
class GeneratedMarketParams:
    num_train_ids: int = 32
    num_test_ids: int = 32
    num_distractors: int = 16
    num_junk: int = 8
    cameras: int = 6
    images_per_camera: list[int] = field(default_factory=lambda: [1, 3])
    seed: int = 0


@dataclass(frozen=True)
class GeneratedCuhk03Params:
    num_pairs: int = 2
    ids_per_pair: int = 32
    num_test_ids: int = 32
    images_per_view: list[int] = field(default_factory=lambda: [2, 5])
    seed: int = 1


@dataclass(frozen=True)
class DatasetParams:
    """Where a dataset comes from: `generated`, a local archive or folder, or an http(s) URL."""

    source: str = "generated"
    sha256: str | None = None
    md5: str | None = None
    variant: Literal["detected", "labeled"] = "detected"  # CUHK03 only
    generated: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InputParams:
    height: int = 128
    width: int = 64
    flip_p: float = 0.5
    padding: int = 10
    erasing_p: float = 0.5


@dataclass(frozen=True)
class TrainParams:
    seed: int = 0
    epochs: int = 6
    batch_size: int = 32
    num_instances: int = 4
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_factor: float = 0.01
    milestones: list[int] = field(default_factory=lambda: [4, 5])
    gamma: float = 0.1
    label_smoothing: float = 0.1
    margin: float = 0.3
    center_weight: float = 5e-4
    center_lr: float = 0.5
    amp: bool = True
    device: str = "auto"
    num_workers: int = 2
    pin_memory: bool = True
    # auto: decode once and augment on the GPU under CUDA, DataLoader workers on the CPU
    input_pipeline: Literal["auto", "device", "loader"] = "auto"
    channels_last: bool = True  # CUDA only
    nproc: int = 1  # processes (GPUs) per train stage: > 1 runs it under torchrun with DDP
    sync_bn: bool = False  # nproc > 1 on CUDA: BatchNorm statistics over all processes
    compile: bool = False  # torch.compile the model (pays off on long GPU runs)


@dataclass(frozen=True)
class ModelParams:
    pretrained: str | None = None
    epochs: int | None = None  # overrides train.epochs for this backbone
    variant: str = "tf_efficientnetv2_s"  # effnetv2 only: the timm model name


@dataclass(frozen=True)
class EvalParams:
    batch_size: int = 128
    flip: bool = True
    normalize: bool = True
    metric: Literal["euclidean", "cosine"] = "euclidean"
    max_rank: int = 50
    untrained_baseline: bool = True  # also score the randomly initialised network


@dataclass(frozen=True)
class RerankParams:
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3


@dataclass(frozen=True)
class ReportParams:
    num_queries: int = 4
    top_k: int = 10
    rerank: bool = True


@dataclass(frozen=True)
class TrackingParams:
    enabled: bool = True
    experiment: str = "reid-pipeline"


@dataclass(frozen=True)
class Params:
    backbone: str
    datasets: list[str]
    data: dict[str, DatasetParams]
    models: dict[str, ModelParams]
    input: InputParams = field(default_factory=InputParams)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)
    rerank: RerankParams = field(default_factory=RerankParams)
    report: ReportParams = field(default_factory=ReportParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)

    def epochs_for(self, backbone: str) -> int:
        override = self.models[backbone].epochs
        return self.train.epochs if override is None else override


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, recursing into lists, dicts and dataclasses."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except ParamsError as err:
                errors.append(str(err))
        raise ParamsError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches no type")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ParamsError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {k: _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads `3.5e-4` as a string
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool):
        raise ParamsError(f"{key}: expected int, got {value!r}")
    if not isinstance(value, tp):
        raise ParamsError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: Any, prefix: str) -> Any:
    """Build the dataclass `cls` from a mapping, naming `prefix.key` in every error."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{prefix or 'params'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ParamsError(
            f"unknown key(s) {', '.join(where + k for k in unknown)}; "
            f"expected: {', '.join(fields)}"
        )
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            values[name] = _convert(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"missing key {key}")
    return cls(**values)


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a params dictionary into `Params`, checking names across sections."""
    params = from_dict(Params, raw, "")
    if params.backbone not in BACKBONES:
        raise ParamsError(f"backbone: unknown {params.backbone!r}; choose one of {BACKBONES}")
    for name in params.datasets:
        if name not in DATASETS:
            raise ParamsError(f"datasets: unknown {name!r}; choose from {DATASETS}")
        if name not in params.data:
            raise ParamsError(f"datasets lists {name!r} but data.{name} is missing")
    for name in params.models:
        if name not in BACKBONES:
            raise ParamsError(f"models.{name}: unknown backbone; choose from {BACKBONES}")
    for name in BACKBONES:
        if name not in params.models:
            raise ParamsError(f"missing key models.{name}")
    if params.input.padding < 0:
        raise ParamsError(f"input.padding must be >= 0 pixels, got {params.input.padding}")
    if params.train.nproc < 1:
        raise ParamsError(f"train.nproc must be >= 1, got {params.train.nproc}")
    if params.train.batch_size % params.train.num_instances:
        raise ParamsError(
            f"train.batch_size ({params.train.batch_size}) must be a multiple of "
            f"train.num_instances ({params.train.num_instances})"
        )
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate `path`; errors name the file and the offending key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    try:
        return parse_params(raw)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None


def as_flat_dict(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a params dataclass into `{"train.lr": 0.00035, ...}` (for MLflow)."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        flat: dict[str, Any] = {}
        for key, value in obj.items():
            flat.update(as_flat_dict(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: obj}
