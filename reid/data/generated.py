"""The built-in dataset: rendered people written in the real Market-1501 and CUHK03 formats.

No data can be downloaded here, so the pipeline's default dataset is drawn: each identity is
a set of attributes (clothing colours, a pattern, proportions, accessories) and each camera a
set of viewing conditions (lighting, colour cast, a textured scene, scale, blur, noise). An
identity seen by a camera is drawn facing one way, so a logo seen from the front or a
backpack seen from behind shows in some cameras only; a quarter of the identities are
look-alikes of another, differing in one attribute. Colour alone does not identify a person,
and an untrained network is dominated by the camera; a trained one learns the attributes.

Everything comes from one ``numpy.random.Generator`` seeded by `seed`: the same seed gives
byte-identical files. Drawing is vectorised over the pixels of an image (numpy masks).
"""

from __future__ import annotations

import io
import itertools
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image, ImageFilter

from reid.errors import InputError
from reid.io import atomic_path

logger = logging.getLogger(__name__)

MARKET_FOLDER = "Market-1501-v15.09.15"
MARKET_SIZE = (128, 64)  # (H, W) of a Market-1501 crop
JPEG_QUALITY = 90
_MAX_MARKET_PID = 1501

# Clothing palette (RGB) and the relative frequency of each colour (dark clothes are common).
# fmt: off
_CLOTHES = np.array(
    [
        (25, 25, 28), (235, 235, 230), (128, 128, 128), (70, 70, 75), (30, 40, 90),
        (50, 90, 170), (130, 170, 215), (190, 30, 35), (110, 25, 35), (40, 120, 60),
        (110, 115, 55), (225, 200, 50), (230, 120, 30), (225, 130, 170), (110, 60, 140),
        (105, 70, 40), (200, 180, 140), (60, 90, 120),
    ],
    dtype=np.float32,
)
# fmt: on
_CLOTHES_P = np.array([8, 5, 4, 5, 4, 4, 2, 3, 2, 2, 2, 1, 1, 1, 1, 2, 2, 3], dtype=np.float64)
_CLOTHES_P /= _CLOTHES_P.sum()
_SKIN = np.array(
    [(240, 205, 180), (220, 175, 140), (190, 140, 100), (140, 95, 65), (95, 65, 45)],
    dtype=np.float32,
)
_HAIR = np.array(
    [(20, 15, 15), (60, 40, 25), (110, 75, 40), (200, 170, 100), (150, 150, 150)],
    dtype=np.float32,
)
_PATTERNS = ("solid", "stripes", "checks", "logo")
_BOTTOMS = ("trousers", "shorts", "skirt")
_BAGS = ("none", "backpack", "shoulder", "handbag")
SCENE_Y = (-1.7, 0.7)
SCENE_X = (-0.7, 6.7)
_FACINGS = ("front", "back", "left", "right")
_VARIANTS = ("labeled", "detected")  # the order Painter.cuhk03_frame returns crops
LOOKALIKE_FRACTION = 0.25


@dataclass(frozen=True)
class _Person:
    """What identifies a person: colours are RGB float arrays (3,), sizes in body heights."""

    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    top: np.ndarray
    top2: np.ndarray  # pattern colour
    pattern: str
    period: float
    long_sleeves: bool
    bottom: np.ndarray
    bottom_style: str
    shoes: np.ndarray
    width: float
    leg: float  # where the legs start (0 = top of head, 1 = soles)
    bag: str
    bag_color: np.ndarray
    bag_side: int  # +1 / -1: the side the bag hangs on, seen from the front
    hat: bool
    hat_color: np.ndarray


@dataclass(frozen=True)
class _Camera:
    """Viewing conditions of one camera, with its scene drawn once at `px_per_unit`.

    Scene coordinates are in body heights: feet at sy = 0 (sy grows downwards), sx along the
    scene; `scene` covers sy in SCENE_Y and sx in SCENE_X.
    """

    gain: np.ndarray  # (3,) colour cast x brightness
    offset: float
    gradient: float  # top-to-bottom light falloff
    scene: np.ndarray  # (Hs, Ws, 3) uint8
    px_per_unit: float
    scale: float  # person height / crop height
    blur: float
    noise: float
    facing_p: np.ndarray  # (4,) probabilities of front, back, left, right


