"""Parse the MSMT17 layout: image folders plus the list files that define the protocol.

MSMT17 (Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person Re-Identification",
CVPR 2018): 4,101 identities seen by 15 cameras, 32,621 train images (``list_train.txt`` +
``list_val.txt``) of 1,041 ids, 11,659 query and 82,161 gallery images of 3,060 other ids.

``MSMT17_V1/`` holds ``train/`` and ``test/``; ``MSMT17_V2/`` (faces masked) holds
``mask_train_v2/`` and ``mask_test_v2/``. Both hold the four list files, one image a line:
``0000/0000_000_01_0303morning_0015_0.jpg 0`` (``<pid dir>/<name> <pid>``), relative to the
train folder for the train and val lists and to the test folder for the query and gallery
lists. The camera (1-15) is the third ``_`` field of the name. Images are not decoded here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

import pandas as pd

from reid.data.manifest import Entry, build_manifest
from reid.data.market1501 import iter_folders_below
from reid.errors import InputError

logger = logging.getLogger(__name__)

# version -> (train image folder, test image folder)
VERSIONS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
# list file -> (manifest split, which image folder its paths are relative to: 0 train, 1 test)
LIST_FILES = {
    "list_train.txt": ("train", 0),
    "list_val.txt": ("train", 0),
    "list_query.txt": ("query", 1),
    "list_gallery.txt": ("gallery", 1),
}
NUM_CAMERAS = 15
_MAX_DEPTH = 2


def find_msmt17_root(folder: Path) -> tuple[Path, str]:
    """The folder holding the list files and image folders, and its version ("V1" or "V2").

    `folder` or a descendant up to 2 levels down (archives unpack with wrapper folders); the
    shallowest match wins, ties in sorted name order. The version follows the image folders:
    ``train/`` + ``test/`` is V1, ``mask_train_v2/`` + ``mask_test_v2/`` is V2.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    candidates = list(iter_folders_below(folder, _MAX_DEPTH))
    for candidate in candidates:
        lists_ok = all((candidate / name).is_file() for name in LIST_FILES)
        versions = [v for v, dirs in VERSIONS.items() if _has_folders(candidate, dirs)]
        if lists_ok and len(versions) == 2:
            raise InputError(
                f"MSMT17 folder {candidate} holds both the V1 (train/, test/) and the V2 "
                "(mask_train_v2/, mask_test_v2/) image folders: keep one version per folder"
            )
        if lists_ok and versions:
            if candidate != folder:
                logger.info("MSMT17_%s layout found at %s", versions[0], candidate)
            return candidate, versions[0]
    # Report the closest candidate: the most expected entries present (shallowest on ties).
    best, best_version, best_score = folder, "V1", -1
    for candidate in candidates:
        for version, dirs in VERSIONS.items():
            score = sum((candidate / n).is_file() for n in LIST_FILES)
            score += sum((candidate / d).is_dir() for d in dirs)
            if score > best_score:
                best, best_version, best_score = candidate, version, score
    missing = [n for n in LIST_FILES if not (best / n).is_file()]
    missing += [f"{d}/" for d in VERSIONS[best_version] if not (best / d).is_dir()]
    where = "" if best == folder else f" (closest match: {best})"
    raise FileNotFoundError(
        f"no MSMT17 layout in {folder} or up to {_MAX_DEPTH} levels below{where}: missing "
        f"{', '.join(missing)} (expected the list files {', '.join(LIST_FILES)} beside "
        "train/ + test/ (MSMT17_V1) or mask_train_v2/ + mask_test_v2/ (MSMT17_V2))"
    )


