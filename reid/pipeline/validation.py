"""Evaluation during training: the split it scores and the scorer the engine calls.

Without `eval.val_ids` the train stage scores the test split, as every peer toolbox does. With
`eval.val_ids: K` it holds K training identities out of training as a validation split and
scores that instead, so an epoch can be chosen (`eval.select: best_val`) without ever reading
the test split before the final evaluation: choosing an epoch on test mAP inflates it.
The split itself is `reid.data.manifest.validation_split`, which extract_features also reads
(to embed it for choosing re-ranking's parameters: `rerank.select: validation`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from reid.data.batches import decode_images, fits_in_host_memory, keeps_on_device
from reid.data.manifest import TEST_SPLITS, query_gallery_labels
from reid.data.manifest import validation_split as validation_split  # the train stage's
from reid.engine.extract import extract_decoded, extract_features
from reid.params import Params
from reid.pipeline.features import query_gallery_loaders
from reid.pipeline.scoring import score, scores

log = logging.getLogger(__name__)


def build_evaluator(params: Params, rows: pd.DataFrame, input_size: tuple[int, int],
                    device: torch.device) -> Callable[[nn.Module], dict[str, float]]:
    """model -> {"mAP", "rank1", "rank5", "rank10", "mINP"} in percent (not rounded) on
    `rows` (a query and a gallery split), under the evaluate stage's protocol.

    The embedding is `extract_features`' on the same pixels (on the CPU the same numbers; on
    CUDA up to autocast rounding), mirror-averaged only with `eval.period_flip` (twice the
    cost; the final evaluation follows `eval.flip`). The ranking follows `device`.
    """
    labels = query_gallery_labels(rows)
    extract_split = _split_extractor(params, rows, input_size, device)

    def evaluator(model: nn.Module) -> dict[str, float]:
        feats = {s: extract_split(model, s) for s in TEST_SPLITS}
        return scores(score({**feats, **labels}, params.eval, device=device), digits=None)

    return evaluator


def _split_extractor(params: Params, rows: pd.DataFrame, input_size: tuple[int, int],
                    device: torch.device) -> Callable[[nn.Module, str], np.ndarray]:
    """(model, "query" | "gallery") -> (N, D) float32 embeddings of that split.

    The images are decoded once, here, when they fit (on the GPU within a quarter of its free
    memory, else within half of the host's available memory), so that each evaluation only
    runs the network; otherwise DataLoader workers decode them at every evaluation.
    """
    ev, t = params.eval, params.train
    paths = {s: rows.loc[rows["split"] == s, "path"].tolist() for s in TEST_SPLITS}
    nbytes = sum(len(p) for p in paths.values()) * 3 * input_size[0] * input_size[1]  # uint8
    on_device = device.type == "cuda" and keeps_on_device(nbytes, device)
    if not (on_device or fits_in_host_memory(nbytes)):
        log.warning("evaluation during training: the %d images (%.1f GB decoded) do not fit in "
                    "memory; they are decoded again at every evaluation",
                    sum(map(len, paths.values())), nbytes / 1e9)
        loaders = query_gallery_loaders(params, rows, input_size, device)
        return lambda model, s: extract_features(
            model, loaders[s], device=device, flip=ev.period_flip, normalize=ev.normalize,
            amp=t.amp, desc=f"evaluate {s}")
    images = {s: decode_images(paths[s], *input_size, num_workers=t.num_workers)
              for s in TEST_SPLITS}
    if on_device:
        images = {s: x.to(device) for s, x in images.items()}
    log.info("evaluation during training: %d query, %d gallery images decoded once (%.0f MB "
             "on %s)", len(paths["query"]), len(paths["gallery"]), nbytes / 1e6,
             images["query"].device)
    channels_last = t.channels_last and device.type == "cuda"
    return lambda model, s: extract_decoded(
        model, images[s], device=device, batch_size=ev.batch_size, flip=ev.period_flip,
        normalize=ev.normalize, amp=t.amp, channels_last=channels_last).cpu().numpy()
