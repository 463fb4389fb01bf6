"""Typed, validated view of `params.yaml`.

Each stage loads the file once into frozen dataclasses; an unknown key, a missing key, a
value of the wrong type or out of its range fails here with a message naming the key (e.g.
`train.epochs`), so nothing below the stages ever sees the raw dictionary.

The values live in params.yaml alone: the section classes have no defaults (one source of
truth; a key missing from the file is an error). Only optional per-dataset and per-model keys
(checksums, CUHK03 variant, ImageNet weights, epoch overrides) and the generated data's size
have defaults, which are what params.yaml spells out.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reid.errors import InputError

BACKBONES = ("resnet50", "resnet50_ibn_a", "effnetv2")
# On-disk formats of `data.<name>.format`; a dataset named after one has that format by default.
# market1501: any Market layout (Market-1501, DukeMTMC-reID, CUHK03-NP); cuhk03: the release
# .mat + new-protocol files, or CUHK03-NP; msmt17: MSMT17_V1 / MSMT17_V2 with their list files;
# csv: a `path,pid,camid,split` file.
FORMATS = ("market1501", "cuhk03", "msmt17", "csv")
GENERATED_FORMATS = ("market1501", "cuhk03", "msmt17")  # `source: generated` is built in


class ParamsError(InputError):
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
class GeneratedMsmt17Params:
    version: Literal["V1", "V2"] = "V1"
    num_train_ids: int = 8
    num_test_ids: int = 8
    cameras: int = 15
    images_per_camera: list[int] = field(default_factory=lambda: [1, 2])
    seed: int = 2


@dataclass(frozen=True)
class DatasetParams:
    """A dataset: its on-disk `format` (see FORMATS; defaults to the dataset's name when that is
    a format) and where it comes from: `generated`, a local archive, folder or CSV file, or an
    http(s) URL. `parse_params` fills `format` in, so later code never sees None."""

    format: Literal["market1501", "cuhk03", "msmt17", "csv"] | None = None
    source: str = "generated"
    sha256: str | None = None
    md5: str | None = None
    variant: Literal["detected", "labeled"] = "detected"  # CUHK03 only
    generated: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InputParams:
    height: int
    width: int
    flip_p: float
    padding: int
    erasing_p: float


@dataclass(frozen=True)
class TrainParams:
    seed: int
    epochs: int
    batch_size: int
    num_instances: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    warmup_factor: float
    milestones: list[int]
    gamma: float
    label_smoothing: float
    margin: float
    center_weight: float
    center_lr: float
    amp: bool
    device: str
    num_workers: int
    pin_memory: bool
    # auto: decode once and augment on the GPU under CUDA, DataLoader workers on the CPU
    input_pipeline: Literal["auto", "device", "loader"]
    channels_last: bool  # CUDA only
    nproc: int  # processes (GPUs) per train stage: > 1 runs it under torchrun with DDP
    sync_bn: bool  # nproc > 1 on CUDA: BatchNorm statistics over all processes
    compile: bool  # torch.compile the model (pays off on long GPU runs)
    checkpoint_period: int  # write the resume checkpoint every N epochs (0: never)


@dataclass(frozen=True)
class ModelParams:
    pretrained: str | None = None
    epochs: int | None = None  # overrides train.epochs for this backbone
    variant: str = "tf_efficientnetv2_s"  # effnetv2 only: the timm model name


@dataclass(frozen=True)
class EvalParams:
    batch_size: int
    flip: bool
    normalize: bool
    metric: Literal["euclidean", "cosine"]
    max_rank: int
    untrained_baseline: bool  # also score the randomly initialised network
    bootstrap_resamples: int  # 95% intervals of mAP / rank-1 (reid.metrics.bootstrap)
    bootstrap_seed: int
    period: int  # evaluate during training every N epochs and at the last (0: off)
    period_flip: bool  # flip-average then too (twice the cost of each of those evaluations)
    val_ids: int  # training ids moved into a validation split scored during training (0: off)
    select: Literal["last", "best_val"]  # the weights a model file keeps


@dataclass(frozen=True)
class RerankParams:
    k1: int
    k2: int
    lambda_value: float


@dataclass(frozen=True)
class ReportParams:
    num_queries: int
    top_k: int
    rerank: bool


@dataclass(frozen=True)
class TrackingParams:
    enabled: bool
    experiment: str
    log_models: bool


@dataclass(frozen=True)
class Params:
    backbone: str
    datasets: list[str]
    data: dict[str, DatasetParams]
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


# Allowed ranges of the numeric keys: (lowest, highest, whether the lowest is allowed).
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "input.height": (1, None, True),
    "input.width": (1, None, True),
    "input.flip_p": (0, 1, True),
    "input.padding": (0, None, True),
    "input.erasing_p": (0, 1, True),
    "train.seed": (0, None, True),
    "train.epochs": (1, None, True),
    "train.batch_size": (2, None, True),
    "train.num_instances": (1, None, True),
    "train.lr": (0, None, False),
    "train.weight_decay": (0, None, True),
    "train.warmup_epochs": (0, None, True),
    "train.warmup_factor": (0, 1, False),
    "train.milestones[]": (1, None, True),
    "train.gamma": (0, 1, False),
    "train.label_smoothing": (0, 1, True),
    "train.margin": (0, None, True),
    "train.center_weight": (0, None, True),
    "train.center_lr": (0, None, False),
    "train.num_workers": (0, None, True),
    "train.nproc": (1, None, True),
    "train.checkpoint_period": (0, None, True),
    "models.*.epochs": (1, None, True),
    "eval.batch_size": (1, None, True),
    "eval.max_rank": (10, None, True),  # the tables report rank-10
    "eval.bootstrap_resamples": (1000, None, True),
    "eval.bootstrap_seed": (0, None, True),
    "eval.period": (0, None, True),
    "eval.val_ids": (0, None, True),
    "rerank.k1": (1, None, True),
    "rerank.k2": (1, None, True),
    "rerank.lambda_value": (0, 1, True),
    "report.num_queries": (0, None, True),
    "report.top_k": (1, None, True),
}


def _range_values(params: Params, key: str) -> list[tuple[str, Any]]:
    """(name, value) of a RANGES key: `a.b`, `a.*.b` (every entry) or `a.b[]` (every item)."""
    section, rest = key.split(".", 1)
    if rest.startswith("*."):
        field_name = rest[2:]
        return [(f"{section}.{name}.{field_name}", getattr(entry, field_name))
                for name, entry in getattr(params, section).items()]
    if rest.endswith("[]"):
        items = getattr(getattr(params, section), rest[:-2])
        return [(f"{key[:-2]}[{i}]", v) for i, v in enumerate(items)]
    return [(key, getattr(getattr(params, section), rest))]


def _check_ranges(params: Params) -> None:
    for key, (low, high, low_allowed) in RANGES.items():
        for name, value in _range_values(params, key):
            if value is None:
                continue
            too_low = low is not None and (value < low or (value == low and not low_allowed))
            too_high = high is not None and value > high
            if too_low or too_high:
                bound = (f"in {'[' if low_allowed else '('}{low}, {high}]" if high is not None
                         else f"{'>=' if low_allowed else '>'} {low}")
                raise ParamsError(f"{name} must be {bound}, got {value!r}")


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a params dictionary into `Params`, checking names across sections."""
    params = from_dict(Params, raw, "")
    if params.backbone not in BACKBONES:
        raise ParamsError(f"backbone: unknown {params.backbone!r}; choose one of {BACKBONES}")
    for name in params.datasets:
        if name not in params.data:
            raise ParamsError(f"datasets lists {name!r} but data.{name} is missing (it needs "
                              f"at least `format` ({' | '.join(FORMATS)}) and `source`)")
    params = dataclasses.replace(params, data={
        name: _with_format(name, entry) for name, entry in params.data.items()})
    for name in params.models:
        if name not in BACKBONES:
            raise ParamsError(f"models.{name}: unknown backbone; choose from {BACKBONES}")
    for name in BACKBONES:
        if name not in params.models:
            raise ParamsError(f"missing key models.{name}")
    _check_ranges(params)
    ev = params.eval
    if ev.select == "best_val" and not (ev.val_ids and ev.period):
        raise ParamsError("eval.select: best_val picks the epoch by validation mAP, so it needs "
                          f"eval.val_ids > 0 and eval.period > 0 (got {ev.val_ids} and "
                          f"{ev.period}); selecting on the test split would inflate the result")
    t = params.train
    if t.batch_size % t.num_instances or t.batch_size // t.num_instances < 2:
        raise ParamsError(
            f"train.batch_size ({t.batch_size}) must be a multiple of train.num_instances "
            f"({t.num_instances}) with at least 2 identities per batch (the triplet loss "
            f"needs negatives)"
        )
    return params


def _with_format(name: str, entry: DatasetParams) -> DatasetParams:
    """`entry` with its format filled in from the dataset's name, checked against its source."""
    fmt = entry.format or (name if name in FORMATS else None)
    if fmt is None:
        raise ParamsError(f"data.{name}.format is missing: {name!r} is not a format's name, so "
                          f"say which format it is ({' | '.join(FORMATS)})")
    if entry.source == "generated" and fmt not in GENERATED_FORMATS:
        raise ParamsError(f"data.{name}.source: no built-in generated data in the {fmt} format;"
                          f" give the path of your {fmt} file or folder")
    return dataclasses.replace(entry, format=fmt)


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
