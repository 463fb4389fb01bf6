"""The data half of the pipeline: `download` (raw data in its original layout) and `split`."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from reid.data.cuhk03 import parse_cuhk03
from reid.data.generated import generate_cuhk03, generate_market1501
from reid.data.manifest import summarize, write_manifest
from reid.data.market1501 import find_market_root, parse_market_layout
from reid.data.sources import fetch_dataset
from reid.io import write_json
from reid.params import (
    DatasetParams,
    GeneratedCuhk03Params,
    GeneratedMarketParams,
    ParamsError,
    from_dict,
)

log = logging.getLogger(__name__)


# dataset -> (the schema of `data.<dataset>.generated`, the function writing that dataset)
GENERATORS = {
    "market1501": (GeneratedMarketParams, generate_market1501),
    "cuhk03": (GeneratedCuhk03Params, generate_cuhk03),
}


def _generator(dataset: str, params: DatasetParams):
    """A function writing the built-in dataset into a folder, from `data.<dataset>.generated`."""
    if dataset not in GENERATORS:
        raise ParamsError(f"unknown dataset {dataset!r}; choose from {tuple(GENERATORS)}")
    schema, generate = GENERATORS[dataset]
    spec = from_dict(schema, params.generated, f"data.{dataset}.generated")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in asdict(spec).items()}
    return lambda folder: generate(folder, **kwargs)


def find_cuhk03_data(folder: Path, variant: str) -> Path:
    """Check `folder` holds CUHK03 as the release .mat + protocol files or the NP layout."""
    folder = Path(folder)
    if any(folder.rglob("cuhk-03.mat")):
        configs = list(folder.rglob(f"cuhk03_new_protocol_config_{variant}.mat"))
        if not configs:
            raise FileNotFoundError(
                f"{folder}: has cuhk-03.mat but no cuhk03_new_protocol_config_{variant}.mat "
                "(the new-protocol split file; see README)"
            )
        return folder
    for candidate in [folder, *folder.glob("*"), *folder.glob("*/*")]:
        if (candidate / variant).is_dir():
            return find_market_root(candidate / variant)
    raise FileNotFoundError(
        f"{folder}: no CUHK03 data: expected cuhk03_release/cuhk-03.mat with "
        f"cuhk03_new_protocol_config_{variant}.mat, or a CUHK03-NP folder "
        f"{variant}/{{bounding_box_train,query,bounding_box_test}}"
    )


def download(dataset: str, params: DatasetParams, dest: Path) -> Path:
    """Materialise `dataset` from its configured source into `dest` (original layout)."""
    if dataset == "market1501":
        validate = find_market_root
    else:
        def validate(folder: Path) -> Path:
            return find_cuhk03_data(folder, params.variant)

    log.info("%s: source %s -> %s", dataset, params.source, dest)
    return fetch_dataset(
        params.source,
        dest,
        generate=_generator(dataset, params),
        validate=validate,
        sha256=params.sha256,
        md5=params.md5,
    )


def split(dataset: str, params: DatasetParams, raw: Path, out_dir: Path) -> dict[str, object]:
    """Parse the raw data into `out_dir/manifest.csv` (+ `summary.json`); returns the summary.

    CUHK03 in the release format has its images written out of the .mat into
    `out_dir/images/`. The summary states the protocol (variant, source) with the counts.
    """
    out_dir = Path(out_dir)
    if dataset == "market1501":
        manifest = parse_market_layout(find_market_root(raw))
        protocol = "Market-1501 standard (junk -1 ignored, distractors 0000 in the gallery)"
    else:
        manifest = parse_cuhk03(raw, out_dir / "images", params.variant)
        protocol = (
            f"CUHK03 new protocol (train/query/gallery from the split files), {params.variant}"
        )
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
