"""The `download` stage: a dataset from its source into data/raw/<ds>/ in its original layout."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from reid.data.csv_list import import_csv_dataset
from reid.data.generated import generate_cuhk03, generate_market1501, generate_msmt17
from reid.data.market1501 import find_market_root
from reid.data.msmt17 import find_msmt17_root
from reid.data.provenance import write_source_record
from reid.data.sources import SourceError, fetch_dataset, verify_checksum
from reid.params import (
    DatasetParams,
    GeneratedCuhk03Params,
    GeneratedMarketParams,
    GeneratedMsmt17Params,
    ParamsError,
    from_dict,
)

log = logging.getLogger(__name__)


# format -> (the schema of `data.<dataset>.generated`, the function writing that dataset)
GENERATORS = {
    "market1501": (GeneratedMarketParams, generate_market1501),
    "cuhk03": (GeneratedCuhk03Params, generate_cuhk03),
    "msmt17": (GeneratedMsmt17Params, generate_msmt17),
}


def _generator(dataset: str, params: DatasetParams):
    """A function writing the built-in dataset into a folder, from `data.<dataset>.generated`."""
    if params.format not in GENERATORS:
        raise ParamsError(f"data.{dataset}: no built-in generated data in the {params.format} "
                          f"format (only {', '.join(GENERATORS)})")
    schema, generate = GENERATORS[params.format]
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
    """Materialise `dataset` from its configured source into `dest` (original layout).

    A `csv` dataset's images are copied in beside a rewritten list (`dest/list.csv`), so the
    DVC-tracked folder holds everything the later stages read.
    """
    log.info("%s (%s): source %s -> %s", dataset, params.format, params.source, dest)
    if params.format == "csv":
        return _import_csv(params, dest)
    validators = {
        "market1501": find_market_root,
        "cuhk03": lambda folder: find_cuhk03_data(folder, params.variant),
        "msmt17": find_msmt17_root,
    }
    return fetch_dataset(
        params.source,
        dest,
        generate=_generator(dataset, params),
        validate=validators[params.format],
        sha256=params.sha256,
        md5=params.md5,
    )


def _import_csv(params: DatasetParams, dest: Path) -> Path:
    path = Path(params.source).expanduser()
    if not path.is_file():
        raise SourceError(f"{path}: CSV list not found (data.<name>.source of a csv dataset is "
                          "a file with the header path,pid,camid,split)")
    verify_checksum(path, sha256=params.sha256, md5=params.md5)
    import_csv_dataset(path, dest)
    write_source_record(dest, {"source": params.source, "sha256": params.sha256,
                               "md5": params.md5})
    return dest
