"""Parse CUHK03 (Li et al., CVPR 2014) under the new 767/700 protocol (Zhong et al., CVPR 2017).

Two inputs are accepted, found in `raw_root` or up to two folders below it:

(a) the original release ``cuhk03_release/cuhk-03.mat`` (MATLAB v7.3, i.e. HDF5) with the
    new-protocol files ``cuhk03_new_protocol_config_{detected,labeled}.mat`` (MATLAB 5) beside
    ``cuhk03_release/`` (or inside it). ``detected`` and ``labeled`` in the release are (1, 5)
    cell arrays, one cell per camera pair; a cell dereferences to a (10, num_pids) array of
    references to images stored as (3, W, H) uint8 (columns 1-5: view 1, 6-10: view 2). Empty
    cells are 2-element arrays. The images named in the config's ``filelist``
    (``{pair}_{pid:03d}_{view}_{img:02d}.png``) are written as PNG files.
(b) the CUHK03-NP folder layout ``{detected,labeled}/{bounding_box_train,query,
    bounding_box_test}``, read like Market-1501.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io
from PIL import Image

from reid.errors import InputError
from reid.data.manifest import build_manifest
from reid.data.market1501 import find_market_root, iter_folders_below, parse_market_layout
from reid.io import atomic_path

logger = logging.getLogger(__name__)

VARIANTS = ("detected", "labeled")
RELEASE_MAT = Path("cuhk03_release") / "cuhk-03.mat"
CONFIG_NAME = "cuhk03_new_protocol_config_{variant}.mat"
CONFIG_FIELDS = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")
IMAGES_PER_PID = 10  # columns of a camera-pair cell: images 1-5 from view 1, 6-10 from view 2
_FILE_NAME = re.compile(r"(\d+)_(\d+)_([12])_(\d+)\.png")
_MAX_DEPTH = 2


@dataclass(frozen=True)
class ProtocolConfig:
    """A new-protocol config; indices are 0-based into `filelist` (1-based in the file)."""

    filelist: tuple[str, ...]
    labels: np.ndarray  # (N,) int64 person id
    camids: np.ndarray  # (N,) int64, 1 or 2
    train_idx: np.ndarray  # (num_train,) int64
    query_idx: np.ndarray  # (num_query,) int64
    gallery_idx: np.ndarray  # (num_gallery,) int64


def parse_cuhk03(raw_root: Path, images_out: Path, variant: str) -> pd.DataFrame:
    """Build the new-protocol manifest of the `variant` images found under `raw_root`.

    From the release .mat, the images are extracted into `images_out` (replaced atomically)
    and the manifest paths are `images_out` joined with the file names; from the NP layout,
    nothing is written and the paths point into the layout.
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown CUHK03 variant {variant!r}; expected one of {VARIANTS}")
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise FileNotFoundError(f"CUHK03 folder {raw_root} does not exist")
    other = next(v for v in VARIANTS if v != variant)
    for folder in iter_folders_below(raw_root, _MAX_DEPTH):
        if (folder / RELEASE_MAT).is_file():
            config = _find_config(folder, variant)
            logger.info("CUHK03 %s: release %s, protocol %s", variant, folder / RELEASE_MAT, config)
            return extract_release(folder / RELEASE_MAT, config, images_out, variant)
        if (folder / variant).is_dir():
            logger.info("CUHK03 %s: NP layout at %s", variant, folder / variant)
            return parse_market_layout(find_market_root(folder / variant))
        if (folder / other).is_dir():
            raise FileNotFoundError(
                f"CUHK03-NP layout at {folder} has no {variant}/ folder (found {other}/)"
            )
    raise FileNotFoundError(
        f"no CUHK03 data in {raw_root} or up to {_MAX_DEPTH} levels below: expected "
        f"{RELEASE_MAT} (with {CONFIG_NAME.format(variant=variant)}) or the CUHK03-NP layout "
        f"{variant}/{{bounding_box_train,query,bounding_box_test}}/"
    )


