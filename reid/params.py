"""Typed, validated view of `params.yaml`.

Each stage loads the file once into frozen dataclasses; an unknown key, a missing key, a value
of the wrong type or outside the limits written on its field fails here with one line naming
the key (e.g. `train.epochs`), so nothing below the stages ever sees the raw dictionary.

The values live in params.yaml alone: the classes have no defaults (a key missing from the
file is an error), except the optional keys of a dataset or a model (checksums, CUHK03
variant, ImageNet weights, epoch override, EfficientNet variant), whose defaults are what
params.yaml spells out (tests/test_params.py checks that they agree).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from reid.errors import InputError

BACKBONES: tuple[str, ...] = ("resnet50", "resnet50_ibn_a", "effnetv2")
# On-disk formats of `data.<name>.format`; a dataset named after one has that format by default.
# market1501: any Market layout (Market-1501, DukeMTMC-reID, CUHK03-NP); cuhk03: the release
# .mat + new-protocol files, or CUHK03-NP; msmt17: MSMT17_V1 / MSMT17_V2 with their list files;
# csv: a `path,pid,camid,split` file.
FORMATS = ("market1501", "cuhk03", "msmt17", "csv")
PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ParamsError(InputError):
    """A params file that does not match the expected schema."""


# Checks written on a field as `Annotated[type, check]`: each raises ValueError("must be ...").
def limits(low: float, high: float | None = None, *, low_open: bool = False
           ) -> Callable[[float], None]:
    """The range of a number: [low, high], or (low, high] with `low_open`."""
    bound = (f"in {'(' if low_open else '['}{low}, {high}]" if high is not None
             else f"{'>' if low_open else '>='} {low}")

    def check(value: float) -> None:
        if value < low or (low_open and value == low) or (high is not None and value > high):
            raise ValueError(f"must be {bound}")

    return check


def plain_name(name: str) -> None:
    """A dataset name becomes a folder name (data/raw/<name>): no separator, no `..`."""
    if not PLAIN_NAME.fullmatch(name):
        raise ValueError("must be a plain name (letters, digits, _ and -)")


def min_max(pair: list[int]) -> None:
    if len(pair) != 2 or pair[0] > pair[1]:
        raise ValueError("must be [min, max] with min <= max")


def grid_values(values: list[float]) -> None:
    """One axis of a small search grid: each value once, at least one, at most ten."""
    if not 1 <= len(values) <= 10 or len(set(values)) != len(values):
        raise ValueError("must list 1 to 10 different values")


Count = Annotated[int, limits(1)]
NonNegative = Annotated[int, limits(0)]
Fraction = Annotated[float, limits(0, 1)]
Positive = Annotated[float, limits(0, low_open=True)]
DatasetName = Annotated[str, plain_name]
MinMax = Annotated[list[Count], min_max]


# The size of the built-in data of each format (`data.<name>.generated`, for `source: generated`)
@dataclass(frozen=True)
class GeneratedMarketParams:
    num_train_ids: Count
    num_test_ids: Count
    num_distractors: NonNegative
    num_junk: NonNegative
    cameras: Annotated[int, limits(2, 9)]  # one digit in Market names
    images_per_camera: MinMax
    seed: NonNegative


@dataclass(frozen=True)
class GeneratedCuhk03Params:
    num_pairs: Count
    ids_per_pair: Count
    num_test_ids: Count
    images_per_view: Annotated[list[Annotated[int, limits(1, 5)]], min_max]
    seed: NonNegative


@dataclass(frozen=True)
class GeneratedMsmt17Params:
    version: Literal["V1", "V2"]
    num_train_ids: Count
    num_test_ids: Count
    cameras: Annotated[int, limits(2, 15)]  # MSMT17 has 15
    images_per_camera: MinMax
    seed: NonNegative


GENERATED: dict[str, type] = {  # format -> the schema of its built-in data
    "market1501": GeneratedMarketParams,
    "cuhk03": GeneratedCuhk03Params,
    "msmt17": GeneratedMsmt17Params,
}


@dataclass(frozen=True)
class DatasetParams:
    """A dataset: its on-disk `format` (see FORMATS; in params.yaml, the dataset's name by
    default when that is a format), where it comes from (`generated`, a local archive, folder
    or CSV file, or an http(s) URL) and, for `generated`, the size of the built-in data."""

    format: Literal["market1501", "cuhk03", "msmt17", "csv"]
    source: str
    sha256: str | None = None
    md5: str | None = None
    variant: Literal["detected", "labeled"] = "detected"  # CUHK03 only
    generated: GeneratedMarketParams | GeneratedCuhk03Params | GeneratedMsmt17Params | None = None


@dataclass(frozen=True)
class InputParams:
    height: Count
    width: Count
    flip_p: Fraction
    padding: NonNegative
    erasing_p: Fraction


@dataclass(frozen=True)
class TrainParams:
    seed: NonNegative
    epochs: Count
    batch_size: Annotated[int, limits(2)]
    num_instances: Count
    lr: Positive
    weight_decay: Annotated[float, limits(0)]
    warmup_epochs: NonNegative
    warmup_factor: Annotated[float, limits(0, 1, low_open=True)]
    milestones: list[Count]
    gamma: Annotated[float, limits(0, 1, low_open=True)]
    label_smoothing: Fraction
    margin: Annotated[float, limits(0)]
    center_weight: Annotated[float, limits(0)]
    center_lr: Positive
    amp: bool
    device: str
    num_workers: NonNegative
    pin_memory: bool
    # auto: decode once and augment on the GPU under CUDA, DataLoader workers on the CPU
    input_pipeline: Literal["auto", "device", "loader"]
    channels_last: bool  # CUDA only
    nproc: Count  # processes (GPUs) per train stage: > 1 runs it under torchrun with DDP
    sync_bn: bool  # nproc > 1 on CUDA: BatchNorm statistics over all processes
    compile: bool  # torch.compile the model (pays off on long GPU runs)
    checkpoint_period: NonNegative  # write the resume checkpoint every N epochs (0: never)


@dataclass(frozen=True)
class ModelParams:
    pretrained: str | None = None
    epochs: Count | None = None  # overrides train.epochs for this backbone
    variant: str = "tf_efficientnetv2_s"  # effnetv2 only: the timm model name


@dataclass(frozen=True)
class EvalParams:
    batch_size: Count
    flip: bool
    normalize: bool
    metric: Literal["euclidean", "cosine"]
    max_rank: Annotated[int, limits(10)]  # the tables report rank-10
    untrained_baseline: bool  # also score the randomly initialised network
    bootstrap_resamples: Annotated[int, limits(1000)]  # 95% intervals of mAP / rank-1
    bootstrap_seed: NonNegative
    period: NonNegative  # evaluate during training every N epochs and at the last (0: off)
    period_flip: bool  # flip-average then too (twice the cost of each of those evaluations)
    val_ids: NonNegative  # training ids moved into a validation split scored during training
    select: Literal["last", "best_val"]  # the weights a model file keeps


@dataclass(frozen=True)
class RerankGridParams:
    """The values tried for each re-ranking parameter (`rerank.select: validation`)."""

    k1: Annotated[list[Count], grid_values]
    k2: Annotated[list[Count], grid_values]
    lambda_value: Annotated[list[Fraction], grid_values]


@dataclass(frozen=True)
class RerankParams:
    k1: Count
    k2: Count
    lambda_value: Fraction
    # fixed: k1, k2, lambda_value above; validation: per backbone, the point of `grid` with the
    # best mAP on the eval.val_ids validation split
    select: Literal["fixed", "validation"]
    grid: RerankGridParams


@dataclass(frozen=True)
class ReportParams:
    num_queries: NonNegative
    top_k: Count
    rerank: bool


@dataclass(frozen=True)
class TrackingParams:
    enabled: bool
    experiment: str
    log_models: bool


@dataclass(frozen=True)
class Params:
    backbone: str
    datasets: list[DatasetName]
    data: dict[DatasetName, DatasetParams]
    models: dict[str, ModelParams]
    input: InputParams
    train: TrainParams
    eval: EvalParams
    rerank: RerankParams
    report: ReportParams
    tracking: TrackingParams

    def epochs_for(self, backbone: str) -> int:
        override = self.models[backbone].epochs
        return self.train.epochs if override is None else override


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, recursing into lists, dicts and dataclasses."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *checks = typing.get_args(tp)
        value = _convert(value, base, key)
        for check in checks:
            try:
                check(value)
            except ValueError as err:
                raise ParamsError(f"{key} {err}, got {value!r}") from None
        return value
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
        key_tp, val_tp = typing.get_args(tp)
        return {_convert(k, key_tp, f"{key} key"): _convert(v, val_tp, f"{key}.{k}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads `3.5e-4` as a string
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool):
        raise ParamsError(f"{key}: expected int, got {value!r}")
    if tp is str and isinstance(value, int | float) and not isinstance(value, bool):
        raise ParamsError(f"{key}: expected a string, got the number {value!r} (YAML reads an "
                          f"unquoted all-digit value as a number: quote it, e.g. '0123...')")
    if not isinstance(value, tp):
        raise ParamsError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: Any, prefix: str) -> Any:
    """Build the dataclass `cls` from a mapping, naming `prefix.key` in every error."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{prefix or 'params'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
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


