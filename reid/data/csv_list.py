"""Any dataset from a CSV list: train on your own images without renaming them.

The list is a CSV file with the header ``path,pid,camid,split``, one image per row::

    path,pid,camid,split
    cam1/alice_001.jpg,0,1,train
    /mnt/photos/bob.png,1,2,query

``path`` is relative to the CSV's folder or absolute; ``pid`` (the person, an integer >= 0)
and ``camid`` (the camera) are integers; ``split`` is train, query or gallery. Every defect is an
`InputError` naming the file and its line (1-based, the header is line 1), so the row can be
opened in an editor at that line.

`import_csv_dataset` is the download step: it copies the images beside a rewritten list, so
the DVC-tracked folder is self-contained; `csv_manifest` is the parse step.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from reid.data.manifest import SPLITS, build_manifest
from reid.errors import InputError
from reid.io import atomic_path

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("path", "pid", "camid", "split")
LIST_NAME = "list.csv"
IMAGES_FOLDER = "images"
EXTERNAL_FOLDER = "external"  # under images/: absolute paths outside the CSV's folder
_MAX_REPORTED = 5  # bad rows named in one error
_INTEGER = re.compile(r"[+-]?\d+")  # int() would also take "1_000" and " 7 "
_HASH_CHARS = 10


def read_csv_list(csv_path: Path) -> pd.DataFrame:
    """Parse and check a CSV list; a row per image with ``path, pid, camid, split, line``.

    ``path`` is absolute (a relative one is joined to the CSV's folder, ``..`` folded
    lexically); ``line`` is the row's line in the file, for later messages. Bad rows (a
    non-integer or negative id, an unknown split, an empty, missing or repeated path, a wrong
    number of fields) are reported together, the first few in one `InputError`.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"CSV list {csv_path} does not exist")
    folder = Path(os.path.abspath(csv_path.parent))
    rows: list[tuple[str, int, int, str, int]] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's byte-order mark
        reader = csv.reader(fh)
        header, header_line = _next_record(reader)
        if header is None:
            raise InputError(
                f"{csv_path}: the file is empty; expected the header {','.join(CSV_COLUMNS)}"
            )
        index = _column_index(csv_path, header_line, header)
        while True:
            record, line = _next_record(reader)
            if record is None:
                break
            problem, row = _parse_row(record, line, index, folder)
            if problem is None and row[0] in first_line:
                problem = f"line {line}: {row[0]} is already listed at line {first_line[row[0]]}"
            if problem is not None:
                problems.append(problem)
                continue
            first_line[row[0]] = line
            rows.append(row)
    if problems:
        raise InputError(_describe(csv_path, problems))
    if not rows:
        raise InputError(f"{csv_path}: no images listed below the header (line 1)")
    df = pd.DataFrame(rows, columns=[*CSV_COLUMNS, "line"])
    for column in ("pid", "camid", "line"):
        df[column] = df[column].astype("int64")
    logger.info("%s: %d images (%s)", csv_path, len(df),
                ", ".join(f"{s} {int((df['split'] == s).sum())}" for s in SPLITS))
    return df


