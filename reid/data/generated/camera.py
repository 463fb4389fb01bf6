"""Where a generated person is seen: a camera's viewing conditions and scene, and a pose in it.

Each camera has its own light, colour cast, textured scene, scale, blur and noise, so an
untrained network is dominated by the camera. Scene coordinates are in body heights: feet at
sy = 0 (sy grows downwards), sx along the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from reid.data.generated.people import CLOTHES

SCENE_Y = (-1.7, 0.7)
SCENE_X = (-0.7, 6.7)
FACINGS = ("front", "back", "left", "right")


@dataclass(frozen=True)
class Camera:
    """Viewing conditions of one camera, with its scene drawn once at `px_per_unit`.

    `scene` covers sy in SCENE_Y and sx in SCENE_X.
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
class Pose:
    """Where the person stands in the picture (pixels) and how they face and walk."""

    top: float
    cx: float
    height: float
    facing: str
    stride: float
    swing: float
    scene_x: float


def random_camera(rng: np.random.Generator, px_per_unit: float) -> Camera:
    """A camera: light and colour cast, a textured scene with poles, blur and noise levels."""
    brightness = rng.uniform(0.6, 1.25)
    return Camera(
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


def random_pose(rng: np.random.Generator, cam: Camera, h: int, w: int, facing: str) -> Pose:
    """A detector-like crop of a walking person: scale and offset jitter around the camera's."""
    height = h * cam.scale * rng.uniform(0.92, 1.08)
    return Pose(
        top=(h - height) / 2 + rng.uniform(-0.05, 0.05) * h,
        cx=w / 2 + rng.uniform(-0.1, 0.1) * w,
        height=height,
        facing=facing,
        stride=float(rng.uniform(0, 1)),
        swing=float(rng.uniform(-1, 1)),
        scene_x=float(rng.uniform(0, 6)),
    )


def _random_scene(rng: np.random.Generator, px_per_unit: float) -> np.ndarray:
    """A wall (bands, bricks or windows) over a tiled floor, poles, soft shading: (Hs, Ws, 3)."""
    hs = int((SCENE_Y[1] - SCENE_Y[0]) * px_per_unit)
    ws = int((SCENE_X[1] - SCENE_X[0]) * px_per_unit)
    sy = SCENE_Y[0] + np.arange(hs, dtype=np.float32)[:, None] / px_per_unit
    sx = SCENE_X[0] + np.arange(ws, dtype=np.float32)[None, :] / px_per_unit
    wall, wall2, floor = (_muted_colour(rng) for _ in range(3))
    wall_mix = _wall_pattern(rng, sy, sx)[..., None]
    tile = rng.uniform(0.08, 0.25)
    tiles = (np.floor(sx / tile) + np.floor(sy / (tile / 2))) % 2
    floor_image = floor * (0.88 + 0.12 * tiles.astype(np.float32)[..., None])
    horizon = rng.uniform(-0.9, -0.1)
    image = np.where(sy[..., None] > horizon, floor_image, wall * (1 - wall_mix) + wall2 * wall_mix)
    for _ in range(int(rng.integers(0, 4))):  # poles, signs, bins: clothing-coloured clutter
        px, half = rng.uniform(SCENE_X[0], SCENE_X[1]), rng.uniform(0.02, 0.12)
        top = rng.uniform(SCENE_Y[0], -0.3)
        colour = CLOTHES[rng.integers(len(CLOTHES))] * rng.uniform(0.5, 1.0)
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


def _wall_pattern(rng: np.random.Generator, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """How much of the second wall colour shows at each point (Hs, Ws) float32: bands, bricks
    or windows."""
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
    return wall_mix.astype(np.float32)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A scene colour: a random hue, mostly grey."""
    grey = rng.uniform(60, 190)
    return (grey + rng.uniform(0.15, 0.5) * (rng.uniform(0, 255, size=3) - grey)).astype(np.float32)
