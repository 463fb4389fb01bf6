"""The `evaluate` and `rerank` stages: metrics, tables and pictures from extracted features.

No model is built here: these stages read `features/<ds>/` only, so they do not import
the models or the training stack.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reid.io import atomic_path, write_json
from reid.metrics.bootstrap import bootstrap_intervals, per_query_scores
from reid.metrics.distance import pairwise_distance
from reid.metrics.rerank import k_reciprocal_rerank
from reid.params import BACKBONES, EvalParams, Params
from reid.paths import (
    cmc_plot_dir,
    metrics_path,
    per_query_dir,
    results_dir,
    split_dir,
)
from reid.pipeline.scoring import load_features, rank, score, scores
from reid.report.plots import plot_cmc
from reid.report.ranked import draw_ranked_list, ranked_gallery
from reid.report.tables import model_label, results_table, write_results
from reid.tracking import Tracker, model_params, model_run_name

log = logging.getLogger(__name__)


def per_query_table(result: dict[str, Any], f: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per valid query: its index, path (relative to the query folder), pid, camera,
    AP and the 1-based rank of its first true match (what intervals and comparisons resample)."""
    pq = result["per_query"]
    q = pq["query"]
    return pd.DataFrame({
        "query": q,
        "path": np.asarray(_relative_paths(f["query_paths"]))[q],
        "pid": f["query_pids"][q],
        "camid": f["query_camids"][q],
        "ap": pq["ap"],
        "first_match_rank": pq["first_match_rank"],
    })


def _scores_with_intervals(result: dict[str, Any], table: pd.DataFrame, ev: EvalParams) -> dict:
    """The metrics of `scores` plus `ci95`: identity-bootstrap intervals of mAP and rank-1."""
    return {
        **scores(result),
        "ci95": bootstrap_intervals(
            per_query_scores(table["ap"].to_numpy(), table["first_match_rank"].to_numpy()),
            table["pid"].to_numpy(), resamples=ev.bootstrap_resamples, seed=ev.bootstrap_seed,
        ),
    }


def _relative_paths(paths: np.ndarray) -> list[str]:
    """Paths relative to their common folder (the query or gallery folder of the dataset)."""
    root = os.path.commonpath(list(paths)) if len(paths) > 1 else os.path.dirname(paths[0])
    return [os.path.relpath(p, root) for p in paths]


def gallery_record(f: dict[str, np.ndarray], protocol: dict[str, Any]) -> dict[str, Any]:
    """What the per-query results were scored against: paired comparisons need the same."""
    rows = zip(_relative_paths(f["gallery_paths"]), f["gallery_pids"], f["gallery_camids"],
               strict=True)
    digest = hashlib.sha256("\n".join(f"{p},{i},{c}" for p, i, c in rows).encode())
    return {"num_gallery": protocol["num_gallery"], "gallery_sha256": digest.hexdigest(),
            "protocol": protocol["summary"]["protocol"]}


def _write_per_query(tables: dict[str, pd.DataFrame], gallery: dict[str, Any],
                     infos: dict[str, dict[str, Any]], folder: Path) -> None:
    """One CSV per backbone; `gallery.json`, the gallery they were all scored against; and
    `models.json`, the digest of each model file scored (`reid info` matches a file by it)."""
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for backbone, table in tables.items():
            table.to_csv(tmp / f"{backbone}.csv", index=False)
        (tmp / "gallery.json").write_text(json.dumps(gallery, indent=2) + "\n")
        models = {b: info["model_sha256"] for b, info in infos.items()}
        (tmp / "models.json").write_text(json.dumps(models, indent=2) + "\n")


def _protocol(dataset: str, feats: dict[str, np.ndarray], result: dict[str, Any]) -> dict:
    summary = json.loads((split_dir(dataset) / "summary.json").read_text())
    return {
        "num_query": int(len(feats["query_pids"])),
        "num_gallery": int(len(feats["gallery_pids"])),
        "num_valid_queries": int(result["num_valid_queries"]),
        "num_skipped_queries": int(result["num_skipped_queries"]),
        "summary": summary,
    }


