"""The `split` stage: the raw dataset parsed into one manifest and a summary of its protocol."""

from __future__ import annotations

import logging
from pathlib import Path

from reid.data.cuhk03 import parse_cuhk03
from reid.data.manifest import summarize, write_manifest
from reid.data.market1501 import find_market_root, parse_market_layout
from reid.data.provenance import check_source_record
from reid.io import write_json
from reid.params import DatasetParams

log = logging.getLogger(__name__)


def split(dataset: str, params: DatasetParams, raw: Path, out_dir: Path) -> dict[str, object]:
    """Parse the raw data into `out_dir/manifest.csv` (+ `summary.json`); returns the summary.

    CUHK03 in the release format has its images written out of the .mat into
    `out_dir/images/`. The summary states the protocol (variant, source) with the counts.
    """
    out_dir = Path(out_dir)
    check_source_record(raw, params.source)
    if dataset == "market1501":
        manifest = parse_market_layout(find_market_root(raw))
        protocol = "Market-1501 standard (junk -1 ignored, distractors 0000 in the gallery)"
    else:
        manifest = parse_cuhk03(raw, out_dir / "images", params.variant)
        from_release = manifest["path"].str.startswith(str(out_dir / "images")).all()
        how = ("train/query/gallery from the split files" if from_release
               else "CUHK03-NP folders, already split")
        protocol = f"CUHK03 new protocol ({how}), {params.variant}"
    write_manifest(manifest, out_dir / "manifest.csv")
    summary = {
        "dataset": dataset,
        "source": params.source,
        "protocol": protocol,
        "variant": params.variant if dataset == "cuhk03" else None,
        **summarize(manifest),
    }
    write_json(out_dir / "summary.json", summary)
    log.info("%s: %s", dataset, summary)
    return summary