def _typed_datasets(raw: Any) -> Any:
    """`raw` with each dataset's format filled in (a dataset named after a format has that
    format unless it says otherwise) and its `generated` section read in that format's schema."""
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        return raw  # `from_dict` names what is wrong
    return {**raw, "data": {name: _typed_dataset(name, entry) for name, entry in data.items()}}


def _typed_dataset(name: str, entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry  # `from_dict` names what is wrong
    if entry.get("format") is None:
        if name not in FORMATS:
            raise ParamsError(f"data.{name}.format is missing: {name!r} is not a format's "
                              f"name, so say which format it is ({' | '.join(FORMATS)})")
        entry = {**entry, "format": name}
    fmt, generated = entry["format"], entry.get("generated")
    if generated is None or not isinstance(fmt, str) or fmt not in FORMATS:
        return entry  # nothing to read, or a wrong format that `from_dict` names
    if fmt not in GENERATED:
        raise ParamsError(f"data.{name}.generated must be absent: no built-in generated data "
                          f"in the {fmt} format")
    return {**entry, "generated": from_dict(GENERATED[fmt], generated, f"data.{name}.generated")}


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a params dictionary into `Params`, checking names across sections."""
    params = from_dict(Params, _typed_datasets(raw), "")
    if params.backbone not in BACKBONES:
        raise ParamsError(f"backbone: unknown {params.backbone!r}; choose one of {BACKBONES}")
    for name in params.datasets:
        if name not in params.data:
            raise ParamsError(f"datasets lists {name!r} but data.{name} is missing (it needs "
                              f"at least `format` ({' | '.join(FORMATS)}) and `source`)")
    for name, entry in params.data.items():
        _check_generated_source(name, entry)
    for name in params.models:
        if name not in BACKBONES:
            raise ParamsError(f"models.{name}: unknown backbone; choose from {BACKBONES}")
    for name in BACKBONES:
        if name not in params.models:
            raise ParamsError(f"missing key models.{name}")
    ev = params.eval
    if ev.select == "best_val" and not (ev.val_ids and ev.period):
        raise ParamsError("eval.select: best_val picks the epoch by validation mAP, so it needs "
                          f"eval.val_ids > 0 and eval.period > 0 (got {ev.val_ids} and "
                          f"{ev.period}); selecting on the test split would inflate the result")
    if params.rerank.select == "validation" and not ev.val_ids:
        raise ParamsError("rerank.select: validation chooses k1, k2 and lambda_value on the "
                          "validation split, so it needs eval.val_ids > 0 (got 0); choosing "
                          "them on the test split would inflate the result")
    t = params.train
    if t.batch_size % t.num_instances or t.batch_size // t.num_instances < 2:
        raise ParamsError(
            f"train.batch_size ({t.batch_size}) must be a multiple of train.num_instances "
            f"({t.num_instances}) with at least 2 identities per batch (the triplet loss "
            f"needs negatives)"
        )
    return params


def _check_generated_source(name: str, entry: DatasetParams) -> None:
    """`source: generated` needs a format with built-in data, and the size of that data."""
    if entry.source != "generated":
        return
    if entry.format not in GENERATED:
        raise ParamsError(f"data.{name}.source: no built-in generated data in the "
                          f"{entry.format} format; give the path of your {entry.format} file "
                          f"or folder")
    if entry.generated is None:
        raise ParamsError(f"missing key data.{name}.generated (the size of the built-in "
                          f"{entry.format} data, as in params.yaml)")


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
