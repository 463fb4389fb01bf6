"""`reid rank MODEL --query ... --gallery ... -o OUT/`: each query's nearest gallery images.

Query and gallery images (files and/or folders; a folder's images sorted by path) are embedded
as the pipeline embeds them (BNNeck feature, flip-averaged, L2-normalised; see `reid.api`) and
ranked by squared Euclidean distance, the evaluate stage's `eval.metric: euclidean`; with
--rerank by the k-reciprocal re-ranked distance (Zhong et al., CVPR 2017), as the rerank stage.
There are no identities here: the ranking is all there is to see. An image given both as a
query and in the gallery (say, the same folder for both) is never listed as its own match.

Writes, each file complete or not at all:
  OUT/ranking.csv   columns query, rank, gallery, distance: ranks 1..k of each query, queries
                    in input order; equal distances keep the gallery's input order
  OUT/ranked/       NNNN_<query stem>.png for the first --pictures queries (NNNN: the query's
                    0-based position), the query then its top-k, each with its distance
                    (OUT/ranked/ is replaced as a whole; --pictures 0 leaves it, and says so)
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np

from reid.errors import InputError
from reid.io import atomic_path, check_writable

SORT_ROWS = 1024  # query rows argsorted at a time: an int64 (rows, G) block, not (Q, G)


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="rank gallery images by distance to each query image", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s MODEL --query IMAGES... --gallery IMAGES... -o OUT [options]",
    )
    parser.add_argument("model", metavar="MODEL",
                        help="a model file of a train stage (models/<b>/<ds>.pt), or an "
                             ".onnx file of `reid export` (runs on ONNX Runtime, CPU)")
    parser.add_argument("--query", nargs="+", required=True, metavar="IMAGES",
                        help="query image files and/or folders of images")
    parser.add_argument("--gallery", nargs="+", required=True, metavar="IMAGES",
                        help="gallery image files and/or folders of images")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the folder to write ranking.csv and ranked/ into")
    parser.add_argument("--top-k", type=int, default=10, metavar="K",
                        help="gallery images listed per query (capped at the gallery size; "
                             "default 10)")
    parser.add_argument("--rerank", action="store_true",
                        help="rank by the k-reciprocal re-ranked distance")
    parser.add_argument("--k1", type=int, default=20, help="re-ranking k1 (default 20)")
    parser.add_argument("--k2", type=int, default=6, help="re-ranking k2 (default 6)")
    parser.add_argument("--lambda", type=float, default=0.3, dest="lambda_value", metavar="L",
                        help="re-ranking weight of the original distance, in [0, 1] "
                             "(default 0.3)")
    parser.add_argument("--pictures", type=int, default=20, metavar="N",
                        help="ranked-list pictures of the first N queries (default 20; 0: none)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N",
                        help="images per embedding batch (default 64)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad numbers before any work, naming the option."""
    for option, value in (("--top-k", args.top_k), ("--batch-size", args.batch_size),
                          ("--k1", args.k1), ("--k2", args.k2)):
        if value < 1:
            raise InputError(f"{option} must be >= 1, got {value}")
    if args.pictures < 0:
        raise InputError(f"--pictures must be >= 0, got {args.pictures}")
    if not 0.0 <= args.lambda_value <= 1.0:
        raise InputError(f"--lambda must be in [0, 1], got {args.lambda_value}")


def top_k_order(distances: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) gallery indices of each query's k smallest distances, ties by lower index."""
    k = min(k, distances.shape[1])
    return np.concatenate([
        np.argsort(distances[a:a + SORT_ROWS], axis=1, kind="stable")[:, :k]
        for a in range(0, len(distances), SORT_ROWS)
    ])


def format_distance(value: float) -> str:
    """The shortest text that reads back as the same float32."""
    return np.format_float_positional(np.float32(value), trim="-")


def same_files(query: list[Path], gallery: list[Path]) -> np.ndarray:
    """(Q, G) True where a query image is also in the gallery: it is not its own match."""
    where = {p.resolve(): j for j, p in enumerate(gallery)}
    mask = np.zeros((len(query), len(gallery)), dtype=bool)
    for i, p in enumerate(query):
        if p.resolve() in where:
            mask[i, where[p.resolve()]] = True
    return mask


def write_ranking(path: Path, query: list[Path], gallery: list[Path], order: np.ndarray,
                  distances: np.ndarray) -> None:
    """ranking.csv: query, rank, gallery, distance; ranks 1..k of each query in input order."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query", "rank", "gallery", "distance"])
        for q, row in enumerate(order):
            for rank, g in enumerate(row, start=1):
                if np.isfinite(distances[q, g]):
                    writer.writerow([query[q], rank, gallery[g],
                                     format_distance(distances[q, g])])


def draw_pictures(folder: Path, query: list[Path], gallery: list[Path], order: np.ndarray,
                  distances: np.ndarray, kind: str) -> None:
    """A ranked-list picture per query (the folder replaced as a whole)."""
    from tqdm import tqdm

    from reid.report.ranked import draw_ranked_list

    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for q in tqdm(range(len(query)), desc="pictures", unit="picture", leave=False,
                      disable=None):
            shown = [g for g in order[q] if np.isfinite(distances[q, g])]
            draw_ranked_list(
                query[q], [gallery[g] for g in shown], None,
                tmp / f"{q:04d}_{query[q].stem}.png",
                title=f"query {q}: {query[q].name} ({kind} distance)",
                labels=[f"{distances[q, g]:.4f}" for g in shown],
            )


def run(args: argparse.Namespace) -> int:
    from reid.commands.loading import load_any_model
    from reid.data.images import image_paths
    from reid.metrics.distance import pairwise_distance
    from reid.metrics.rerank import k_reciprocal_rerank

    check_args(args)
    query, gallery = image_paths(args.query), image_paths(args.gallery)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; -o takes a folder")
    check_writable(out / "ranking.csv")
    model = load_any_model(args.model, device=args.device)
    q_feats = model.embed(query, batch_size=args.batch_size)
    g_feats = model.embed(gallery, batch_size=args.batch_size)

    if args.rerank:
        distances = k_reciprocal_rerank(q_feats, g_feats, k1=args.k1, k2=args.k2,
                                        lambda_value=args.lambda_value)
    else:
        distances = pairwise_distance(q_feats, g_feats, "euclidean")
    distances = np.where(same_files(query, gallery), np.inf, distances)
    order = top_k_order(distances, args.top_k)
    k = order.shape[1]
    write_ranking(out / "ranking.csv", query, gallery, order, distances)
    num_pictures = min(args.pictures, len(query))
    if num_pictures:
        draw_pictures(out / "ranked", query[:num_pictures], gallery, order, distances,
                      "re-ranked" if args.rerank else "squared Euclidean")

    method = (f"k-reciprocal re-ranking (k1={args.k1}, k2={args.k2}, "
              f"lambda={args.lambda_value:g})" if args.rerank
              else "squared Euclidean distance")
    print(f"ranked {len(query)} queries against {len(gallery)} gallery images by {method}")
    print(f"{out / 'ranking.csv'}: the top {k} of each query"
          + (f" (--top-k {args.top_k} capped at the gallery size)" if k < args.top_k else ""))
    if num_pictures:
        print(f"{out / 'ranked'}/: {num_pictures} ranked-list pictures")
    elif (out / "ranked").exists():
        print(f"note: {out / 'ranked'}/ holds the pictures of an earlier ranking, not of this "
              "one (--pictures 0 draws none)", file=sys.stderr)
    return 0
