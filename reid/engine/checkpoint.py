"""Checkpoints: one dict of state dicts plus epoch and RNG states, written atomically.

A checkpoint holds tensors and plain data only (the RNG states too: numpy's as a list), so it
is read like a model file, with `torch.load(weights_only=True)`: nothing in it runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reid.errors import InputError
from reid.io import atomic_path
from reid.models.model_file import load_plain

log = logging.getLogger(__name__)


def fingerprint(obj: Any) -> str:
    """A short stable hash of JSON-able settings: a checkpoint resumes only a run with the same."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """This process's random streams as tensors and plain data (Python, numpy, torch, CUDA)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` with torch.save under a temporary name, then rename onto `path`."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at `path` if it belongs to a run with the same settings, else None.

    A checkpoint from other settings is never resumed silently (the reproduced project's
    defect): it is reported and ignored, and the run starts fresh.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_plain(path, "checkpoint")
    except InputError as err:  # an unreadable or refused checkpoint is just not resumed
        log.warning("%s; starting fresh", err)
        return None
    if not isinstance(state, dict):
        log.warning("%s: not a checkpoint of reid-pipeline; starting fresh", path)
        return None
    if state.get("fingerprint") != expected_fingerprint:
        log.warning("%s: checkpoint from different settings; starting fresh", path)
        return None
    return state
