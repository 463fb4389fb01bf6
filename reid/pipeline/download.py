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
from reid.params import DatasetParams

log = logging.getLogger(__name__)

# format -> the function writing its built-in data (sized by `data.<dataset>.generated`)
GENERATORS = {
    "market1501": generate_market1501,
    "cuhk03": generate_cuhk03,
    "msmt17": generate_msmt17,
}


def _generate(params: DatasetParams, folder: Path) -> object:
    """Write the built-in dataset of `params` into `folder` (its size checked by the params)."""
    sizes = {k: tuple(v) if isinstance(v, list) else v for k, v in asdict(params.generated).items()}
    return GENERATORS[params.format](folder, **sizes)


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
        generate=lambda folder: _generate(params, folder),
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
