"""The `evaluate` and `rerank` stages: every backbone's features scored by one loop.

`score_backbones` ranks each backbone's query x gallery features by a distance (plain for
`evaluate`, k-reciprocal re-ranked for `rerank`, with each backbone's parameters as
`reid.pipeline.reranking` chooses them) and returns the scores with their intervals, the
per-query tables, and the protocol and gallery that every backbone was scored on. The two
stages differ only in the distance and in what they write: `evaluate` the metrics and CMC
plots; `rerank` its metrics, the results table and the ranked-list pictures (`reid.report`).

No model is built here: these stages read `features/<ds>/` only, so they do not import
the models or the training stack.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reid.errors import InputError
from reid.io import atomic_path, write_json
from reid.metrics.bootstrap import bootstrap_intervals, per_query_scores
from reid.metrics.rerank import k_reciprocal_rerank
from reid.params import BACKBONES, EvalParams, Params, RerankParams
from reid.paths import (
    cmc_plot_dir,
    features_path,
    metrics_path,
    per_query_dir,
    results_dir,
    split_dir,
)
from reid.pipeline.reranking import RerankChoice, rerank_choices, rerank_features
from reid.pipeline.scoring import load_features, query_gallery_distance, rank, score, scores
from reid.report.plots import plot_cmc
from reid.report.ranked import draw_queries
from reid.report.results import dataset_results_table, results_notes
from reid.report.tables import write_results
from reid.tracking import Tracker, model_params, model_run_name

log = logging.getLogger(__name__)


Distance = Callable[[dict[str, np.ndarray]], np.ndarray]
"""The arrays of `features/<ds>/<b>.npz` -> the (Q, G) query x gallery distances to rank by."""


@dataclass(frozen=True)
class Scored:
    """Every backbone's scores on one dataset under one distance; dicts by backbone, in
    `BACKBONES` order."""

    metrics: dict[str, dict[str, Any]]  # `scores` and their 95% intervals (`ci95`)
    cmc: dict[str, np.ndarray]  # (max_rank,) fraction of valid queries matched by each rank
    tables: dict[str, pd.DataFrame]  # `per_query_table`
    infos: dict[str, dict[str, Any]]  # each model file's description (the features' model_info)
    untrained: dict[str, dict[str, float]]  # plain `scores` of the untrained features, if asked
    protocol: dict[str, Any]  # `_protocol`, the same for every backbone
    gallery: dict[str, Any]  # `gallery_record`, the same for every backbone
    kept: tuple[dict[str, np.ndarray], np.ndarray] | None  # the `keep` backbone's arrays, distances


def plain_distance(ev: EvalParams) -> Distance:
    """The `eval.metric` distance of the features, as `evaluate` (and `scoring.score`) rank."""
    return lambda f: query_gallery_distance(f, ev.metric)


def reranked_distance(ev: EvalParams, rr: RerankParams | RerankChoice) -> Distance:
    """k-reciprocal re-ranked distances (Zhong et al., CVPR 2017) of `rerank_features`, with
    `rr`'s k1, k2 and lambda_value."""
    return lambda f: k_reciprocal_rerank(
        *rerank_features(f, ev), k1=rr.k1, k2=rr.k2, lambda_value=rr.lambda_value)


def score_backbones(params: Params, dataset: str, distance: Distance | Mapping[str, Distance],
                    *, untrained: bool = False, keep: str | None = None) -> Scored:
    """Every backbone's features of `dataset` ranked by `distance` (one for all, or one per
    backbone): the one scoring loop of `evaluate` and `rerank`.

    `untrained` also scores the untrained features (plain distance) where they were extracted;
    `keep` names the backbone whose arrays and distances come back (for the pictures). All
    backbones must have been scored on the same query and gallery, or this fails.
    """
    ev = params.eval
    summary = json.loads((split_dir(dataset) / "summary.json").read_text())
    metrics, cmc, tables, infos, untrained_scores = {}, {}, {}, {}, {}
    setups: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    kept = None
    for backbone in BACKBONES:
        f = load_features(backbone, dataset)
        infos[backbone] = json.loads(str(f["model_info"]))
        distmat = (distance[backbone] if isinstance(distance, Mapping) else distance)(f)
        result = rank(distmat, f, ev.max_rank)
        tables[backbone] = per_query_table(result, f)
        metrics[backbone] = _scores_with_intervals(result, tables[backbone], ev)
        cmc[backbone] = result["cmc"]
        if untrained and "untrained_query" in f:
            untrained_scores[backbone] = scores(score(f, ev, prefix="untrained_"))
        protocol = _protocol(summary, f, result)
        setups[backbone] = (protocol, gallery_record(f, protocol))
        if backbone == keep:
            kept = (f, distmat)
    protocol, gallery = _one_setup(setups, dataset)
    return Scored(metrics=metrics, cmc=cmc, tables=tables, infos=infos,
                  untrained=untrained_scores, protocol=protocol, gallery=gallery, kept=kept)


