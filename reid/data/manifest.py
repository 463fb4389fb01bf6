"""The manifest: the one table of images that every stage after the split reads.

One row per image: ``path`` (as the parser received it, joined with the file name), ``pid``
(the dataset's person id; 0 = Market distractor), ``camid`` (the dataset's camera id, 1-based),
``split`` (train / query / gallery) and ``label`` (train ids relabelled 0..N-1 in pid order, the
classifier target; -1 for query and gallery rows).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from reid.errors import InputError
from reid.io import atomic_path

logger = logging.getLogger(__name__)

SPLITS = ("train", "query", "gallery")
TEST_SPLITS = ("query", "gallery")  # what a model is scored on (test, or a validation split)
MANIFEST_COLUMNS = ("path", "pid", "camid", "split", "label")
_INT_COLUMNS = ("pid", "camid", "label")

Entry = tuple[str, int, int]


def build_manifest(
    train: Iterable[Entry], query: Iterable[Entry], gallery: Iterable[Entry]
) -> pd.DataFrame:
    """Build a manifest from ``(path, pid, camid)`` entries of each split.

    Train pids are mapped to dense labels 0..N-1 in increasing pid order, so the classifier
    size is the number of train identities whatever the dataset's id numbering.
    """
    frames = []
    for split, entries in zip(SPLITS, (train, query, gallery), strict=True):
        rows = [(str(path), int(pid), int(camid)) for path, pid, camid in entries]
        frame = pd.DataFrame(rows, columns=["path", "pid", "camid"])
        frame["split"] = split
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    df["pid"] = df["pid"].astype("int64")
    df["camid"] = df["camid"].astype("int64")
    is_train = df["split"] == "train"
    df["label"] = -1
    df.loc[is_train, "label"] = dense_labels(df.loc[is_train, "pid"])
    return df[list(MANIFEST_COLUMNS)]


def dense_labels(pids: pd.Series) -> pd.Series:
    """Each pid -> its rank 0..N-1 among the N distinct pids (int64): the classifier target."""
    relabel = {pid: label for label, pid in enumerate(sorted(pids.unique()))}
    return pids.map(relabel).astype("int64")


def query_gallery_labels(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """{"query_pids", "query_camids", "gallery_pids", "gallery_camids"} of the query and gallery
    rows of a manifest (or validation split), in row order: what the ranking protocol reads."""
    return {f"{split}_{key}": rows.loc[rows["split"] == split, column].to_numpy()
            for split in TEST_SPLITS for key, column in (("pids", "pid"), ("camids", "camid"))}


def validation_split(train: pd.DataFrame, num_ids: int, seed: int
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the train rows left, relabelled 0..N-1; the validation rows as query / gallery).

    `num_ids` identities are drawn by `seed` among those whose images, once one per camera is
    taken as a query, still leave gallery images from two or more cameras (so every validation
    query has a match from another camera, as the test protocols require).
    """
    first = train.groupby(["pid", "camid"]).cumcount() == 0
    rest_cameras = train[~first].groupby("pid")["camid"].nunique()
    eligible = sorted(rest_cameras[rest_cameras >= 2].index)
    left = train["pid"].nunique() - num_ids
    if num_ids > len(eligible) or left < 2:
        raise InputError(
            f"eval.val_ids: {num_ids} validation identities asked for, but only "
            f"{len(eligible)} of the {train['pid'].nunique()} training identities have images "
            "from enough cameras, and at least 2 must stay for training")
    chosen = np.random.default_rng(seed).choice(eligible, num_ids, replace=False)
    held = train["pid"].isin(chosen)
    val = train[held].assign(split=np.where(first[held], "query", "gallery"), label=-1)
    kept = train[~held]
    kept = kept.assign(label=dense_labels(kept["pid"]))
    logger.info("validation split: %d ids (%d query, %d gallery images) held out of training",
                num_ids, int((val["split"] == "query").sum()), int((val["split"] == "gallery").sum()))
    return kept.reset_index(drop=True), val.reset_index(drop=True)


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Write the manifest as CSV, atomically (a reader never sees half a file)."""
    _validate(df, Path(path))
    with atomic_path(path) as tmp:
        df[list(MANIFEST_COLUMNS)].to_csv(tmp, index=False)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read and validate a manifest CSV; any defect is a ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    try:
        df = pd.read_csv(path, dtype={"path": str, "split": str}, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise InputError(f"manifest {path} is empty (no header)") from err
    _validate(df, path)
    for column in _INT_COLUMNS:
        df[column] = df[column].astype("int64")
    return df[list(MANIFEST_COLUMNS)]


def summarize(df: pd.DataFrame) -> dict[str, int]:
    """Image and identity counts per split, as printed in the Market-1501 paper's table."""
    parts = {split: df[df["split"] == split] for split in SPLITS}
    return {
        "num_train_ids": int(parts["train"]["pid"].nunique()),
        "num_train_images": len(parts["train"]),
        "num_query": len(parts["query"]),
        "num_query_ids": int(parts["query"]["pid"].nunique()),
        "num_gallery": len(parts["gallery"]),
        "num_gallery_ids": int(parts["gallery"]["pid"].nunique()),
    }