@dataclass(frozen=True)
class _Pose:
    """Where the person stands in the picture (pixels) and how they face and walk."""

    top: float
    cx: float
    height: float
    facing: str
    stride: float
    swing: float
    scene_x: float


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
    _check_positive(num_train_ids=num_train_ids, num_test_ids=num_test_ids, cameras=cameras)
    if num_distractors < 0 or num_junk < 0:
        raise InputError(
            f"num_distractors and num_junk must be >= 0, got {num_distractors}, {num_junk}"
        )
    if not 2 <= cameras <= 9:
        raise InputError(f"cameras must be 2..9 (one digit in Market names), got {cameras}")
    lo, hi = _check_range("images_per_camera", images_per_camera)
    rng = np.random.default_rng(seed)
    h, w = MARKET_SIZE
    cams = [_random_camera(rng, px_per_unit=h) for _ in range(cameras)]
    painter = _Painter(rng, noise_size=max(h, w) + 64)
    people = _random_people(rng, num_train_ids + num_test_ids)
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
            seen_by = np.sort(
                rng.choice(cameras, size=rng.integers(2, min(cameras, 4) + 1), replace=False)
            )
            for cam in seen_by:
                facing = rng.choice(_FACINGS, p=cams[cam].facing_p)
                count = int(rng.integers(lo, hi + 1))
                kinds = ["query"] * int(test) + ["gallery"] * count
                for kind in kinds:
                    pose = _random_pose(rng, cams[cam], h, w, facing)
                    image, _ = painter.render(person, cams[cam], pose, h, w)
                    if kind == "query":
                        folder, name = folders["query"], namer(pid, cam, query=True)
                    else:
                        folder = folders["bounding_box_test" if test else "bounding_box_train"]
                        name = namer(pid, cam, query=False)
                    _save_jpeg(image, folder / name)
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
    rng = np.random.default_rng(seed)
    cams = [_random_camera(rng, px_per_unit=200) for _ in range(2 * num_pairs)]
    painter = _Painter(rng, noise_size=480)
    people = _random_people(rng, num_pairs * ids_per_pair)
    keys = []  # (pair, pid, slot) of each frame: the filelist order of the real files
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(root / "cuhk03_release" / "cuhk-03.mat") as tmp, _MatWriter(tmp) as mat:
        cells = {v: np.empty((num_pairs, 10, ids_per_pair), dtype=object) for v in _VARIANTS}
        for pair, pid in itertools.product(range(num_pairs), range(ids_per_pair)):
            person = people[pair * ids_per_pair + pid]
            for view in range(2):
                cam = cams[2 * pair + view]
                facing = rng.choice(_FACINGS, p=cam.facing_p)
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

    test_ids = set(rng.choice(num_pairs * ids_per_pair, size=num_test_ids, replace=False).tolist())
    query, seen = set(), set()
    for i in rng.permutation(len(keys)):
        pair, pid, slot = keys[i]
        person_view = (pair * ids_per_pair + pid, slot // 5)
        if person_view[0] in test_ids and person_view not in seen:
            seen.add(person_view)
            query.add(int(i))
    is_test = [pair * ids_per_pair + pid in test_ids for pair, pid, _ in keys]
    index = {
        "train_idx": [i for i, test in enumerate(is_test) if not test],
        "query_idx": sorted(query),
        "gallery_idx": [i for i, test in enumerate(is_test) if test and i not in query],
    }
    for variant in _VARIANTS:
        _write_protocol_config(
            root / f"cuhk03_new_protocol_config_{variant}.mat", keys, ids_per_pair, index
        )
    logger.info(
        "generated CUHK03-style release in %s: %d pairs x %d ids, %d test ids, seed %d",
        root,
        num_pairs,
        ids_per_pair,
        num_test_ids,
        seed,
    )
    return root


# --- identities, cameras, poses ---------------------------------------------------------------


def _random_people(rng: np.random.Generator, count: int) -> list[_Person]:
    """`count` identities; about a quarter copy an earlier one but for one attribute."""
    people: list[_Person] = []
    for _ in range(count):
        if people and rng.random() < LOOKALIKE_FRACTION:
            people.append(_lookalike(rng, people[int(rng.integers(len(people)))]))
        else:
            people.append(_random_person(rng))
    return people


def _random_person(rng: np.random.Generator) -> _Person:
    top_i, top2_i = rng.choice(len(_CLOTHES), size=2, replace=False, p=_CLOTHES_P)
    return _Person(
        skin=_jitter(rng, _SKIN[rng.integers(len(_SKIN))], 8),
        hair=_jitter(rng, _HAIR[rng.integers(len(_HAIR))], 8),
        long_hair=bool(rng.random() < 0.3),
        top=_jitter(rng, _CLOTHES[top_i], 12),
        top2=_jitter(rng, _CLOTHES[top2_i], 12),
        pattern=str(rng.choice(_PATTERNS, p=[0.45, 0.2, 0.15, 0.2])),
        period=float(rng.uniform(0.022, 0.04)),
        long_sleeves=bool(rng.random() < 0.5),
        bottom=_clothing_colour(rng),
        bottom_style=str(rng.choice(_BOTTOMS, p=[0.65, 0.2, 0.15])),
        shoes=_clothing_colour(rng),
        width=float(rng.uniform(0.85, 1.2)),
        leg=float(rng.uniform(0.44, 0.54)),
        bag=str(rng.choice(_BAGS, p=[0.45, 0.25, 0.2, 0.1])),
        bag_color=_clothing_colour(rng),
        bag_side=int(rng.choice([-1, 1])),
        hat=bool(rng.random() < 0.15),
        hat_color=_clothing_colour(rng),
    )


def _lookalike(rng: np.random.Generator, person: _Person) -> _Person:
    """A copy of `person` differing in one attribute group (a hard negative)."""
    other = _random_person(rng)
    groups = {
        "top": ("top",),
        "pattern": ("pattern", "top2", "period"),
        "bottom": ("bottom", "bottom_style"),
        "shoes": ("shoes",),
        "hair": ("hair", "long_hair"),
        "bag": ("bag", "bag_color", "bag_side"),
        "hat": ("hat", "hat_color"),
        "build": ("width", "leg"),
        "sleeves": ("long_sleeves",),
    }
    names = list(groups)
    changed = groups[names[int(rng.integers(len(names)))]]
    if changed == ("hat", "hat_color"):
        return replace(person, hat=not person.hat, hat_color=other.hat_color)
    if changed == ("long_sleeves",):
        return replace(person, long_sleeves=not person.long_sleeves)
    if changed == ("pattern", "top2", "period") and other.pattern == person.pattern:
        other = replace(other, pattern=_PATTERNS[(_PATTERNS.index(person.pattern) + 1) % 4])
    if changed == ("bag", "bag_color", "bag_side") and other.bag == person.bag == "none":
        other = replace(other, bag="backpack")
    return replace(person, **{name: getattr(other, name) for name in changed})


def _random_camera(rng: np.random.Generator, px_per_unit: float) -> _Camera:
    """A camera: light and colour cast, a textured scene with poles, blur and noise levels."""
    brightness = rng.uniform(0.6, 1.25)
    return _Camera(
        gain=(brightness * (1 + rng.uniform(-0.18, 0.18, size=3))).astype(np.float32),
        offset=float(rng.uniform(-12, 12)),
        gradient=float(rng.uniform(-0.3, 0.3)),
        scene=_random_scene(rng, px_per_unit),
        px_per_unit=px_per_unit,
        scale=float(rng.uniform(0.78, 0.92)),
        blur=float(rng.uniform(0.2, 0.9)),
        noise=float(rng.uniform(2, 7)),
        facing_p=rng.dirichlet(np.full(4, 0.8)),
    )


def _random_scene(rng: np.random.Generator, px_per_unit: float) -> np.ndarray:
    """A wall (bands, bricks or windows) over a tiled floor, poles, soft shading: (Hs, Ws, 3)."""
    hs = int((SCENE_Y[1] - SCENE_Y[0]) * px_per_unit)
    ws = int((SCENE_X[1] - SCENE_X[0]) * px_per_unit)
    sy = SCENE_Y[0] + np.arange(hs, dtype=np.float32)[:, None] / px_per_unit
    sx = SCENE_X[0] + np.arange(ws, dtype=np.float32)[None, :] / px_per_unit
    wall, wall2, floor = (_muted_colour(rng) for _ in range(3))
    period = rng.uniform(0.12, 0.45)
    band = np.floor(sx / period)
    kind = int(rng.integers(3))
    if kind == 0:  # vertical bands
        wall_mix = (band % 2) * np.ones_like(sy)
    elif kind == 1:  # bricks
        row = np.floor(sy / (period / 3))
        brick = np.floor(sx / period + 0.5 * (row % 2))
        mortar = (np.abs(sy / (period / 3) - row - 0.5) > 0.42) | (
            np.abs(sx / period + 0.5 * (row % 2) - brick - 0.5) > 0.46
        )
        wall_mix = 0.6 * mortar + 0.15 * (brick % 2)
    else:  # windows
        frac_x = sx / period - band
        frac_y = sy / period - np.floor(sy / period)
        wall_mix = ((frac_x > 0.2) & (frac_x < 0.8) & (frac_y > 0.25) & (frac_y < 0.75)) * 1.0
    wall_mix = wall_mix.astype(np.float32)[..., None]
    tile = rng.uniform(0.08, 0.25)
    tiles = (np.floor(sx / tile) + np.floor(sy / (tile / 2))) % 2
    floor_image = floor * (0.88 + 0.12 * tiles.astype(np.float32)[..., None])
    horizon = rng.uniform(-0.9, -0.1)
    image = np.where(sy[..., None] > horizon, floor_image, wall * (1 - wall_mix) + wall2 * wall_mix)
    for _ in range(int(rng.integers(0, 4))):  # poles, signs, bins: clothing-coloured clutter
        px, half = rng.uniform(SCENE_X[0], SCENE_X[1]), rng.uniform(0.02, 0.12)
        top = rng.uniform(SCENE_Y[0], -0.3)
        colour = _CLOTHES[rng.integers(len(_CLOTHES))] * rng.uniform(0.5, 1.0)
        image = np.where(
            ((np.abs(sx - px) < half) & (sy > top) & (sy < 0.02))[..., None], colour, image
        )
    # soft light and dirt: smooth low-frequency noise, mostly brightness
    cells = rng.normal(
        0, rng.uniform(6, 20), size=(int(hs / px_per_unit * 5) + 2, int(ws / px_per_unit * 5) + 2)
    )
    shading = np.asarray(
        Image.fromarray(cells.astype(np.float32)).resize((ws, hs), Image.Resampling.BILINEAR)
    )
    image = image + shading[..., None] * (1 + rng.uniform(-0.2, 0.2, size=3)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _random_pose(rng: np.random.Generator, cam: _Camera, h: int, w: int, facing: str) -> _Pose:
    """A detector-like crop of a walking person: scale and offset jitter around the camera's."""
    height = h * cam.scale * rng.uniform(0.92, 1.08)
    return _Pose(
        top=(h - height) / 2 + rng.uniform(-0.05, 0.05) * h,
        cx=w / 2 + rng.uniform(-0.1, 0.1) * w,
        height=height,
        facing=facing,
        stride=float(rng.uniform(0, 1)),
        swing=float(rng.uniform(-1, 1)),
        scene_x=float(rng.uniform(0, 6)),
    )


# --- drawing ------------------------------------------------------------------------------------


class _Painter:
    """Draws people into camera pictures; owns the random generator and a pool of pixel noise."""

    def __init__(self, rng: np.random.Generator, noise_size: int) -> None:
        self.rng = rng
        self.noise = rng.standard_normal((noise_size, noise_size, 3), dtype=np.float32)

    def render(
        self, person: _Person | None, cam: _Camera, pose: _Pose, h: int, w: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """`person` (None: background only) seen by `cam`: ((h, w, 3) uint8 image, (h, w) mask)."""
        rng = self.rng
        y = (np.arange(h, dtype=np.float32)[:, None] - pose.top) / pose.height  # 0 head, 1 soles
        x = (np.arange(w, dtype=np.float32)[None, :] - pose.cx) / pose.height
        hs, ws = cam.scene.shape[:2]
        rows = np.clip(((y[:, 0] - 1 - SCENE_Y[0]) * cam.px_per_unit).astype(np.int64), 0, hs - 1)
        cols = ((x[0] + pose.scene_x - SCENE_X[0]) * cam.px_per_unit).astype(np.int64)
        image = cam.scene[rows[:, None], np.clip(cols, 0, ws - 1)[None, :]].astype(np.float32)
        mask = np.zeros((h, w), dtype=bool)
        if person is not None:
            labels = _draw_person(person, pose, y, x)
            mask = labels >= 0
            palette = np.stack(
                [person.skin, person.hair, person.top, person.top2, person.bottom,
                 person.shoes, person.bag_color, person.hat_color]
            )  # fmt: skip
            # round the body a little: darker towards the silhouette's edges
            shade = 1 - 0.3 * np.clip((x / (0.16 * person.width)) ** 2, 0, 1)
            image[mask] = palette[labels[mask]] * np.broadcast_to(shade, mask.shape)[mask][:, None]
        light = cam.gain * (1 + cam.gradient * (y[..., None] - 0.5)) * rng.uniform(0.9, 1.1)
        image = np.clip(image * light + cam.offset, 0, 255).astype(np.uint8)
        blurred = Image.fromarray(image).filter(ImageFilter.BoxBlur(cam.blur + rng.uniform(0, 0.4)))
        oy, ox = (
            rng.integers(0, self.noise.shape[0] - h + 1),
            rng.integers(0, self.noise.shape[1] - w + 1),
        )
        noise = self.noise[oy : oy + h, ox : ox + w] * cam.noise
        image = np.clip(np.asarray(blurred, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        return image, mask

    def oddity(self, cam: _Camera, h: int, w: int, junk: bool) -> np.ndarray:
        """A distractor (pid 0: background, a part of a body) or junk (pid -1: a cut-off person)."""
        rng = self.rng
        pose = _random_pose(rng, cam, h, w, str(rng.choice(_FACINGS)))
        person: _Person | None = _random_person(rng)
        if junk:  # a person cut by the crop border
            pose = replace(pose, cx=float(rng.choice([0.0, w])) + rng.uniform(-0.1, 0.1) * w)
        else:
            kind = int(rng.integers(3))
            if kind == 0:
                person = None
            else:  # zoomed on the upper or lower body
                height = h * rng.uniform(1.6, 2.6)
                top = 0.0 if kind == 1 else h - height
                pose = replace(pose, height=height, top=top + rng.uniform(-0.1, 0.1) * h)
        image, _ = self.render(person, cam, pose, h, w)
        return image

    def cuhk03_frame(
        self, person: _Person, cam: _Camera, facing: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame, cropped twice: (tight 'labeled' crop, looser jittered 'detected' crop)."""
        rng = self.rng
        height = rng.uniform(150, 270) * (0.9 + 0.1 * person.width)
        h, w = int(height * 1.5), int(height * 0.8)
        pose = _Pose(
            top=0.25 * height, cx=w / 2, height=height, facing=facing,
            stride=float(rng.uniform(0, 1)), swing=float(rng.uniform(-1, 1)),
            scene_x=float(rng.uniform(0, 6)),
        )  # fmt: skip
        image, mask = self.render(person, cam, pose, h, w)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        top, bottom = rows[0], rows[-1] + 1
        bh = bottom - top
        # boxes are drawn at least 0.36 as wide as tall, even around a side view
        bw = max(cols[-1] + 1 - cols[0], 0.36 * bh)
        centre = (cols[0] + cols[-1] + 1) / 2
        left, right = centre - bw / 2, centre + bw / 2
        pad = rng.uniform(0.01, 0.03, size=4)
        labeled = image[
            max(0, int(top - pad[0] * bh)) : min(h, int(bottom + pad[1] * bh)),
            max(0, int(left - pad[2] * bw)) : min(w, int(right + pad[3] * bw)),
        ]
        loose = rng.uniform([0.02, 0.0, 0.05, 0.05], [0.14, 0.1, 0.25, 0.25])
        dy, dx = rng.uniform(-0.06, 0.06) * bh, rng.uniform(-0.12, 0.12) * bw
        detected = image[
            max(0, int(top - loose[0] * bh + dy)) : min(h, int(bottom + loose[1] * bh + dy)),
            max(0, int(left - loose[2] * bw + dx)) : min(w, int(right + loose[3] * bw + dx)),
        ]
        return np.ascontiguousarray(labeled), np.ascontiguousarray(detected)


# palette indices of the label map drawn by _draw_person
_SKIN_I, _HAIR_I, _TOP_I, _TOP2_I, _BOTTOM_I, _SHOES_I, _BAG_I, _HAT_I = range(8)


def _draw_person(p: _Person, pose: _Pose, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Paint `p` back to front into a label map (h, w) int8 of palette indices (-1: not body).

    `y` (h, 1) runs from 0 at the top of the head to 1 at the soles, `x` (1, w) is the
    horizontal distance from the body axis, both in body heights.
    """
    labels = np.full((y.shape[0], x.shape[1]), -1, dtype=np.int8)
    side = {"left": -1, "right": 1}.get(pose.facing, 0)  # the way a side view faces
    front = pose.facing == "front"
    # Seen from behind, the person's left is on the picture's left: mirror the bag side.
    bag_side = p.bag_side * (1 if front else -1) if side == 0 else -side
    wf = p.width * (0.72 if side else 1.0)
    shoulder = 0.12 * wf
    waist = 0.1 * wf

    def paint(region: np.ndarray, index: int) -> None:
        labels[region] = index

    # a backpack seen from the side hangs behind the body
    if p.bag == "backpack" and side:
        paint(_box(x * -side, y, shoulder - 0.02, shoulder + 0.07, 0.16, 0.42), _BAG_I)
    # legs, shoes and the bottom garment
    t = np.clip((y - p.leg) / (0.95 - p.leg), 0, 1)
    if side:
        centres = (side * pose.stride * 0.1 * t, -side * pose.stride * 0.1 * t)
    else:
        spread = 0.045 * wf + 0.012 * pose.stride * t
        centres = (-spread, spread)
    leg_half = 0.034 * wf * (1 - 0.25 * t)
    legs = np.zeros(labels.shape, dtype=bool)
    for c in centres:
        legs |= (np.abs(x - c) < leg_half) & (y >= p.leg) & (y < 0.955)
        shoe_c = c + 0.012 * side
        paint(_box(x - shoe_c, y, -0.04 * wf, 0.04 * wf, 0.935, 0.995), _SHOES_I)
    hips = _box(x, y, -waist, waist, p.leg - 0.01, p.leg + 0.06)
    if p.bottom_style == "trousers":
        paint(legs | hips, _BOTTOM_I)
    elif p.bottom_style == "shorts":
        paint(legs & (t > 0.42), _SKIN_I)
        paint((legs & (t <= 0.42)) | hips, _BOTTOM_I)
    else:
        paint(legs, _SKIN_I)
        flare = waist + 0.25 * np.clip(y - p.leg, 0, None)
        paint((np.abs(x) < flare) & (y >= p.leg - 0.01) & (y < p.leg + 0.2), _BOTTOM_I)
    # torso with its pattern, rounded shoulders
    frac = np.clip((y - 0.135) / (p.leg - 0.135), 0, 1)
    half = shoulder + (waist - shoulder) * frac - np.clip(0.16 - y, 0, None) * 1.5
    torso = (np.abs(x) < half) & (y >= 0.135) & (y < p.leg + 0.01)
    paint(torso, _TOP_I)
    if p.pattern == "stripes":
        paint(torso & (np.floor(y / p.period) % 2 == 1), _TOP2_I)
    elif p.pattern == "checks":
        paint(torso & ((np.floor(y / p.period) + np.floor(x / p.period)) % 2 == 1), _TOP2_I)
    elif p.pattern == "logo" and front:
        paint(_box(x, y, -0.045 * wf, 0.045 * wf, 0.19, 0.27), _TOP2_I)
    # arms: sleeve, then skin down to the hands
    sleeve_end = 0.44 if p.long_sleeves else 0.24
    arm_half = 0.023 * wf
    arm_centres = (
        [pose.swing * 0.25 * (y - 0.14)]
        if side
        else [s * (shoulder + arm_half + 0.04 * (y - 0.14)) for s in (-1, 1)]
    )
    for c in arm_centres:
        arm = (np.abs(x - c) < arm_half) & (y >= 0.14)
        paint(arm & (y < sleeve_end), _TOP_I)
        paint(arm & (y >= sleeve_end) & (y < 0.5), _SKIN_I)
    # head, hair, hat
    head_x = 0.01 * side
    head = ((x - head_x) / 0.05) ** 2 + ((y - 0.075) / 0.064) ** 2 < 1
    paint(head, _SKIN_I)
    if pose.facing == "back":
        paint(head, _HAIR_I)
    else:
        paint(head & ((y < 0.045) | ((x - head_x) * side < -0.012)), _HAIR_I)
    if p.long_hair:
        if front:
            paint((np.abs(np.abs(x) - 0.05) < 0.014) & (y > 0.05) & (y < 0.2), _HAIR_I)
        elif side:
            paint(_box(x * -side, y, 0.0, 0.058, 0.05, 0.22), _HAIR_I)
        else:
            paint(_box(x, y, -0.053, 0.053, 0.07, 0.23), _HAIR_I)
    if p.hat:
        crown = (x / 0.053) ** 2 + ((y - 0.045) / 0.05) ** 2 < 1
        brim = _box(x - 0.02 * side, y, -0.068, 0.068, 0.035, 0.048)
        paint((crown & (y < 0.045)) | brim, _HAT_I)
    # bags in front of the body
    if p.bag == "backpack" and pose.facing == "back":
        paint(_box(x, y, -0.085 * wf, 0.085 * wf, 0.16, 0.41), _BAG_I)
    elif p.bag == "backpack" and front:
        paint((np.abs(np.abs(x) - 0.06 * wf) < 0.013) & (y >= 0.135) & (y < 0.33), _BAG_I)
    elif p.bag == "shoulder":
        line = bag_side * (-0.09 + 0.2 * (y - 0.14) / 0.26) * wf
        paint((np.abs(x - line) < 0.012) & (y >= 0.135) & (y < 0.4), _BAG_I)
        paint(_box(x * bag_side, y, shoulder - 0.03, shoulder + 0.06, 0.37, 0.5), _BAG_I)
    elif p.bag == "handbag":
        paint(_box(x * bag_side, y, shoulder + 0.01, shoulder + 0.08, 0.47, 0.57), _BAG_I)
    return labels


def _box(x: np.ndarray, y: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(colour + rng.uniform(-amount, amount, size=3), 0, 255).astype(np.float32)


def _clothing_colour(rng: np.random.Generator) -> np.ndarray:
    return _jitter(rng, _CLOTHES[rng.choice(len(_CLOTHES), p=_CLOTHES_P)], 12)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A scene colour: a random hue, mostly grey."""
    grey = rng.uniform(60, 190)
    return (grey + rng.uniform(0.15, 0.5) * (rng.uniform(0, 255, size=3) - grey)).astype(np.float32)


# --- files --------------------------------------------------------------------------------------


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


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY)


_MATLAB_HEADER = (
    "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015 "
    "HDF5 schema 1.00 ."
)


class _MatWriter:
    """A MATLAB v7.3 file: HDF5 behind a 512-byte MATLAB header, cell contents in ``#refs#``.

    Objects are written without timestamps so that the same content gives the same bytes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names = (
            "".join(chars)
            for size in itertools.count(1)
            for chars in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=size)
        )

    def __enter__(self) -> _MatWriter:
        self.file = h5py.File(self.path, "w", userblock_size=512)
        self.refs = _create_group(self.file, "#refs#")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.file.close()
        if exc_type is not None:
            return
        header = _MATLAB_HEADER.encode("ascii").ljust(116, b" ") + b" " * 8 + b"\x00\x02IM"
        with open(self.path, "r+b") as f:
            f.write(header)

    def store(self, data: np.ndarray, cell: bool = False, name: str = "") -> h5py.Reference:
        """Store a uint8 array, or with `cell` an object array of references (a cell array)."""
        group = self.file if name else self.refs
        dtype = h5py.ref_dtype if cell else data.dtype
        dataset = group.create_dataset(
            name or next(self.names), data=data, dtype=dtype, track_times=False
        )
        dataset.attrs["MATLAB_class"] = np.bytes_("cell" if cell else data.dtype.name)
        return dataset.ref

    def store_empty(self) -> h5py.Reference:
        """MATLAB stores ``[]`` as its dimensions (0, 0), flagged empty."""
        dataset = self.refs.create_dataset(
            next(self.names), data=np.zeros(2, np.uint64), track_times=False
        )
        dataset.attrs["MATLAB_class"] = np.bytes_("double")
        dataset.attrs["MATLAB_empty"] = np.uint8(1)
        return dataset.ref


def _create_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A group without modification times, so that the same content gives the same bytes."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def _write_protocol_config(
    path: Path,
    keys: list[tuple[int, int, int]],
    ids_per_pair: int,
    index: dict[str, list[int]],
) -> None:
    """A new-protocol config in the real files' layout: (N, 1) columns, uint8/uint16 types."""
    n = len(keys)
    filelist = np.empty((n, 1), dtype=object)
    for i, (pair, pid, slot) in enumerate(keys):
        name = f"{pair + 1}_{pid + 1:03d}_{slot // 5 + 1}_{slot + 1:02d}.png"
        filelist[i, 0] = np.array([name])
    index_type = np.uint16 if n < 2**16 else np.uint32
    fields = {
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
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, fields, format="5")
    data = bytearray(buffer.getvalue())
    header = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015"
    data[:116] = header.ljust(116, b" ")  # savemat stamps the current time: make it fixed
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(data))


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")


def _check_range(name: str, value: tuple[int, int]) -> tuple[int, int]:
    lo, hi = (int(v) for v in value)
    if not 1 <= lo <= hi:
        raise InputError(f"{name} must be (min, max) with 1 <= min <= max, got {value}")
    return lo, hi


# --- MSMT17 -------------------------------------------------------------------------------------

# version -> (top folder, train image folder, test image folder), as in the real releases
_MSMT17_LAYOUTS = {
    "V1": ("MSMT17_V1", "train", "test"),
    "V2": ("MSMT17_V2", "mask_train_v2", "mask_test_v2"),
}
# MSMT17 was filmed on four days, each in the morning, at noon and in the afternoon
_MSMT17_DAYS = ("0113", "0222", "0302", "0303")
_MSMT17_TIMES = ("morning", "noon", "afternoon")
MSMT17_VAL_FRACTION = 0.07  # list_val.txt holds 2,373 of the 32,621 train images


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
    rng = np.random.default_rng(seed)
    h, w = MARKET_SIZE
    cams = [_random_camera(rng, px_per_unit=h) for _ in range(cameras)]
    painter = _Painter(rng, noise_size=max(h, w) + 64)
    people = _random_people(rng, num_train_ids + num_test_ids)
    groups = ((train_folder, people[:num_train_ids]), (test_folder, people[num_train_ids:]))
    lines: dict[str, list[str]] = {"train": [], "query": [], "gallery": []}

    out = Path(folder) / top
    with atomic_path(out) as tmp:
        for image_folder, group in groups:
            test = image_folder == test_folder
            for pid, person in enumerate(group):
                (tmp / image_folder / f"{pid:04d}").mkdir(parents=True)
                seen_by = np.sort(
                    rng.choice(cameras, size=rng.integers(2, min(cameras, 4) + 1), replace=False)
                )
                index = 0
                for cam in seen_by:
                    facing = rng.choice(_FACINGS, p=cams[cam].facing_p)
                    when = f"{rng.choice(_MSMT17_DAYS)}{rng.choice(_MSMT17_TIMES)}"
                    frame = int(rng.integers(1, 9000))
                    count = int(rng.integers(lo, hi + 1))
                    kinds = ["query"] * int(test) + ["gallery" if test else "train"] * count
                    for kind in kinds:
                        frame += int(rng.integers(1, 40))
                        name = f"{pid:04d}_{index:03d}_{cam + 1:02d}_{when}_{frame:04d}_0.jpg"
                        index += 1
                        pose = _random_pose(rng, cams[cam], h, w, facing)
                        image, _ = painter.render(person, cams[cam], pose, h, w)
                        _save_jpeg(image, tmp / image_folder / f"{pid:04d}" / name)
                        lines[kind].append(f"{pid:04d}/{name} {pid}\n")
        train = lines["train"]
        num_val = max(1, round(MSMT17_VAL_FRACTION * len(train)))
        is_val = np.zeros(len(train), dtype=bool)
        is_val[rng.choice(len(train), size=num_val, replace=False)] = True
        lists = {
            "list_train.txt": [line for line, val in zip(train, is_val, strict=True) if not val],
            "list_val.txt": [line for line, val in zip(train, is_val, strict=True) if val],
            "list_query.txt": lines["query"],
            "list_gallery.txt": lines["gallery"],
        }
        for name, content in lists.items():
            (tmp / name).write_text("".join(content))
    logger.info(
        "generated MSMT17_%s-style data in %s: %d train ids, %d test ids, seed %d",
        version,
        out,
        num_train_ids,
        num_test_ids,
        seed,
    )
