"""The `download` stage: a dataset from its source into data/raw/<ds>/ in its original layout."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from reid.data.generated import generate_cuhk03, generate_market1501
from reid.data.market1501 import find_market_root
from reid.data.sources import fetch_dataset
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
