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
                  infos: dict[str, dict[str, Any]], *, reranking: dict[str, dict[str, Any]],
                  plain: dict[str, Any], reranked: dict[str, Any]) -> list[str]:
    """The notes under the table: training recipe, selected epochs, protocol and set sizes
    (`protocol`: the counts and the split summary), distance, re-ranking, intervals.

    `reranking` maps each backbone to the re-ranking parameters it was scored with and how they
    were chosen (`RerankChoice.record`); `plain` and `reranked` to its scores.
    """
    summary = protocol["summary"]
    recipes = {b: _recipe(info) for b, info in infos.items() if "lr" in info}
    if len(set(recipes.values())) == 1:
        training = [f"Training: {next(iter(recipes.values()))}."]
    else:
        training = [f"Training of {b}: {r}." for b, r in recipes.items()]
    fixed = rr.select == "fixed"
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
        f"images ignored. Re-ranking: k-reciprocal on {ev.metric} distances, "
        + (f"k1={rr.k1}, k2={rr.k2}, lambda={rr.lambda_value}." if fixed else
           "k1, k2 and lambda chosen for each backbone on the validation split (next note)."),
        *([] if fixed else [_validation_choice_note(rr, reranking)]),
        *_rerank_lowers_notes(protocol["gallery_per_identity"], reranking, plain, reranked),
        f"95% CI: percentile bootstrap over query identities ({ev.bootstrap_resamples} "
        f"resamples, seed {ev.bootstrap_seed}; all queries of a drawn identity, gallery fixed).",
        f"Headline backbone: {headline}. mINP: Ye et al., TPAMI 2021.",
    ]


def _validation_choice_note(rr: RerankParams, reranking: dict[str, dict[str, Any]]) -> str:
    """Which grid point each backbone re-ranks with, and on what it was chosen."""
    split = next(iter(reranking.values()))  # one validation split for every backbone
    grid = rr.grid
    chosen = "; ".join(f"{b} k1={c['k1']}, k2={c['k2']}, lambda={c['lambda_value']} "
                       f"(validation mAP {c['validation_mAP']:.2f})"
                       for b, c in reranking.items())
    return (f"Re-ranking parameters: the best validation mAP among the {split['grid_points']} "
            f"points of k1 in {grid.k1} x k2 in {grid.k2} x lambda in {grid.lambda_value} (ties "
            f"to the first, in that order), on the validation split ({split['validation_ids']} "
            f"training identities held out of training, {split['validation_queries']} query and "
            f"{split['validation_gallery']} gallery images; never the test split): {chosen}.")


def _rerank_lowers_notes(gallery_per_identity: float, reranking: dict[str, dict[str, Any]],
                         plain: dict[str, Any], reranked: dict[str, Any]) -> list[str]:
    """Why re-ranking lowers mAP, where it does and the gallery is too small for its k1."""
    lowered = {b: c["k1"] for b, c in reranking.items()
               if reranked[b]["mAP"] < plain[b]["mAP"] and gallery_per_identity < c["k1"]}
    if not lowered:
        return []
    if len(set(lowered.values())) == 1:
        k1 = f"k1 = {next(iter(lowered.values()))}"
    else:
        k1 = "k1 (" + ", ".join(f"{k} for {b}" for b, k in lowered.items()) + ")"
    return [f"Re-ranking lowers the mAP of {', '.join(lowered)}: the gallery holds "
            f"{gallery_per_identity:.1f} images per query identity on average, fewer than {k1}, "
            "so the k-reciprocal neighbourhoods fill with other people."]


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
