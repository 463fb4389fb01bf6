"""The three dataset layouts the generated people are written in: Market-1501, CUHK03, MSMT17.

Each writer draws from one ``numpy.random.Generator`` seeded by `seed`, in a fixed order, so
the same arguments give byte-identical files.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from reid.data.generated.camera import FACINGS, Camera, random_camera
from reid.data.generated.matlab import MatWriter, write_mat5
from reid.data.generated.painter import Painter
from reid.data.generated.people import Person, random_people
from reid.errors import InputError
from reid.io import atomic_path

logger = logging.getLogger(__name__)

MARKET_FOLDER = "Market-1501-v15.09.15"
MARKET_SIZE = (128, 64)  # (H, W) of a Market-1501 crop
JPEG_QUALITY = 90
_MAX_MARKET_PID = 1501
_VARIANTS = ("labeled", "detected")  # the order Painter.cuhk03_frame returns crops

# version -> (top folder, train image folder, test image folder), as in the real releases
_MSMT17_LAYOUTS = {
    "V1": ("MSMT17_V1", "train", "test"),
    "V2": ("MSMT17_V2", "mask_train_v2", "mask_test_v2"),
}
# MSMT17 was filmed on four days, each in the morning, at noon and in the afternoon
_MSMT17_DAYS = ("0113", "0222", "0302", "0303")
_MSMT17_TIMES = ("morning", "noon", "afternoon")
MSMT17_VAL_FRACTION = 0.07  # list_val.txt holds 2,373 of the 32,621 train images


# --- Market-1501 --------------------------------------------------------------------------------


def generate_market1501(
    root: Path,
    *,
    num_train_ids: int,
    num_test_ids: int,
    num_distractors: int,
    num_junk: int,
    cameras: int = 6,
    images_per_camera: tuple[int, int] = (1, 3),
    seed: int = 0,
) -> Path:
    """Write a Market-1501-style dataset into ``root/Market-1501-v15.09.15/``; return that folder.

    Each identity is seen by 2 to min(cameras, 4) cameras, ``images_per_camera`` images each
    (train ids into ``bounding_box_train``, test ids into ``bounding_box_test``); as in
    Market-1501, a test id also has one query image per camera it appears in. The gallery also
    holds ``num_distractors`` pid-0000 images (partial bodies, background) and ``num_junk``
    pid -1 images (cut-off people). Names follow ``0002_c1s1_000451_03.jpg``; 64x128 JPEGs.
    """
    lo, hi = _check_market_args(
        num_train_ids, num_test_ids, num_distractors, num_junk, cameras, images_per_camera
    )
    h, w = MARKET_SIZE
    num_people = num_train_ids + num_test_ids
    rng, cams, painter, people = _setup(seed, cameras, h, max(h, w) + 64, num_people)
    max_pid = max(_MAX_MARKET_PID, 2 * len(people))
    pids = np.sort(rng.choice(np.arange(1, max_pid + 1), size=len(people), replace=False))
    is_test = np.zeros(len(people), dtype=bool)
    is_test[rng.choice(len(people), size=num_test_ids, replace=False)] = True
    namer = _MarketNamer(rng)

    out = Path(root) / MARKET_FOLDER
    with atomic_path(out) as tmp:
        folders = {k: tmp / k for k in ("bounding_box_train", "bounding_box_test", "query")}
        for folder in folders.values():
            folder.mkdir(parents=True)
        for pid, person, test in zip(pids, people, is_test, strict=True):
            gallery = folders["bounding_box_test" if test else "bounding_box_train"]
            for cam in _cameras_seeing(rng, cameras):
                facing = rng.choice(FACINGS, p=cams[cam].facing_p)
                count = int(rng.integers(lo, hi + 1))
                for query in [True] * int(test) + [False] * count:
                    image = painter.photo(person, cams[cam], facing, h, w)
                    folder = folders["query"] if query else gallery
                    _save_jpeg(image, folder / namer(pid, cam, query=query))
        for pid, count in ((0, num_distractors), (-1, num_junk)):
            for _ in range(count):
                cam = int(rng.integers(cameras))
                image = painter.oddity(cams[cam], h, w, junk=pid == -1)
                _save_jpeg(image, folders["bounding_box_test"] / namer(pid, cam, query=False))
    logger.info(
        "generated Market-1501-style data in %s: %d train ids, %d test ids, seed %d",
        out,
        num_train_ids,
        num_test_ids,
        seed,
    )
    return out


def _check_market_args(
    num_train_ids: int,
    num_test_ids: int,
    num_distractors: int,
    num_junk: int,
    cameras: int,
    images_per_camera: tuple[int, int],
) -> tuple[int, int]:
    """Refuse sizes the Market-1501 layout cannot hold; return images_per_camera as ints."""
    _check_positive(num_train_ids=num_train_ids, num_test_ids=num_test_ids, cameras=cameras)
    if num_distractors < 0 or num_junk < 0:
        raise InputError(
            f"num_distractors and num_junk must be >= 0, got {num_distractors}, {num_junk}"
        )
    if not 2 <= cameras <= 9:
        raise InputError(f"cameras must be 2..9 (one digit in Market names), got {cameras}")
    return _check_range("images_per_camera", images_per_camera)


class _MarketNamer:
    """Unique Market-1501 names: ``<pid>_c<cam>s<seq>_<frame>_<box>.jpg`` (query box 00)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def __call__(self, pid: int, cam: int, *, query: bool) -> str:
        pid_text = "-1" if pid == -1 else f"{pid:04d}"
        while True:
            seq = int(self.rng.integers(1, 7))
            frame = int(self.rng.integers(1, 100_000))
            box = 0 if query else int(self.rng.integers(1, 9))
            name = f"{pid_text}_c{cam + 1}s{seq}_{frame:06d}_{box:02d}.jpg"
            if name not in self.used:
                self.used.add(name)
                return name


