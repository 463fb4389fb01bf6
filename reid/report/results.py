"""The results table of one dataset and the notes under it (written by the `rerank` stage).

The rows: each backbone plain and re-ranked, then the untrained baselines. The notes say how
the models were trained, which epoch's weights they hold, and the protocol, distance and
intervals the numbers were computed under, so that the table can be read on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from reid.report.tables import model_label, results_table

if TYPE_CHECKING:
    from reid.params import EvalParams, RerankParams


def dataset_results_table(
    infos: dict[str, dict[str, Any]], plain: dict[str, Any], reranked: dict[str, Any],
    untrained: dict[str, Any],
) -> pd.DataFrame:
    """Each backbone of `infos` (in its order) plain and re-ranked, then the untrained baselines.

    `infos` maps a backbone to its model file's description (epochs, input size, init);
    `plain`, `reranked` and `untrained` map it to its scores (the latter only some backbones).
    """
    rows, untrained_rows = [], []
    for backbone, info in infos.items():
        label = model_label(backbone, info["pretrained"])
        common = {"image_size": "x".join(map(str, info["input_size"])), "epochs": info["epochs"]}
        rows.append({"model": label, **common, **plain[backbone]})
        rows.append({"model": f"{label} + re-ranking", **common, **reranked[backbone]})
        if backbone in untrained:
            untrained_rows.append({"model": f"{label}, before training", **common,
                                   "epochs": 0, **untrained[backbone]})
    return results_table(rows + untrained_rows)


def results_notes(ev: EvalParams, rr: RerankParams, headline: str, protocol: dict[str, Any],
                  infos: dict[str, dict[str, Any]]) -> list[str]:
    """The notes under the table: training recipe, selected epochs, protocol and set sizes
    (`protocol`: the counts and the split summary), distance, re-ranking, intervals."""
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
        f"Headline backbone: {headline}. mINP: Ye et al., TPAMI 2021.",
    ]


def _recipe(info: dict[str, Any]) -> str:
    ids = info["batch_size"] // info["num_instances"]
    return (f"lr {info['lr']:g}, batches of {ids} ids x {info['num_instances']} images, "
            f"warm-up {info['warmup_epochs']} epochs, lr x{info['gamma']:g} at epochs "
            f"{info['milestones']}")


def _selection_notes(infos: dict[str, dict[str, Any]]) -> list[str]:
    """Which epoch's weights each model holds, when chosen by validation mAP (eval.select)."""
    picked = {b: i["selected"] for b, i in infos.items()
              if (i.get("selected") or {}).get("by", "last") != "last"}
    return [f"Weights of {b}: epoch {s['epoch']} of {infos[b]['epochs']}, the {s['by']} "
            f"({s['mAP']:.2f} on the held-out validation identities, not the test split)."
            for b, s in picked.items()]