def log_test_metrics(
    params: Params, dataset: str, infos: dict[str, dict[str, Any]],
    metrics: dict[str, dict[str, dict[str, Any]]],
    artifacts: dict[str, list[tuple[Path, str | None]]],
) -> None:
    """Each model's test metrics into its MLflow run, under the same keys for every model.

    `metrics` maps a key prefix (`test`, `test.rerank`) to each backbone's scores. The run is
    the train stage's (found by the model file's digest) when the params that bear on this
    model are the same; otherwise a new run of that model (see `reid.tracking`).
    """
    for backbone in BACKBONES:
        values = {}
        for prefix, by_backbone in metrics.items():
            m = by_backbone[backbone]
            values.update({f"{prefix}.{k}": v for k, v in m.items() if k != "ci95"})
            for key, (lo, hi) in m["ci95"].items():
                values.update({f"{prefix}.{key}_ci95_low": lo,
                               f"{prefix}.{key}_ci95_high": hi})
        tracker = Tracker(
            params.tracking.enabled, params.tracking.experiment,
            model_run_name(backbone, dataset), params=params,
            run_params={"run.backbone": backbone, "run.dataset": dataset},
            tags={"backbone": backbone, "dataset": dataset},
            find={"model_sha256": infos[backbone]["model_sha256"]},
            match=lambda flat, b=backbone: model_params(flat, b, dataset),
            parent={"stage": f"train_{backbone}"},
        )
        with tracker:
            tracker.log_metrics(values)
            for path, folder in artifacts.get(backbone, []):
                tracker.log_artifact(path, folder)


def evaluate(params: Params, dataset: str) -> dict[str, Any]:
    """mAP / CMC / mINP of every backbone -> `metrics/<ds>/evaluate.json` and CMC plots.

    Each backbone's per-query results go to `metrics/<ds>/per_query/<backbone>.csv`, and its
    mAP and rank-1 get 95% identity-bootstrap intervals (`ci95`).
    """
    ev = params.eval
    metrics: dict[str, Any] = {}
    cmc_curves: dict[str, np.ndarray] = {}
    tables: dict[str, pd.DataFrame] = {}
    untrained: dict[str, Any] = {}
    protocol: dict[str, Any] = {}
    infos: dict[str, dict[str, Any]] = {}
    for backbone in BACKBONES:
        f = load_features(backbone, dataset)
        infos[backbone] = json.loads(str(f["model_info"]))
        result = score(f, ev)
        tables[backbone] = per_query_table(result, f)
        metrics[backbone] = _scores_with_intervals(result, tables[backbone], ev)
        cmc_curves[backbone] = 100 * result["cmc"]
        if "untrained_query" in f:
            untrained[backbone] = scores(score(f, ev, prefix="untrained_"))
        protocol = _protocol(dataset, f, result)
    output = {
        "headline": _headline(params.backbone, metrics),
        **metrics,
        "num_valid_queries": protocol["num_valid_queries"],
        "num_gallery": protocol["num_gallery"],
    }
    _write_per_query(tables, gallery_record(f, protocol), infos, per_query_dir(dataset, "evaluate"))
    write_json(metrics_path(dataset, "untrained"), untrained)
    write_json(metrics_path(dataset, "evaluate"), output)
    plots = cmc_plot_dir(dataset)
    cmc_table = pd.DataFrame({"rank": np.arange(1, ev.max_rank + 1), **cmc_curves})
    with atomic_path(plots / "cmc.csv") as tmp:
        cmc_table.to_csv(tmp, index=False)
    plot_cmc(cmc_curves, plots / "cmc.png", title=f"CMC on {dataset}")
    log_test_metrics(params, dataset, infos, {"test": metrics}, {
        b: [(plots / "cmc.png", "plots"), (metrics_path(dataset, "evaluate"), None)]
        for b in BACKBONES})
    return output


def _headline(backbone: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The `backbone` model's main metrics, named: across experiments it may be another model."""
    return {"backbone": backbone,
            **{k: metrics[backbone][k] for k in ("mAP", "rank1", "rank5", "rank10")}}


def rerank_features(f: dict[str, np.ndarray], ev: EvalParams) -> tuple[np.ndarray, np.ndarray]:
    """Query and gallery features to re-rank by squared Euclidean distance under `eval.metric`.

    Re-ranking divides each column of the distances by its maximum, so a constant factor
    cancels: on L2-normalised features, 1 - cos = |a - b|^2 / 2 gives exactly the cosine
    re-ranking. Cosine on unnormalised features therefore re-ranks their normalised copies.
    """
    q, g = f["query"], f["gallery"]
    if ev.metric == "cosine" and not ev.normalize:
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return q, g


def rerank(params: Params, dataset: str) -> dict[str, Any]:
    """k-reciprocal re-ranking of every backbone, the results table and ranked-list pictures."""
    ev, rr = params.eval, params.rerank
    plain = _read_json(metrics_path(dataset, "evaluate"))
    untrained = _read_json(metrics_path(dataset, "untrained"))
    metrics: dict[str, Any] = {}
    tables: dict[str, pd.DataFrame] = {}
    distances: dict[str, dict[str, np.ndarray]] = {}
    infos: dict[str, dict[str, Any]] = {}
    protocol: dict[str, Any] = {}
    for backbone in BACKBONES:
        f = load_features(backbone, dataset)
        infos[backbone] = json.loads(str(f["model_info"]))
        reranked = k_reciprocal_rerank(
            *rerank_features(f, ev), k1=rr.k1, k2=rr.k2, lambda_value=rr.lambda_value
        )
        result = rank(reranked, f, ev.max_rank)
        tables[backbone] = per_query_table(result, f)
        metrics[backbone] = _scores_with_intervals(result, tables[backbone], ev)
        protocol = _protocol(dataset, f, result)
        if backbone == params.backbone:
            distances = {
                "features": f,
                "plain": pairwise_distance(f["query"], f["gallery"], ev.metric),
                "reranked": reranked,
            }
    output = {"headline": _headline(params.backbone, metrics), **metrics}
    _write_per_query(tables, gallery_record(f, protocol), infos, per_query_dir(dataset, "rerank"))
    write_json(metrics_path(dataset, "rerank"), output)
    out = results_dir(dataset)
    write_results(_results_rows(infos, plain, metrics, untrained),
                  out / "results.md", out / "results.csv",
                  title=f"{dataset} results", notes=_table_notes(params, protocol, infos))
    pictures = draw_queries(params, dataset, distances, out / "ranked")
    tables_out = [(out / "results.md", None), (out / "results.csv", None)]
    # the plain scores too: a run that rerank starts (say after -S rerank.k1=...) is complete
    log_test_metrics(params, dataset, infos, {"test": plain, "test.rerank": metrics}, {
        b: tables_out + ([(p, "ranked") for p in pictures] if b == params.backbone else [])
        for b in BACKBONES})
    return output


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run evaluate first)")
    return json.loads(path.read_text())