# --- CUHK03 -------------------------------------------------------------------------------------


def generate_cuhk03(
    root: Path,
    *,
    num_pairs: int,
    ids_per_pair: int,
    num_test_ids: int,
    images_per_view: tuple[int, int] = (2, 5),
    seed: int = 0,
) -> Path:
    """Write a CUHK03 release ``cuhk03_release/cuhk-03.mat`` and new-protocol configs into root.

    The .mat follows the MATLAB v7.3 layout of the real release (HDF5 with a MATLAB userblock;
    ``detected`` and ``labeled`` (1, num_pairs) cells of (10, ids) image references into
    ``#refs#``; images (3, W, H) uint8; missing images are empty cells). ``labeled`` holds tight
    crops and ``detected`` looser, jittered crops of the same rendered frames (about 60-110 x
    150-300). The configs mimic the real files' fields, dtypes and shapes: ``num_test_ids``
    random test ids with one query per camera (view), the rest of their images gallery.
    """
    _check_positive(num_pairs=num_pairs, ids_per_pair=ids_per_pair, num_test_ids=num_test_ids)
    lo, hi = _check_range("images_per_view", images_per_view)
    if hi > 5:
        raise InputError(f"images_per_view: at most 5 images per view, got {images_per_view}")
    if num_test_ids >= num_pairs * ids_per_pair:
        raise InputError(
            f"num_test_ids ({num_test_ids}) must be below the number of ids "
            f"({num_pairs} pairs x {ids_per_pair})"
        )
    num_ids = num_pairs * ids_per_pair
    rng, cams, painter, people = _setup(seed, 2 * num_pairs, 200, 480, num_ids)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(root / "cuhk03_release" / "cuhk-03.mat") as tmp, MatWriter(tmp) as mat:
        keys = _draw_cuhk03_frames(mat, rng, painter, cams, people, ids_per_pair, (lo, hi))
    index = _cuhk03_split(rng, keys, ids_per_pair, num_ids, num_test_ids)
    config = _protocol_config(keys, ids_per_pair, index)
    for variant in _VARIANTS:
        write_mat5(root / f"cuhk03_new_protocol_config_{variant}.mat", config)
    logger.info(
        "generated CUHK03-style release in %s: %d pairs x %d ids, %d test ids, seed %d",
        root,
        num_pairs,
        ids_per_pair,
        num_test_ids,
        seed,
    )
    return root