def csv_manifest(list_csv: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """The manifest of a CSV list (its rows per split, in file order) and path -> CSV line.

    The mapping names the row of an image in later messages (one that does not decode); its
    keys are the manifest's ``path`` values. Images under the list's folder keep that folder as
    given (``data/raw/<ds>/images/...``, as the Market parser does), so the manifest is the same
    in every clone.
    """
    rows = read_csv_list(list_csv)
    folder = Path(os.path.abspath(Path(list_csv).parent))
    rows["path"] = [str(Path(list_csv).parent / Path(p).relative_to(folder))
                    if Path(p).is_relative_to(folder) else p for p in rows["path"]]
    entries = {
        split: list(rows.loc[rows["split"] == split, ["path", "pid", "camid"]]
                    .itertuples(index=False, name=None))
        for split in SPLITS
    }
    manifest = build_manifest(entries["train"], entries["query"], entries["gallery"])
    return manifest, dict(zip(rows["path"], rows["line"].astype(int), strict=True))


def import_csv_dataset(csv_path: Path, dest: Path) -> Path:
    """Copy a CSV list's images into ``dest/images/`` and write ``dest/list.csv``; its path.

    Images under the CSV's folder keep their layout relative to it; others go to
    ``images/external/<hash of their folder>/<name>``, so equal names from two folders do not
    collide. The new list's paths are relative to `dest`. Everything is written into a
    temporary folder beside `dest` and renamed onto it at the end, so a failure leaves `dest`
    as it was (an earlier import is replaced only by a complete one).
    """
    csv_path, dest = Path(csv_path), Path(dest)
    rows = read_csv_list(csv_path)
    folder = Path(os.path.abspath(csv_path.parent))
    dest_abs = Path(os.path.abspath(dest))
    for source in [Path(os.path.abspath(csv_path)), *map(Path, rows["path"])]:
        if source.is_relative_to(dest_abs):
            raise InputError(
                f"{csv_path}: {source} lies inside the import folder {dest}, which the import "
                "replaces; import into a folder outside the list's images"
            )
    targets = [_target(Path(p), folder) for p in rows["path"]]
    listed_at: dict[str, int] = {}
    for target, line in zip(targets, rows["line"], strict=True):
        if target in listed_at:
            raise InputError(
                f"{csv_path}: line {line}: the image would be copied to {target}, as the one "
                f"of line {listed_at[target]}; rename one of them"
            )
        listed_at[target] = int(line)
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        pairs = list(zip(rows["path"], targets, strict=True))
        for source, target in tqdm(pairs, desc=f"copy {csv_path.name}", unit="file",
                                   leave=False, disable=None):
            (tmp / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tmp / target)
        out = rows[list(CSV_COLUMNS)].assign(path=targets)
        out.to_csv(tmp / LIST_NAME, index=False)
    logger.info("%s: %d images copied into %s", csv_path, len(rows), dest / IMAGES_FOLDER)
    return dest / LIST_NAME


def _target(path: Path, folder: Path) -> str:
    """Where an image goes, relative to the import folder (POSIX separators)."""
    if path.is_relative_to(folder):
        return (Path(IMAGES_FOLDER) / path.relative_to(folder)).as_posix()
    digest = hashlib.sha256(str(path.parent).encode()).hexdigest()[:_HASH_CHARS]
    return (Path(IMAGES_FOLDER) / EXTERNAL_FOLDER / digest / path.name).as_posix()


def _next_record(reader) -> tuple[list[str] | None, int]:
    """The next non-blank record and the line it starts on; ``(None, 0)`` at the end."""
    for record in reader:
        line = reader.line_num - sum(cell.count("\n") for cell in record)
        if any(cell.strip() for cell in record):
            return [cell.strip() for cell in record], line
    return None, 0


def _column_index(csv_path: Path, line: int, header: list[str]) -> dict[str, int]:
    """Column name -> position; the header must hold exactly the four columns."""
    expected = f"expected the header {','.join(CSV_COLUMNS)}"
    missing = [c for c in CSV_COLUMNS if c not in header]
    extra = [c for c in header if c not in CSV_COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if missing or extra or repeated:
        what = [f"{label} column(s) {', '.join(repr(c) for c in names)}"
                for label, names in (("missing", missing), ("unknown", extra),
                                     ("repeated", repeated)) if names]
        raise InputError(f"{csv_path}: line {line}: header {','.join(header)!r} has "
                         f"{'; '.join(what)}; {expected}")
    return {name: header.index(name) for name in CSV_COLUMNS}


def _parse_row(record: list[str], line: int, index: dict[str, int], folder: Path
               ) -> tuple[str | None, tuple[str, int, int, str, int] | None]:
    """``(problem, None)`` for a bad row, else ``(None, (path, pid, camid, split, line))``."""
    if len(record) != len(CSV_COLUMNS):
        return (f"line {line}: {len(record)} field(s), expected {len(CSV_COLUMNS)} "
                f"({','.join(CSV_COLUMNS)})"), None
    text = {name: record[i] for name, i in index.items()}
    for column in ("pid", "camid"):
        if not _INTEGER.fullmatch(text[column]):
            return f"line {line}: {column} {text[column]!r} is not an integer", None
    pid, camid = int(text["pid"]), int(text["camid"])
    if pid < 0:
        return (f"line {line}: pid {pid} is negative; use ids >= 0 (leave junk images out "
                "of the list)"), None
    if text["split"] not in SPLITS:
        return (f"line {line}: unknown split {text['split']!r}; expected one of "
                f"{', '.join(SPLITS)}"), None
    if not text["path"]:
        return f"line {line}: empty path", None
    path = Path(os.path.abspath(folder / text["path"]))
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        return f"line {line}: image {path} {state} (listed as {text['path']!r})", None
    return None, (str(path), pid, camid, text["split"], line)


def _describe(csv_path: Path, problems: list[str]) -> str:
    """One message for the bad rows: all of them up to a few, then a count of the rest."""
    if len(problems) == 1:
        return f"{csv_path}: {problems[0]}"
    shown = "; ".join(problems[:_MAX_REPORTED])
    more = len(problems) - _MAX_REPORTED
    rest = f"; and {more} more bad row(s)" if more > 0 else ""
    return f"{csv_path}: {len(problems)} bad rows: {shown}{rest}"