def parse_msmt17(root: Path, version: str) -> pd.DataFrame:
    """Read the four list files of `root` (see `find_msmt17_root`) into a manifest.

    Train is ``list_train.txt`` + ``list_val.txt`` (the paper's 32,621 images); query and
    gallery come from ``list_query.txt`` and ``list_gallery.txt``. Paths are absolute.

    The lists number train and test ids independently, both from 0, though they are different
    people; the manifest's pid is one identity across all splits (the disjoint-ids check and
    evaluation compare pids), so train pids are kept as listed and every test pid (query and
    gallery alike) is offset by ``max train pid + 1``. Test pid ``p`` of the lists is
    ``p - offset`` in the manifest's query and gallery rows.
    """
    if version not in VERSIONS:
        raise InputError(f"unknown MSMT17 version {version!r}; expected one of {tuple(VERSIONS)}")
    root = Path(root).absolute()
    image_dirs = [root / name for name in VERSIONS[version]]
    for image_dir in image_dirs:
        if not image_dir.is_dir():
            raise FileNotFoundError(f"MSMT17_{version} image folder {image_dir} does not exist")
    splits: dict[str, list[Entry]] = {"train": [], "query": [], "gallery": []}
    listed: dict[str, str] = {}  # image path -> "list file, line n" where it was first listed
    files = _FileIndex()
    for list_name, (split, folder_index) in LIST_FILES.items():
        entries = _parse_list(root / list_name, image_dirs[folder_index], files, listed)
        splits[split].extend(entries)
        logger.debug("%s: %d images", root / list_name, len(entries))
    offset = max(pid for _, pid, _ in splits["train"]) + 1
    test = {s: [(p, pid + offset, cam) for p, pid, cam in splits[s]] for s in ("query", "gallery")}
    logger.info(
        "MSMT17_%s at %s: %d train, %d query, %d gallery images; test pids offset by %d",
        version,
        root,
        len(splits["train"]),
        len(test["query"]),
        len(test["gallery"]),
        offset,
    )
    return build_manifest(splits["train"], test["query"], test["gallery"])


def _parse_list(
    path: Path, image_dir: Path, files: _FileIndex, listed: dict[str, str]
) -> list[Entry]:
    """``(path, pid, camid)`` of each line of the list file `path`; blank lines are skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"MSMT17 list file {path} does not exist")
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            fields = line.split()
            if len(fields) != 2:
                raise InputError(
                    f"{where}: expected '<pid dir>/<name>.jpg <pid>' "
                    f"(e.g. '0000/0000_000_01_0303morning_0015_0.jpg 0'), got {line.strip()!r}"
                )
            relative, pid_text = fields
            rel = PurePosixPath(relative)
            if rel.is_absolute() or ".." in rel.parts:
                raise InputError(
                    f"{where}: path {relative!r} must be relative to {image_dir.name}/ "
                    "and stay inside it"
                )
            pid = _to_int(pid_text)
            if pid is None or pid < 0:
                raise InputError(f"{where}: pid {pid_text!r} is not a non-negative integer")
            name_fields = rel.name.split("_")
            camid = _to_int(name_fields[2]) if len(name_fields) > 2 else None
            if camid is None or not 1 <= camid <= NUM_CAMERAS:
                raise InputError(
                    f"{where}: name {rel.name!r} must have a camera 1-{NUM_CAMERAS} as its "
                    "third '_' field (e.g. 0000_000_01_0303morning_0015_0.jpg is camera 1)"
                )
            image = image_dir.joinpath(*rel.parts)
            if not files.is_file(image):
                raise InputError(f"{where}: listed image {image} does not exist")
            key = str(image)
            if key in listed:
                raise InputError(f"{where}: image {relative} is already listed at {listed[key]}")
            listed[key] = where
            entries.append((key, pid, camid))
    if not entries:
        raise InputError(f"MSMT17 list file {path} lists no images")
    return entries


def _has_folders(folder: Path, names: tuple[str, ...]) -> bool:
    return all((folder / name).is_dir() for name in names)


class _FileIndex:
    """Whether a file exists, listing each folder once (126k stat calls become ~4k listings)."""

    def __init__(self) -> None:
        self._names: dict[Path, set[str]] = {}

    def is_file(self, path: Path) -> bool:
        folder = path.parent
        if folder not in self._names:
            try:
                self._names[folder] = {e.name for e in os.scandir(folder) if e.is_file()}
            except (FileNotFoundError, NotADirectoryError):
                self._names[folder] = set()
        return path.name in self._names[folder]


def _to_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
