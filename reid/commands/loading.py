"""A model for `reid embed` / `reid rank`: a train stage's `.pt` or an `.onnx` of `reid export`.

Here, above both `reid.api` and `reid.export`, so that neither imports the other both ways.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reid.errors import InputError


def load_any_model(path: str | Path, *, device: str = "auto") -> Any:
    """`reid.api.load_model` for a `.pt`, `reid.export.load_onnx` for an `.onnx` (ONNX Runtime
    on the CPU): both embed the same inputs to the same rows."""
    if Path(path).suffix.lower() != ".onnx":
        from reid.api import load_model

        return load_model(path, device=device)
    if device not in ("auto", "cpu"):
        raise InputError(f"{path}: an ONNX model runs on the CPU here (ONNX Runtime's CPU "
                         f"build), not on device {device}")
    from reid.export import load_onnx

    return load_onnx(path)