def _one_setup(setups: dict[str, tuple[dict[str, Any], dict[str, Any]]], dataset: str
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The protocol and gallery record that every backbone shares: one table and the paired
    comparisons of `reid compare` need the same query and gallery for all."""
    first, *others = setups
    for backbone in others:
        if setups[backbone] != setups[first]:
            raise InputError(
                f"{features_path(backbone, dataset)}: scored on another query or gallery than "
                f"{features_path(first, dataset)} (run extract_features again)")
    return setups[first]


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


def _protocol(summary: dict[str, Any], feats: dict[str, np.ndarray], result: dict[str, Any]
              ) -> dict[str, Any]:
    """The set sizes and the split summary (`data/split/<ds>/summary.json`) of one scoring;
    `gallery_per_identity`: the gallery images of a query identity, on average over them."""
    query_ids = np.unique(feats["query_pids"])
    return {
        "num_query": int(len(feats["query_pids"])),
        "num_gallery": int(len(feats["gallery_pids"])),
        "gallery_per_identity":
            float(np.isin(feats["gallery_pids"], query_ids).sum() / len(query_ids)),
        "num_valid_queries": int(result["num_valid_queries"]),
        "num_skipped_queries": int(result["num_skipped_queries"]),
        "summary": summary,
    }


def evaluate(params: Params, dataset: str) -> dict[str, Any]:
    """mAP / CMC / mINP of every backbone -> `metrics/<ds>/evaluate.json` and CMC plots.

    Each backbone's per-query results go to `metrics/<ds>/per_query/<backbone>.csv`, and its
    mAP and rank-1 get 95% identity-bootstrap intervals (`ci95`); the untrained features'
    scores go to `metrics/<ds>/untrained.json`.
    """
    ev = params.eval
    scored = score_backbones(params, dataset, plain_distance(ev), untrained=True)
    output = {
        "headline": _headline(params.backbone, scored.metrics),
        **scored.metrics,
        "num_valid_queries": scored.protocol["num_valid_queries"],
        "num_gallery": scored.protocol["num_gallery"],
    }
    _write_per_query(scored, per_query_dir(dataset, "evaluate"))
    write_json(metrics_path(dataset, "untrained"), scored.untrained)
    write_json(metrics_path(dataset, "evaluate"), output)
    plots = cmc_plot_dir(dataset)
    cmc_curves = {backbone: 100 * cmc for backbone, cmc in scored.cmc.items()}
    cmc_table = pd.DataFrame({"rank": np.arange(1, ev.max_rank + 1), **cmc_curves})
    with atomic_path(plots / "cmc.csv") as tmp:
        cmc_table.to_csv(tmp, index=False)
    plot_cmc(cmc_curves, plots / "cmc.png", title=f"CMC on {dataset}")
    log_test_metrics(params, dataset, scored.infos, {"test": scored.metrics}, {
        b: [(plots / "cmc.png", "plots"), (metrics_path(dataset, "evaluate"), None)]
        for b in BACKBONES})
    return output


def rerank(params: Params, dataset: str) -> dict[str, Any]:
    """k-reciprocal re-ranking of every backbone -> `metrics/<ds>/rerank.json`, then the
    results table (plain, re-ranked, untrained) and the ranked-list pictures in `results/<ds>/`.

    Each backbone is re-ranked with the parameters `rerank.select` gives it; when they were
    chosen on the validation split, rerank.json (`parameters`), the notes and the MLflow run
    (`rerank.chosen.*`) say which and how.
    """
    ev, rr = params.eval, params.rerank
    plain = _read_json(metrics_path(dataset, "evaluate"))
    untrained = _read_json(metrics_path(dataset, "untrained"))
    choices = rerank_choices(params, dataset)
    scored = score_backbones(params, dataset,
                             {b: reranked_distance(ev, c) for b, c in choices.items()},
                             keep=params.backbone)
    chosen = {b: c.record() for b, c in choices.items()}
    output = {"headline": _headline(params.backbone, scored.metrics), **scored.metrics,
              **({"parameters": chosen} if rr.select != "fixed" else {})}
    _write_per_query(scored, per_query_dir(dataset, "rerank"))
    write_json(metrics_path(dataset, "rerank"), output)
    out = results_dir(dataset)
    notes = results_notes(ev, rr, params.backbone, scored.protocol, scored.infos,
                          reranking=chosen, plain=plain, reranked=scored.metrics)
    write_results(dataset_results_table(scored.infos, plain, scored.metrics, untrained),
                  out / "results.md", out / "results.csv", title=f"{dataset} results",
                  notes=notes)
    pictures = _ranked_pictures(params, dataset, scored, out / "ranked")
    tables_out = [(out / "results.md", None), (out / "results.csv", None)]
    # the plain scores too: a run that rerank starts (say after -S rerank.k1=...) is complete
    metrics = {"test": plain, "test.rerank": scored.metrics}
    if rr.select != "fixed":
        metrics["rerank.chosen"] = {b: {"k1": c.k1, "k2": c.k2, "lambda_value": c.lambda_value,
                                        "validation_mAP": c.validation_mAP}
                                    for b, c in choices.items()}
    log_test_metrics(params, dataset, scored.infos, metrics,
                     {b: tables_out + ([(p, "ranked") for p in pictures]
                                       if b == params.backbone else [])
                      for b in BACKBONES})
    return output


def _ranked_pictures(params: Params, dataset: str, scored: Scored, folder: Path) -> list[Path]:
    """The headline backbone's ranked lists, re-ranked or plain as `report.rerank` says."""
    assert scored.kept is not None, "scored with keep=params.backbone"
    arrays, reranked = scored.kept
    if params.report.rerank:
        key, distmat = "reranked", reranked
    else:
        key, distmat = "plain", query_gallery_distance(arrays, params.eval.metric)
    return draw_queries(arrays, distmat, folder, num_queries=params.report.num_queries,
                        top_k=params.report.top_k, name=params.backbone,
                        title=f"{dataset} {params.backbone} ({key})")


def _headline(backbone: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The `backbone` model's main metrics, named: across experiments it may be another model."""
    return {"backbone": backbone,
            **{k: metrics[backbone][k] for k in ("mAP", "rank1", "rank5", "rank10")}}


def _write_per_query(scored: Scored, folder: Path) -> None:
    """One CSV per backbone; `gallery.json`, the gallery they were all scored against; and
    `models.json`, the digest of each model file scored (`reid info` matches a file by it)."""
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for backbone, table in scored.tables.items():
            table.to_csv(tmp / f"{backbone}.csv", index=False)
        (tmp / "gallery.json").write_text(json.dumps(scored.gallery, indent=2) + "\n")
        models = {b: info["model_sha256"] for b, info in scored.infos.items()}
        (tmp / "models.json").write_text(json.dumps(models, indent=2) + "\n")


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run evaluate first)")
    return json.loads(path.read_text())


def log_test_metrics(
    params: Params, dataset: str, infos: dict[str, dict[str, Any]],
    metrics: dict[str, dict[str, dict[str, Any]]],
    artifacts: dict[str, list[tuple[Path, str | None]]],
) -> None:
    """Each model's test metrics into its MLflow run, under the same keys for every model.

    `metrics` maps a key prefix (`test`, `test.rerank`, `rerank.chosen`) to each backbone's
    scores (or values). The run is the train stage's (found by the model file's digest) when
    the params that bear on this model are the same; otherwise a new run of that model (see
    `reid.tracking`).
    """
    for backbone in BACKBONES:
        values = {}
        for prefix, by_backbone in metrics.items():
            m = by_backbone[backbone]
            values.update({f"{prefix}.{k}": v for k, v in m.items() if k != "ci95"})
            for key, (lo, hi) in m.get("ci95", {}).items():
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
