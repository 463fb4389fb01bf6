"""The manifest: the one table of images that every stage after the split reads.

One row per image: ``path`` (as the parser received it, joined with the file name), ``pid``
(the dataset's person id; 0 = Market distractor), ``camid`` (the dataset's camera id, 1-based),
``split`` (train / query / gallery) and ``label`` (train ids relabelled 0..N-1 in pid order, the
classifier target; -1 for query and gallery rows).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from reid.errors import InputError
from reid.io import atomic_path

logger = logging.getLogger(__name__)

SPLITS = ("train", "query", "gallery")
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
    train_pids = sorted(df.loc[df["split"] == "train", "pid"].unique())
    relabel = {pid: label for label, pid in enumerate(train_pids)}
    df["label"] = df["pid"].map(relabel).where(df["split"] == "train", -1).astype("int64")
    return df[list(MANIFEST_COLUMNS)]


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