def _draw_cuhk03_frames(
    mat: MatWriter,
    rng: np.random.Generator,
    painter: Painter,
    cams: list[Camera],
    people: list[Person],
    ids_per_pair: int,
    images_per_view: tuple[int, int],
) -> list[tuple[int, int, int]]:
    """Draw every frame into `mat`'s ``labeled`` and ``detected`` cells: each pair of cameras
    sees its ids, 5 slots per view; return the (pair, pid, slot) of each frame drawn, in the
    filelist order of the real files."""
    num_pairs = len(cams) // 2
    lo, hi = images_per_view
    keys = []
    cells = {v: np.empty((num_pairs, 10, ids_per_pair), dtype=object) for v in _VARIANTS}
    for pair, pid in itertools.product(range(num_pairs), range(ids_per_pair)):
        person = people[pair * ids_per_pair + pid]
        for view in range(2):
            cam = cams[2 * pair + view]
            facing = rng.choice(FACINGS, p=cam.facing_p)
            count = int(rng.integers(lo, hi + 1))
            for slot in range(5 * view, 5 * view + 5):
                if slot < 5 * view + count:
                    keys.append((pair, pid, slot))
                    crops = painter.cuhk03_frame(person, cam, facing)
                    for variant, crop in zip(_VARIANTS, crops, strict=True):
                        cells[variant][pair, slot, pid] = mat.store(crop.transpose(2, 1, 0))
                else:  # an empty cell, as when fewer than 5 images were kept
                    for variant in _VARIANTS:
                        cells[variant][pair, slot, pid] = mat.store_empty()
    for variant in _VARIANTS:
        pair_refs = [mat.store(cells[variant][pair], cell=True) for pair in range(num_pairs)]
        mat.store(np.array([pair_refs], dtype=object), cell=True, name=variant)
    return keys