def _results_rows(
    infos: dict[str, Any], plain: dict[str, Any], reranked: dict[str, Any],
    untrained: dict[str, Any],
) -> pd.DataFrame:
    """The results table: each backbone plain and re-ranked, then the untrained baselines."""
    rows, untrained_rows = [], []
    for backbone in BACKBONES:
        info = infos[backbone]
        label = model_label(backbone, info["pretrained"])
        common = {"image_size": "x".join(map(str, info["input_size"])), "epochs": info["epochs"]}
        rows.append({"model": label, **common, **plain[backbone]})
        rows.append({"model": f"{label} + re-ranking", **common, **reranked[backbone]})
        if backbone in untrained:
            untrained_rows.append({"model": f"{label}, before training", **common,
                                   "epochs": 0, **untrained[backbone]})
    return results_table(rows + untrained_rows)


def _recipe(info: dict[str, Any]) -> str:
    ids = info["batch_size"] // info["num_instances"]
    return (f"lr {info['lr']:g}, batches of {ids} ids x {info['num_instances']} images, "
            f"warm-up {info['warmup_epochs']} epochs, lr x{info['gamma']:g} at epochs "
            f"{info['milestones']}")


def _table_notes(params: Params, protocol: dict[str, Any], infos: dict[str, Any]) -> list[str]:
    ev, rr = params.eval, params.rerank
    summary = protocol["summary"]
    recipes = {b: _recipe(info) for b, info in infos.items() if "lr" in info}
    if len(set(recipes.values())) == 1:
        training = [f"Training: {next(iter(recipes.values()))}."]
    else:
        training = [f"Training of {b}: {r}." for b, r in recipes.items()]
    return [
        *training,
        *_selection_notes(infos),
        f"Protocol: {summary['protocol']}; source: {summary['source']}.",
        f"Query {protocol['num_query']} images ({protocol['num_valid_queries']} valid, "
        f"{protocol['num_skipped_queries']} skipped without a valid match), gallery "
        f"{protocol['num_gallery']} images; training {summary['num_train_images']} images of "
        f"{summary['num_train_ids']} ids.",
        f"Distance: {ev.metric} on {'L2-normalised ' if ev.normalize else ''}BNNeck features"
        f"{' averaged with the flipped image' if ev.flip else ''}; same-id same-camera gallery "
        f"images ignored. Re-ranking: k-reciprocal on {ev.metric} distances, k1={rr.k1}, "
        f"k2={rr.k2}, lambda={rr.lambda_value}.",
        f"95% CI: percentile bootstrap over query identities ({ev.bootstrap_resamples} "
        f"resamples, seed {ev.bootstrap_seed}; all queries of a drawn identity, gallery fixed).",
        f"Headline backbone: {params.backbone}. mINP: Ye et al., TPAMI 2021.",
    ]


def _selection_notes(infos: dict[str, Any]) -> list[str]:
    """Which epoch's weights each model holds, when chosen by validation mAP (eval.select)."""
    picked = {b: i["selected"] for b, i in infos.items()
              if (i.get("selected") or {}).get("by", "last") != "last"}
    return [f"Weights of {b}: epoch {s['epoch']} of {infos[b]['epochs']}, the {s['by']} "
            f"({s['mAP']:.2f} on the held-out validation identities, not the test split)."
            for b, s in picked.items()]


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
