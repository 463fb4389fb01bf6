"""The model file `models/<backbone>/<dataset>.pt`: its one writer, reader, builder and describer.

A model file is a `torch.save` of one dict of tensors and plain data (numbers, strings, lists,
tuples, dicts, None): the weights and everything that rebuilds the network without params.yaml
(backbone, EfficientNet variant, classes, input size), the recipe, the per-epoch losses and the
code's commit. It is read with `torch.load(weights_only=True)`, PyTorch's restricted unpickler:
a file that carries any other object (a pickled class or function, which a plain `torch.load`
would run) is refused with one line naming the file and the object, and nothing in it runs.
Model files travel (`dvc pull`, a lab's shared folder, a model zoo), so they are data, never code.

The bytes depend only on what trained the model (weights, params, data, code revision): the
history keeps losses, accuracy and scores but not the epoch times and speeds (those live in the
curves and MLflow), and the archive is serialised in memory, so its inner folder name is not the
temporary file's random name. The same training run twice writes the same file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reid.errors import InputError
from reid.io import atomic_path
from reid.models.backbones import BACKBONES, build_model
from reid.models.head import ReidModel

REQUIRED_KEYS = ("backbone", "num_classes", "input_size", "state_dict")
# Per-epoch statistics that measure the machine, not the model: kept out of the file.
TIMING_KEYS = ("epoch_seconds", "images_per_s", "eval_seconds")
RETRAIN_HINT = "re-run its train stage (dvc repro train_<backbone>@<dataset>) to write a new one"


@dataclass(frozen=True)
class ModelFile:
    """What a model file holds. `state_dict` rebuilds the network with `build_network`."""

    backbone: str
    num_classes: int
    input_size: tuple[int, int]
    state_dict: dict[str, torch.Tensor]
    dataset: str | None = None
    feature_dim: int | None = None
    effnet_variant: str | None = None
    pretrained: str | None = None  # the ImageNet weights the training started from, if any
    train_config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    selected: dict[str, Any] | None = None  # which epoch's weights (eval.select)
    git_commit: str | None = None
    git_dirty: bool | None = None

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def init(self) -> str:
        """How the weights started: the one rule for every table and `reid info`."""
        return "ImageNet" if self.pretrained is not None else "from scratch"


def write_model_file(path: str | Path, model_file: ModelFile) -> None:
    """Write `model_file` to `path` atomically, its history without the timing keys."""
    history = [{k: v for k, v in epoch.items() if k not in TIMING_KEYS}
               for epoch in model_file.history]
    saved = {
        "backbone": model_file.backbone,
        "dataset": model_file.dataset,
        "num_classes": model_file.num_classes,
        "feature_dim": model_file.feature_dim,
        "effnet_variant": model_file.effnet_variant,
        "input_size": list(model_file.input_size),
        "pretrained": model_file.pretrained,
        "train_config": model_file.train_config,
        "state_dict": {k: v.detach().cpu() for k, v in model_file.state_dict.items()},
        "history": history,
        "selected": model_file.selected,
        "git_commit": model_file.git_commit,
        "git_dirty": model_file.git_dirty,
    }
    buffer = io.BytesIO()  # the archive's inner folder is "archive", not the temporary name
    torch.save(saved, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_plain(path: str | Path, what: str) -> Any:
    """`torch.load(path, weights_only=True)`: tensors and plain data only, nothing runs.

    A file holding any other object raises `InputError` naming the file and the object(s);
    a file that is not a torch file at all raises `InputError` too.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every way a foreign file fails is one message
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise InputError(
                f"{path}: refused: the {what} holds {', '.join(unsafe)}, which is not a tensor "
                "or plain data (a pickled object that loading would run); nothing in it was "
                "run") from None
        raise InputError(f"{path}: not a {what} of reid-pipeline ({_first_line(err)})") from err


def read_model_file(path: str | Path) -> ModelFile:
    """The model file at `path`, checked; a one-line `InputError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    saved = load_plain(path, "model file")
    missing = [k for k in REQUIRED_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise InputError(f"{path}: not a model file of reid-pipeline (missing "
                         f"{', '.join(missing)}; written by the train stage as "
                         "models/<backbone>/<dataset>.pt)")
    if saved["backbone"] not in BACKBONES:
        raise InputError(f"{path}: unknown backbone {saved['backbone']!r} (known: "
                         f"{', '.join(BACKBONES)})")
    known = {f for f in ModelFile.__dataclass_fields__}
    try:
        return ModelFile(**{k: v for k, v in saved.items() if k in known}
                         | {"input_size": tuple(saved["input_size"])})
    except (TypeError, ValueError) as err:
        raise InputError(f"{path}: malformed model file ({err}); {RETRAIN_HINT}") from err


def build_network(model_file: ModelFile) -> ReidModel:
    """The trained network, rebuilt from the file alone (never from today's params)."""
    variant = {"effnet_variant": model_file.effnet_variant} if model_file.effnet_variant else {}
    model = build_model(model_file.backbone, model_file.num_classes, **variant)
    model.load_state_dict(model_file.state_dict)
    return model


def describe(model_file: ModelFile) -> dict[str, Any]:
    """What `reid info` prints: what the model is and how it was trained."""
    last = model_file.history[-1] if model_file.history else {}
    return {
        "backbone": model_file.backbone,
        "dataset": model_file.dataset,
        "input_size": list(model_file.input_size),
        "feature_dim": model_file.feature_dim,
        "num_classes": model_file.num_classes,
        "init": model_file.init,
        "epochs": model_file.epochs,
        "final_loss": round(float(last["loss"]), 6) if "loss" in last else None,
        "git_commit": model_file.git_commit,
        "git_dirty": model_file.git_dirty,
        "train_config": model_file.train_config,
    }


def results_info(model_file: ModelFile, sha256: str) -> dict[str, Any]:
    """What the results tables say of a model: epochs, recipe, input, init; and the file's
    digest, which ties the test metrics to the file and its MLflow run."""
    cfg = model_file.train_config
    return {
        "model_sha256": sha256,
        "epochs": model_file.epochs,
        "input_size": list(model_file.input_size),
        "pretrained": model_file.pretrained is not None,
        "selected": model_file.selected,
        **{k: cfg[k] for k in ("lr", "batch_size", "num_instances", "warmup_epochs",
                               "milestones", "gamma") if k in cfg},
    }


def _unsafe_globals(path: Path) -> list[str]:
    """The classes and functions a torch file's pickle names beyond the allowed ones (read,
    not run); empty when the file cannot be read as a torch zip file at all."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - not a zip torch file: the caller says so
        return []


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