def _cuhk03_split(
    rng: np.random.Generator,
    keys: list[tuple[int, int, int]],
    ids_per_pair: int,
    num_ids: int,
    num_test_ids: int,
) -> dict[str, list[int]]:
    """The new protocol's train, query and gallery indices into `keys`: `num_test_ids` random
    test ids, one random query image per test id and view, the rest of a test id's gallery."""
    test_ids = set(rng.choice(num_ids, size=num_test_ids, replace=False).tolist())
    query, seen = set(), set()
    for i in rng.permutation(len(keys)):
        pair, pid, slot = keys[i]
        person_view = (pair * ids_per_pair + pid, slot // 5)
        if person_view[0] in test_ids and person_view not in seen:
            seen.add(person_view)
            query.add(int(i))
    is_test = [pair * ids_per_pair + pid in test_ids for pair, pid, _ in keys]
    return {
        "train_idx": [i for i, test in enumerate(is_test) if not test],
        "query_idx": sorted(query),
        "gallery_idx": [i for i, test in enumerate(is_test) if test and i not in query],
    }


def _protocol_config(
    keys: list[tuple[int, int, int]], ids_per_pair: int, index: dict[str, list[int]]
) -> dict[str, np.ndarray]:
    """A new-protocol config's fields in the real files' layout: (N, 1) columns, uint8/uint16."""
    n = len(keys)
    filelist = np.empty((n, 1), dtype=object)
    for i, (pair, pid, slot) in enumerate(keys):
        name = f"{pair + 1}_{pid + 1:03d}_{slot // 5 + 1}_{slot + 1:02d}.png"
        filelist[i, 0] = np.array([name])
    index_type = np.uint16 if n < 2**16 else np.uint32
    return {
        "camId": np.array([[slot // 5 + 1] for _, _, slot in keys], dtype=np.uint8),
        "filelist": filelist,
        "labels": np.array(
            [[pair * ids_per_pair + pid + 1] for pair, pid, _ in keys], dtype=index_type
        ),
        **{
            name: (np.asarray(values, dtype=index_type) + 1).reshape(-1, 1)
            for name, values in index.items()
        },
    }


# --- MSMT17 -------------------------------------------------------------------------------------


def generate_msmt17(
    folder: Path,
    *,
    version: str = "V1",
    num_train_ids: int = 8,
    num_test_ids: int = 8,
    cameras: int = 15,
    images_per_camera: tuple[int, int] = (1, 2),
    seed: int = 0,
) -> None:
    """Write an MSMT17-style dataset into ``folder/MSMT17_<version>/``.

    The real layout: ``train/`` and ``test/`` (V2: ``mask_train_v2/``, ``mask_test_v2/``) of
    ``<pid:04d>/`` folders, and ``list_train.txt``, ``list_val.txt``, ``list_query.txt``,
    ``list_gallery.txt`` of ``<pid dir>/<name> <pid>`` lines. Train and test ids are numbered
    from 0 each, as in the real lists. Each identity is seen by 2 to min(cameras, 4) cameras,
    ``images_per_camera`` images each; a test id also has one query image per camera it
    appears in (the rest is gallery), and about 7% of the train images go to ``list_val.txt``.
    Names follow ``0000_000_01_0303morning_0015_0.jpg`` (pid, index within the pid, camera,
    day and time, frame, box); 64x128 JPEGs.
    """
    if version not in _MSMT17_LAYOUTS:
        raise InputError(f"version must be one of {tuple(_MSMT17_LAYOUTS)}, got {version!r}")
    _check_positive(num_train_ids=num_train_ids, num_test_ids=num_test_ids)
    if not 2 <= cameras <= 15:
        raise InputError(f"cameras must be 2..15 (MSMT17 has 15), got {cameras}")
    lo, hi = _check_range("images_per_camera", images_per_camera)
    top, train_folder, test_folder = _MSMT17_LAYOUTS[version]
    h, w = MARKET_SIZE
    num_people = num_train_ids + num_test_ids
    rng, cams, painter, people = _setup(seed, cameras, h, max(h, w) + 64, num_people)
    groups = ((train_folder, people[:num_train_ids]), (test_folder, people[num_train_ids:]))
    lines: dict[str, list[str]] = {"train": [], "query": [], "gallery": []}

    out = Path(folder) / top
    with atomic_path(out) as tmp:
        for image_folder, group in groups:
            for pid, person in enumerate(group):
                pid_folder = tmp / image_folder / f"{pid:04d}"
                pid_folder.mkdir(parents=True)
                test = image_folder == test_folder
                images = _draw_msmt17_identity(
                    rng, painter, cams, person, pid, test, (lo, hi), pid_folder
                )
                for name, kind in images:
                    lines[kind].append(f"{pid:04d}/{name} {pid}\n")
        for name, content in _msmt17_lists(rng, lines).items():
            (tmp / name).write_text("".join(content))
    logger.info(
        "generated MSMT17_%s-style data in %s: %d train ids, %d test ids, seed %d",
        version,
        out,
        num_train_ids,
        num_test_ids,
        seed,
    )


def _draw_msmt17_identity(
    rng: np.random.Generator,
    painter: Painter,
    cams: list[Camera],
    person: Person,
    pid: int,
    test: bool,
    images_per_camera: tuple[int, int],
    pid_folder: Path,
) -> list[tuple[str, str]]:
    """Write one identity's images into `pid_folder`: each camera that sees it films it at one
    day and time, in increasing frames; return (file name, list it goes to) of each image."""
    lo, hi = images_per_camera
    images = []
    for cam in _cameras_seeing(rng, len(cams)):
        facing = rng.choice(FACINGS, p=cams[cam].facing_p)
        when = f"{rng.choice(_MSMT17_DAYS)}{rng.choice(_MSMT17_TIMES)}"
        frame = int(rng.integers(1, 9000))
        count = int(rng.integers(lo, hi + 1))
        for kind in ["query"] * int(test) + ["gallery" if test else "train"] * count:
            frame += int(rng.integers(1, 40))
            name = f"{pid:04d}_{len(images):03d}_{cam + 1:02d}_{when}_{frame:04d}_0.jpg"
            _save_jpeg(painter.photo(person, cams[cam], facing, *MARKET_SIZE), pid_folder / name)
            images.append((name, kind))
    return images


def _msmt17_lists(rng: np.random.Generator, lines: dict[str, list[str]]) -> dict[str, list[str]]:
    """The four list files' lines: a random MSMT17_VAL_FRACTION of the train lines go to val."""
    train = lines["train"]
    num_val = max(1, round(MSMT17_VAL_FRACTION * len(train)))
    is_val = np.zeros(len(train), dtype=bool)
    is_val[rng.choice(len(train), size=num_val, replace=False)] = True
    return {
        "list_train.txt": [line for line, val in zip(train, is_val, strict=True) if not val],
        "list_val.txt": [line for line, val in zip(train, is_val, strict=True) if val],
        "list_query.txt": lines["query"],
        "list_gallery.txt": lines["gallery"],
    }


# --- shared by the layouts ----------------------------------------------------------------------


def _setup(
    seed: int, num_cameras: int, px_per_unit: float, noise_size: int, num_people: int
) -> tuple[np.random.Generator, list[Camera], Painter, list[Person]]:
    """The random generator seeded by `seed`, then from it the cameras, the painter's noise
    and the identities, drawn in that order."""
    rng = np.random.default_rng(seed)
    cams = [random_camera(rng, px_per_unit=px_per_unit) for _ in range(num_cameras)]
    painter = Painter(rng, noise_size=noise_size)
    return rng, cams, painter, random_people(rng, num_people)


def _cameras_seeing(rng: np.random.Generator, cameras: int) -> np.ndarray:
    """The 2 to min(cameras, 4) cameras that see one identity, in increasing order."""
    return np.sort(rng.choice(cameras, size=rng.integers(2, min(cameras, 4) + 1), replace=False))


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")


def _check_range(name: str, value: tuple[int, int]) -> tuple[int, int]:
    lo, hi = (int(v) for v in value)
    if not 1 <= lo <= hi:
        raise InputError(f"{name} must be (min, max) with 1 <= min <= max, got {value}")
    return lo, hi
