"""Parse the Market-1501 folder layout, shared by every Market-style dataset.

Market-1501 (Zheng et al., ICCV 2015), CUHK03-NP (Zhong et al., CVPR 2017) and DukeMTMC-reID
all ship ``bounding_box_train/``, ``query/`` and ``bounding_box_test/`` folders of images
named ``<pid>_c<camera>...``: ``0002_c1s1_000451_03.jpg``, ``0001_c1_01.jpg``,
``0001_c2_f0046182.jpg``. Pid -1 marks junk images (they never count and are dropped here);
pid 0 marks distractors (kept in the gallery, they can only be false matches).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from reid.errors import InputError
from reid.data.manifest import build_manifest

logger = logging.getLogger(__name__)

# split name in the manifest -> folder name in the layout
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
JUNK_PID = -1
_NAME = re.compile(r"([-\d]+)_c(\d+)")
_MAX_DEPTH = 2


def find_market_root(folder: Path) -> Path:
    """Find the folder holding the three split folders: `folder` or a descendant 2 levels down.

    Archives unpack with one or two wrapper folders (``market1501/Market-1501-v15.09.15/``);
    the shallowest match wins, ties in sorted name order.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    for candidate in iter_folders_below(folder, _MAX_DEPTH):
        if all((candidate / name).is_dir() for name in SPLIT_FOLDERS.values()):
            if candidate != folder:
                logger.info("Market-style layout found at %s", candidate)
            return candidate
    # Report the closest candidate: the one with most split folders (the shallowest on ties).
    candidates = list(iter_folders_below(folder, _MAX_DEPTH))
    best = max(candidates, key=lambda c: sum((c / n).is_dir() for n in SPLIT_FOLDERS.values()))
    missing = [name for name in SPLIT_FOLDERS.values() if not (best / name).is_dir()]
    where = "" if best == folder else f" (closest match: {best})"
    raise FileNotFoundError(
        f"no Market-style layout in {folder} or up to {_MAX_DEPTH} levels below{where}: "
        f"missing {', '.join(missing)}/ (expected {', '.join(SPLIT_FOLDERS.values())}/)"
    )


def parse_market_layout(root: Path) -> pd.DataFrame:
    """Read the three split folders of `root` into a manifest (junk pid -1 dropped)."""
    root = Path(root)
    splits = {}
    for split, folder_name in SPLIT_FOLDERS.items():
        folder = root / folder_name
        if not folder.is_dir():
            raise FileNotFoundError(f"split folder {folder} does not exist")
        entries = parse_market_folder(folder)
        splits[split] = [e for e in entries if e[1] != JUNK_PID]
        dropped = len(entries) - len(splits[split])
        if dropped:
            logger.info("%s: dropped %d junk images (pid -1)", folder, dropped)
    return build_manifest(splits["train"], splits["query"], splits["gallery"])


def parse_market_folder(folder: Path) -> list[tuple[str, int, int]]:
    """``(path, pid, camid)`` of every image in `folder`, in sorted file-name order.

    Non-image files (the ``Thumbs.db`` shipped in Market-1501) are skipped; an image whose
    name does not start with ``<pid>_c<camera>`` is an error, as is a folder without images.
    """
    folder = Path(folder)
    names = sorted(e.name for e in os.scandir(folder) if e.is_file())
    images = [n for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    skipped = len(names) - len(images)
    if skipped:
        logger.warning("%s: skipped %d non-image file(s)", folder, skipped)
    if not images:
        raise InputError(f"split folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    entries = []
    for name in images:
        match = _NAME.match(name)
        pid = _to_int(match.group(1)) if match else None
        if match is None or pid is None or pid < JUNK_PID:
            raise InputError(
                f"image {folder / name}: name does not start with '<pid>_c<camera>' "
                "(e.g. 0002_c1s1_000451_03.jpg)"
            )
        entries.append((str(folder / name), pid, int(match.group(2))))
    return entries


def _to_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def iter_folders_below(folder: Path, depth: int) -> Iterator[Path]:
    """`folder`, then its sub-folders down to `depth` levels: breadth first, sorted per level."""
    level = [Path(folder)]
    yield level[0]
    for _ in range(depth):
        level = [
            child
            for parent in level
            for child in sorted(parent.iterdir())
            if child.is_dir() and not child.name.startswith(".")
        ]
        yield from level