def validate_dataset(
    df: pd.DataFrame, *, where: Callable[[str], str] = str, num_threads: int | None = None
) -> dict[str, int]:
    """Check a parsed dataset before anything trains on it; returns counts for the summary.

    Every image must decode (a truncated JPEG fails here, not in a DataLoader later), train and
    test identities must be disjoint, and every query identity needs a gallery image. Queries
    whose gallery images all share their camera are skipped by the protocol: counted, and an
    error only when no query is left. `where(path)` names an image in messages (e.g. its CSV
    line). Distractors (pid 0 in the gallery only) count as gallery images of nobody.
    """
    _check_decodes(df["path"].tolist(), where, num_threads)
    train, query, gallery = (df[df["split"] == s] for s in SPLITS)
    both = sorted(set(train["pid"]) & (set(query["pid"]) | set(gallery["pid"])))
    if both:
        shown = df[df["pid"].isin(both[:5]) & (df["split"] != "train")]["path"].head(3)
        raise InputError(f"identities {both[:5]}{' ...' if len(both) > 5 else ''} are in both "
                         f"the train and the test split (e.g. {', '.join(map(where, shown))}):"
                         " a test identity must be unseen in training")
    lonely = sorted(set(query["pid"]) - set(gallery["pid"]))
    if lonely:
        first = query[query["pid"] == lonely[0]]["path"].iloc[0]
        raise InputError(f"query identities {lonely[:5]}{' ...' if len(lonely) > 5 else ''} "
                         f"have no gallery image at all (e.g. {where(first)})")
    cameras = gallery.groupby("pid")["camid"].agg(set)
    same_camera = int(sum(cameras[pid] <= {cam} for pid, cam in
                          zip(query["pid"], query["camid"], strict=True)))
    if len(query) and same_camera == len(query):
        raise InputError("no valid query: every query's gallery images share its camera (the "
                         "protocol skips those); give each query identity a gallery image from "
                         "another camera")
    if same_camera:
        logger.warning("%d of %d queries have gallery images from their own camera only: the "
                       "protocol skips them", same_camera, len(query))
    return {"num_images_decoded": len(df), "num_queries_same_camera_only": same_camera}


def _check_decodes(paths: list[str], where: Callable[[str], str],
                   num_threads: int | None) -> None:
    """Decode every image once, in parallel (PIL releases the GIL while decoding)."""
    def failure(path: str) -> str | None:
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for broken files
            return f"{where(path)}: {err}"
        return None

    with ThreadPoolExecutor(num_threads or min(8, os.cpu_count() or 1)) as pool:
        results = list(tqdm(pool.map(failure, paths), total=len(paths), desc="decode images",
                            unit="img", leave=False, disable=None))
    bad = [r for r in results if r]
    if bad:
        raise InputError(f"{len(bad)} image(s) do not decode: {'; '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}")


def _validate(df: pd.DataFrame, path: Path) -> None:
    """Check columns, integer dtypes, split names and the train relabelling."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"manifest {path}: missing column(s) {missing}; expected {list(MANIFEST_COLUMNS)}"
        )
    for column in _INT_COLUMNS:
        if not pd.api.types.is_integer_dtype(df[column]):
            raise InputError(
                f"manifest {path}: column {column!r} must hold integers, got {df[column].dtype}"
            )
    if (df["path"].astype(str) == "").any():
        raise InputError(f"manifest {path}: empty 'path' in row(s) {_rows(df['path'] == '')}")
    unknown = sorted(set(df["split"]) - set(SPLITS))
    if unknown:
        raise InputError(f"manifest {path}: unknown split(s) {unknown}; expected one of {SPLITS}")
    is_train = df["split"] == "train"
    if (df.loc[~is_train, "label"] != -1).any():
        raise InputError(f"manifest {path}: query/gallery rows must have label -1")
    train = df[is_train]
    labels_per_pid = train.groupby("pid")["label"].nunique()
    if (labels_per_pid > 1).any():
        raise InputError(f"manifest {path}: a train pid has several labels")
    if sorted(train["label"].unique()) != list(range(train["pid"].nunique())):
        raise InputError(
            f"manifest {path}: train labels must be 0..N-1, one per train pid "
            f"({train['pid'].nunique()} pids)"
        )


def _rows(mask: Sequence[bool] | pd.Series) -> list[int]:
    """The first few row numbers where `mask` holds, for error messages."""
    return [int(i) for i in pd.Series(mask).to_numpy().nonzero()[0][:5]]
