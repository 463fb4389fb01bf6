"""Where a raw dataset came from: a small record written by `download`, checked by `split`.

Without it, `split` run by hand after a failed download would describe the new source in its
summary while it splits the old data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reid.errors import InputError

RECORD = ".reid_source.json"


def write_source_record(folder: Path, record: dict[str, Any]) -> None:
    (Path(folder) / RECORD).write_text(json.dumps(record, indent=2) + "\n")


def check_source_record(folder: Path, source: str) -> dict[str, Any]:
    """The record of `folder`; an `InputError` unless it was downloaded from `source`."""
    path = Path(folder) / RECORD
    if not path.is_file():
        raise InputError(f"{folder}: no {RECORD}, so not written by the download stage; "
                         "run it first (dvc repro download@<dataset>)")
    record = json.loads(path.read_text())
    if record.get("source") != source:
        raise InputError(f"{folder} holds the data of source {record.get('source')!r}, but "
                         f"params give {source!r}: run the download stage again (a failed "
                         "download leaves the previous data in place)")
    return record