def load_protocol_config(path: Path) -> ProtocolConfig:
    """Read a new-protocol config .mat (MATLAB 5) and check its fields agree with each other."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocol config {path} does not exist")
    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise InputError(f"protocol config {path} is not a readable MATLAB 5 file: {err}") from err
    missing = [f for f in CONFIG_FIELDS if f not in mat]
    if missing:
        raise InputError(f"protocol config {path}: missing field(s) {missing}")
    try:
        filelist = tuple(_mat_string(item) for item in np.asarray(mat["filelist"]).ravel())
    except ValueError as err:
        raise InputError(f"protocol config {path}: field 'filelist': {err}") from err
    size = len(filelist)
    columns = {}
    for field in ("labels", "camId", "train_idx", "query_idx", "gallery_idx"):
        values = np.asarray(mat[field]).ravel()
        if not np.issubdtype(values.dtype, np.number):
            raise InputError(f"protocol config {path}: field {field!r} is not numeric")
        columns[field] = values.astype(np.int64)
    for field in ("labels", "camId"):
        if len(columns[field]) != size:
            raise InputError(
                f"protocol config {path}: field {field!r} has {len(columns[field])} entries, "
                f"filelist has {size}"
            )
    for field in ("train_idx", "query_idx", "gallery_idx"):
        idx = columns[field]
        if len(idx) and (idx.min() < 1 or idx.max() > size):
            raise InputError(
                f"protocol config {path}: {field} must be 1-based indices in 1..{size}, "
                f"got {idx.min()}..{idx.max()}"
            )
    return ProtocolConfig(
        filelist=filelist,
        labels=columns["labels"],
        camids=columns["camId"],
        train_idx=columns["train_idx"] - 1,
        query_idx=columns["query_idx"] - 1,
        gallery_idx=columns["gallery_idx"] - 1,
    )


def extract_release(
    mat_path: Path, config_path: Path, images_out: Path, variant: str
) -> pd.DataFrame:
    """Write the images a protocol config lists from the release .mat; return the manifest."""
    if variant not in VARIANTS:
        raise InputError(f"unknown CUHK03 variant {variant!r}; expected one of {VARIANTS}")
    config = load_protocol_config(config_path)
    used = np.unique(np.concatenate([config.train_idx, config.query_idx, config.gallery_idx]))
    images_out = Path(images_out)
    with _open_release(mat_path) as mat, atomic_path(images_out) as tmp:
        pairs = _camera_pairs(mat, mat_path, variant)
        tmp.mkdir()
        for index in used:
            name = config.filelist[index]
            image = _read_image(mat, pairs, name, mat_path, config_path, variant)
            Image.fromarray(image).save(tmp / name)
    logger.info("extracted %d CUHK03 %s images into %s", len(used), variant, images_out)

    def entries(indices: np.ndarray) -> list[tuple[str, int, int]]:
        return [
            (str(images_out / config.filelist[i]), int(config.labels[i]), int(config.camids[i]))
            for i in indices
        ]

    return build_manifest(
        entries(config.train_idx), entries(config.query_idx), entries(config.gallery_idx)
    )


def _find_config(folder: Path, variant: str) -> Path:
    name = CONFIG_NAME.format(variant=variant)
    places = [folder / name, folder / RELEASE_MAT.parent / name]
    for place in places:
        if place.is_file():
            return place
    raise FileNotFoundError(
        f"CUHK03 release found in {folder} but no protocol config: expected "
        f"{' or '.join(str(p) for p in places)}"
    )


def _open_release(mat_path: Path) -> h5py.File:
    try:
        return h5py.File(mat_path, "r")
    except OSError as err:
        raise InputError(
            f"CUHK03 release {mat_path} is not a MATLAB v7.3 (HDF5) file: {err}"
        ) from err


def _camera_pairs(mat: h5py.File, mat_path: Path, variant: str) -> list[np.ndarray]:
    """The (10, num_pids) arrays of image references, one per camera pair."""
    if variant not in mat:
        raise InputError(f"CUHK03 release {mat_path}: missing key {variant!r} (has {list(mat)})")
    cells = mat[variant]
    if not isinstance(cells, h5py.Dataset) or h5py.check_ref_dtype(cells.dtype) is None:
        raise InputError(f"CUHK03 release {mat_path}: {variant!r} is not a cell array")
    pairs = []
    for ref in np.asarray(cells[()]).ravel():
        refs = np.asarray(mat[ref][()])
        if refs.ndim != 2 or refs.shape[0] != IMAGES_PER_PID:
            raise InputError(
                f"CUHK03 release {mat_path}: a {variant!r} camera-pair cell has shape "
                f"{refs.shape}, expected ({IMAGES_PER_PID}, num_pids)"
            )
        pairs.append(refs)
    return pairs


def _read_image(
    mat: h5py.File,
    pairs: list[np.ndarray],
    name: str,
    mat_path: Path,
    config_path: Path,
    variant: str,
) -> np.ndarray:
    """The (H, W, 3) uint8 image that file name `{pair}_{pid}_{view}_{img}.png` refers to."""
    match = _FILE_NAME.fullmatch(name)
    if match is None:
        raise InputError(
            f"protocol config {config_path}: file name {name!r} is not "
            "'{pair}_{pid:03d}_{view}_{img:02d}.png'"
        )
    pair, pid, _, img = (int(g) for g in match.groups())
    where = f"image {name} of {config_path} is not in CUHK03 release {mat_path} ({variant})"
    if not (1 <= pair <= len(pairs)):
        raise InputError(f"{where}: camera pair {pair}, the release has {len(pairs)}")
    refs = pairs[pair - 1]
    if not (1 <= pid <= refs.shape[1] and 1 <= img <= IMAGES_PER_PID):
        raise InputError(f"{where}: camera pair {pair} holds {refs.shape[1]} ids x 10 images")
    data = np.asarray(mat[refs[img - 1, pid - 1]][()])
    if data.ndim != 3 or data.shape[0] != 3 or data.dtype != np.uint8:
        raise InputError(f"{where}: that cell is empty")
    return np.ascontiguousarray(data.transpose(2, 1, 0))  # (3, W, H) -> (H, W, 3)


def _mat_string(item: object) -> str:
    """A MATLAB 5 cell string as scipy returns it: a 1-element array of str."""
    array = np.asarray(item).ravel()
    if array.size != 1 or not isinstance(array[0], str):
        raise InputError(f"filelist entry {item!r} is not a string")
    return str(array[0])
