"""Rendering: a person (or only the background) into a camera's picture, as a detector crops it.

The painter draws the body's label map over the camera's scene, then applies the camera's
light, blur and noise. It owns the dataset's random generator, so every picture continues the
one sequence of draws.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image, ImageFilter

from reid.data.generated.body import draw_person
from reid.data.generated.camera import FACINGS, SCENE_X, SCENE_Y, Camera, Pose, random_pose
from reid.data.generated.people import Person, random_person


class Painter:
    """Draws people into camera pictures; owns the random generator and a pool of pixel noise."""

    def __init__(self, rng: np.random.Generator, noise_size: int) -> None:
        self.rng = rng
        self.noise = rng.standard_normal((noise_size, noise_size, 3), dtype=np.float32)

    def photo(self, person: Person, cam: Camera, facing: str, h: int, w: int) -> np.ndarray:
        """A (h, w, 3) uint8 detector-like crop of `person` walking past `cam`."""
        pose = random_pose(self.rng, cam, h, w, facing)
        image, _ = self.render(person, cam, pose, h, w)
        return image

    def render(
        self, person: Person | None, cam: Camera, pose: Pose, h: int, w: int
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
            labels = draw_person(person, pose, y, x)
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

    def oddity(self, cam: Camera, h: int, w: int, junk: bool) -> np.ndarray:
        """A distractor (pid 0: background, a part of a body) or junk (pid -1: a cut-off person)."""
        rng = self.rng
        pose = random_pose(rng, cam, h, w, str(rng.choice(FACINGS)))
        person: Person | None = random_person(rng)
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
        self, person: Person, cam: Camera, facing: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame, cropped twice: (tight 'labeled' crop, looser jittered 'detected' crop)."""
        rng = self.rng
        height = rng.uniform(150, 270) * (0.9 + 0.1 * person.width)
        h, w = int(height * 1.5), int(height * 0.8)
        pose = Pose(
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
