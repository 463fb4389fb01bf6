"""The `split` stage: the raw dataset parsed into one manifest and a summary of its protocol."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from reid.data.csv_list import csv_manifest
from reid.data.cuhk03 import parse_cuhk03
from reid.data.manifest import summarize, validate_dataset, write_manifest
from reid.data.market1501 import find_market_root, parse_market_layout
from reid.data.msmt17 import find_msmt17_root, parse_msmt17
from reid.data.provenance import check_source_record
from reid.io import write_json
from reid.params import DatasetParams

log = logging.getLogger(__name__)


def split(dataset: str, params: DatasetParams, raw: Path, out_dir: Path) -> dict[str, object]:
    """Parse the raw data into `out_dir/manifest.csv` (+ `summary.json`); returns the summary.

    CUHK03 in the release format has its images written out of the .mat into
    `out_dir/images/`. Every format is then validated the same way (`validate_dataset`: every
    image decodes, train and test identities are disjoint, every query has a gallery), so a
    broken image fails here, before any training. The summary states the protocol.
    """
    out_dir = Path(out_dir)
    check_source_record(raw, params.source)
    manifest, protocol, rows = _parse(params, raw, out_dir)
    checks = validate_dataset(manifest, where=lambda path: rows.get(path, path))
    write_manifest(manifest, out_dir / "manifest.csv")
    summary = {
        "dataset": dataset,
        "format": params.format,
        "source": params.source,
        "protocol": protocol,
        "variant": params.variant if params.format == "cuhk03" else None,
        **summarize(manifest),
        **checks,
    }
    write_json(out_dir / "summary.json", summary)
    log.info("%s: %s", dataset, summary)
    return summary


def _parse(params: DatasetParams, raw: Path, out_dir: Path
           ) -> tuple[pd.DataFrame, str, dict[str, str]]:
    """(manifest, protocol text, {image path: where it is listed}) of `raw` in its format."""
    if params.format == "market1501":
        protocol = "Market-1501 standard (junk -1 ignored, distractors 0000 in the gallery)"
        return parse_market_layout(find_market_root(raw)), protocol, {}
    if params.format == "msmt17":
        root, version = find_msmt17_root(raw)
        protocol = (f"MSMT17 {version} (train = list_train + list_val; query and gallery "
                    "from list_query / list_gallery)")
        return parse_msmt17(root, version), protocol, {}
    if params.format == "csv":
        manifest, lines = csv_manifest(raw / "list.csv")
        where = {path: f"{path} (list.csv line {line}, as imported from {params.source})"
                 for path, line in lines.items()}
        return manifest, f"CSV list {params.source}", where
    manifest = parse_cuhk03(raw, out_dir / "images", params.variant)
    from_release = manifest["path"].str.startswith(str(out_dir / "images")).all()
    how = ("train/query/gallery from the split files" if from_release
           else "CUHK03-NP folders, already split")
    return manifest, f"CUHK03 new protocol ({how}), {params.variant}", {}
