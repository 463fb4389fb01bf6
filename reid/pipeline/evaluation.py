"""The `evaluate` and `rerank` stages: metrics, tables and pictures from extracted features.

No model is built here: these stages read `features/<ds>/` only, so they do not import
the models or the training stack.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reid.io import atomic_path, write_json
from reid.metrics import evaluate_ranking, k_reciprocal_rerank
from reid.metrics.distance import pairwise_distance
from reid.params import BACKBONES, Params
from reid.paths import (
    cmc_plot_dir,
    features_path,
    metrics_path,
    results_dir,
    split_dir,
)
from reid.report.plots import plot_cmc
from reid.report.ranked import draw_ranked_list, ranked_gallery
from reid.report.tables import model_label, results_table, scores, write_results
from reid.tracking import Tracker

log = logging.getLogger(__name__)


def _load_features(backbone: str, dataset: str) -> dict[str, np.ndarray]:
    path = features_path(backbone, dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path}: features not found (run extract_features first)")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _rank(distmat: np.ndarray, f: dict[str, np.ndarray], max_rank: int) -> dict[str, Any]:
    return evaluate_ranking(
        distmat, f["query_pids"], f["gallery_pids"], f["query_camids"], f["gallery_camids"],
        max_rank=max_rank,
    )


def _protocol(dataset: str, feats: dict[str, np.ndarray], result: dict[str, Any]) -> dict:
    summary = json.loads((split_dir(dataset) / "summary.json").read_text())
    return {
        "num_query": int(len(feats["query_pids"])),
        "num_gallery": int(len(feats["gallery_pids"])),
        "num_valid_queries": int(result["num_valid_queries"]),
        "num_skipped_queries": int(result["num_skipped_queries"]),
        "summary": summary,
    }


def _tracked(params: Params, stage: str, dataset: str) -> Tracker:
    return Tracker(
        params.tracking.enabled,
        params.tracking.experiment,
        f"{stage}-{dataset}",
        params=params,
        run_params={"run.dataset": dataset},
        tags={"stage": stage, "dataset": dataset},
    )


def evaluate(params: Params, dataset: str) -> dict[str, Any]:
    """mAP / CMC / mINP of every backbone -> `metrics/<ds>/evaluate.json` and CMC plots."""
    ev = params.eval
    metrics: dict[str, Any] = {}
    cmc_curves: dict[str, np.ndarray] = {}
    protocol: dict[str, Any] = {}
    for backbone in BACKBONES:
        f = _load_features(backbone, dataset)
        result = _rank(pairwise_distance(f["query"], f["gallery"], ev.metric), f, ev.max_rank)
        metrics[backbone] = scores(result)
        cmc_curves[backbone] = result["cmc"]
        if "untrained_query" in f:
            base = _rank(
                pairwise_distance(f["untrained_query"], f["untrained_gallery"], ev.metric),
                f, ev.max_rank,
            )
            metrics[backbone]["untrained"] = scores(base)
        protocol = _protocol(dataset, f, result)
    output = {
        "headline": {k: metrics[params.backbone][k] for k in ("mAP", "rank1", "rank5", "rank10")},
        **metrics,
        "num_valid_queries": protocol["num_valid_queries"],
        "num_gallery": protocol["num_gallery"],
    }
    write_json(metrics_path(dataset, "evaluate"), output)
    plots = cmc_plot_dir(dataset)
    cmc_table = pd.DataFrame({"rank": np.arange(1, ev.max_rank + 1), **cmc_curves})
    with atomic_path(plots / "cmc.csv") as tmp:
        cmc_table.to_csv(tmp, index=False)
    plot_cmc(cmc_curves, plots / "cmc.png", title=f"CMC on {dataset}")
    with _tracked(params, "evaluate", dataset) as tracker:
        tracker.log_metrics(
            {f"{b}.{k}": v for b in BACKBONES for k, v in metrics[b].items()
             if k != "untrained"}
        )
        tracker.log_artifact(plots / "cmc.png", "plots")
        tracker.log_artifact(metrics_path(dataset, "evaluate"))
    return output


def rerank(params: Params, dataset: str) -> dict[str, Any]:
    """k-reciprocal re-ranking of every backbone, the results table and ranked-list pictures."""
    ev, rr = params.eval, params.rerank
    plain_file = metrics_path(dataset, "evaluate")
    if not plain_file.exists():
        raise FileNotFoundError(f"{plain_file}: not found (run evaluate first)")
    plain = json.loads(plain_file.read_text())
    metrics: dict[str, Any] = {}
    distances: dict[str, dict[str, np.ndarray]] = {}
    rows, untrained_rows = [], []
    protocol: dict[str, Any] = {}
    for backbone in BACKBONES:
        f = _load_features(backbone, dataset)
        reranked = k_reciprocal_rerank(
            f["query"], f["gallery"], k1=rr.k1, k2=rr.k2, lambda_value=rr.lambda_value
        )
        result = _rank(reranked, f, ev.max_rank)
        metrics[backbone] = scores(result)
        protocol = _protocol(dataset, f, result)
        if backbone == params.backbone:
            distances = {
                "features": f,
                "plain": pairwise_distance(f["query"], f["gallery"], ev.metric),
                "reranked": reranked,
            }
        pretrained = params.models[backbone].pretrained is not None
        size = "x".join(map(str, (params.input.height, params.input.width)))
        rows.append({"model": model_label(backbone, pretrained), "image_size": size,
                     **{k: v for k, v in plain[backbone].items() if k != "untrained"}})
        rows.append({"model": model_label(backbone, pretrained, " + re-ranking"),
                     "image_size": size, **metrics[backbone]})
        if "untrained" in plain[backbone]:
            untrained_rows.append({
                "model": f"{model_label(backbone, pretrained)}, before training",
                "image_size": size,
                **plain[backbone]["untrained"],
            })
    output = {
        "headline": {k: metrics[params.backbone][k] for k in ("mAP", "rank1", "rank5", "rank10")},
        **metrics,
    }
    write_json(metrics_path(dataset, "rerank"), output)

    summary = protocol["summary"]
    table = results_table(rows + untrained_rows)
    notes = [
        f"Protocol: {summary['protocol']}; source: {summary['source']}.",
        f"Query {protocol['num_query']} images ({protocol['num_valid_queries']} valid, "
        f"{protocol['num_skipped_queries']} skipped without a valid match), gallery "
        f"{protocol['num_gallery']} images; training {summary['num_train_images']} images of "
        f"{summary['num_train_ids']} ids.",
        f"Distance: {ev.metric} on {'L2-normalised ' if ev.normalize else ''}BNNeck features"
        f"{' averaged with the flipped image' if ev.flip else ''}; same-id same-camera gallery "
        f"images ignored. Re-ranking: k-reciprocal, k1={rr.k1}, k2={rr.k2}, "
        f"lambda={rr.lambda_value}.",
        f"Headline backbone: {params.backbone}. mINP: Ye et al., TPAMI 2021.",
    ]
    out = results_dir(dataset)
    write_results(table, out / "results.md", out / "results.csv",
                  title=f"{dataset} results", notes=notes)
    pictures = draw_queries(params, dataset, distances, out / "ranked")
    with _tracked(params, "rerank", dataset) as tracker:
        tracker.log_metrics(
            {f"{b}.rerank.{k}": v for b in BACKBONES for k, v in metrics[b].items()}
        )
        tracker.log_artifact(out / "results.md")
        tracker.log_artifact(out / "results.csv")
        for picture in pictures:
            tracker.log_artifact(picture, "ranked")
    return output


def draw_queries(
    params: Params, dataset: str, distances: dict[str, Any], folder: Path
) -> list[Path]:
    """Ranked-list pictures of `report.num_queries` queries spread over the query set."""
    f = distances["features"]
    key = "reranked" if params.report.rerank else "plain"
    dist = distances[key]
    q_pids, g_pids = f["query_pids"], f["gallery_pids"]
    picks = np.unique(np.linspace(0, len(q_pids) - 1, params.report.num_queries).astype(int))
    written = []
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for q in picks:
            order, correct = ranked_gallery(
                dist[q], q_pids[q], f["query_camids"][q], g_pids, f["gallery_camids"],
                params.report.top_k,
            )
            name = f"query{q:05d}_{params.backbone}.png"
            draw_ranked_list(
                f["query_paths"][q], f["gallery_paths"][order], correct, tmp / name,
                title=f"{dataset} {params.backbone} ({key}) query {q}, pid {q_pids[q]}",
            )
            written.append(folder / name)
    return written
