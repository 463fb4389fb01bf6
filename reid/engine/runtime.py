"""Where and how a run computes: the device, the autocast dtype and the seeds.

Decided once per stage and passed down; shared by training and feature extraction, so that
extraction does not import the training loop.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from reid.errors import InputError


def select_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"train.device is {name!r} but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


AMP_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_dtype(device: torch.device, amp: bool, dtype: str = "auto") -> torch.dtype | None:
    """The autocast dtype for this device: bf16 on CUDA where native, else fp16; None on CPU.

    CPU autocast is slower than fp32 for these convolutions, so the CPU always trains in fp32.
    Pre-Ampere GPUs (V100, T4) only emulate bf16, slowly, so they get fp16 and a GradScaler.
    `dtype` ("bfloat16" or "float16") forces one on CUDA, e.g. to run the fp16 + GradScaler
    path on a GPU with native bf16.
    """
    if dtype != "auto" and dtype not in AMP_DTYPES:
        raise ValueError(f"unknown autocast dtype {dtype!r}; choose auto, {', '.join(AMP_DTYPES)}")
    if not amp or device.type != "cuda":
        return None
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if dtype == "auto":
        return torch.bfloat16 if native_bf16 else torch.float16
    if dtype == "bfloat16" and not native_bf16:
        raise ValueError("autocast dtype bfloat16 requested, but this GPU has no native bf16")
    return AMP_DTYPES[dtype]
