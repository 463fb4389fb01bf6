"""A generated person's body as a label map: each pixel names the palette entry it shows.

The body is painted back to front, each step over the last: a backpack seen from the side
(behind the body), legs and the bottom garment, the torso and its pattern, arms, head, hair
and hat, then the bags in front. The map is pure geometry (no random draws): the colours come
from the person's palette when the picture is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid.data.generated.camera import Pose
from reid.data.generated.people import Person

# palette indices of the label map (the order of `palette` in Painter.render)
SKIN_I, HAIR_I, TOP_I, TOP2_I, BOTTOM_I, SHOES_I, BAG_I, HAT_I = range(8)


@dataclass(frozen=True)
class _Canvas:
    """The label map being painted, its pixels' coordinates (see draw_person), the body's
    measures."""

    labels: np.ndarray  # (h, w) int8, -1: not body
    y: np.ndarray
    x: np.ndarray
    person: Person
    pose: Pose
    side: int  # the way a side view faces: -1 left, +1 right, 0 front or back
    width: float  # the body's width as seen: narrower from the side
    bag_side: int  # the side the bag hangs on in the picture

    @property
    def front(self) -> bool:
        return self.pose.facing == "front"

    @property
    def shoulder(self) -> float:
        return 0.12 * self.width

    @property
    def waist(self) -> float:
        return 0.1 * self.width

    def paint(self, region: np.ndarray, index: int) -> None:
        self.labels[region] = index


def draw_person(p: Person, pose: Pose, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Paint `p` back to front into a label map (h, w) int8 of palette indices (-1: not body).

    `y` (h, 1) runs from 0 at the top of the head to 1 at the soles, `x` (1, w) is the
    horizontal distance from the body axis, both in body heights.
    """
    side = {"left": -1, "right": 1}.get(pose.facing, 0)
    front = pose.facing == "front"
    # Seen from behind, the person's left is on the picture's left: mirror the bag side.
    bag_side = p.bag_side * (1 if front else -1) if side == 0 else -side
    canvas = _Canvas(
        labels=np.full((y.shape[0], x.shape[1]), -1, dtype=np.int8),
        y=y, x=x, person=p, pose=pose, side=side,
        width=p.width * (0.72 if side else 1.0), bag_side=bag_side,
    )  # fmt: skip
    for step in (_backpack_behind, _legs, _torso, _arms, _head, _bags_in_front):
        step(canvas)
    return canvas.labels


def _backpack_behind(c: _Canvas) -> None:
    """A backpack seen from the side hangs behind the body."""
    if c.person.bag == "backpack" and c.side:
        c.paint(_box(c.x * -c.side, c.y, c.shoulder - 0.02, c.shoulder + 0.07, 0.16, 0.42), BAG_I)


def _legs(c: _Canvas) -> None:
    """Legs, shoes and the bottom garment (trousers, shorts or a skirt)."""
    p, x, y, side, wf = c.person, c.x, c.y, c.side, c.width
    t = np.clip((y - p.leg) / (0.95 - p.leg), 0, 1)
    if side:
        centres = (side * c.pose.stride * 0.1 * t, -side * c.pose.stride * 0.1 * t)
    else:
        spread = 0.045 * wf + 0.012 * c.pose.stride * t
        centres = (-spread, spread)
    leg_half = 0.034 * wf * (1 - 0.25 * t)
    legs = np.zeros(c.labels.shape, dtype=bool)
    for centre in centres:
        legs |= (np.abs(x - centre) < leg_half) & (y >= p.leg) & (y < 0.955)
        shoe_c = centre + 0.012 * side
        c.paint(_box(x - shoe_c, y, -0.04 * wf, 0.04 * wf, 0.935, 0.995), SHOES_I)
    hips = _box(x, y, -c.waist, c.waist, p.leg - 0.01, p.leg + 0.06)
    if p.bottom_style == "trousers":
        c.paint(legs | hips, BOTTOM_I)
    elif p.bottom_style == "shorts":
        c.paint(legs & (t > 0.42), SKIN_I)
        c.paint((legs & (t <= 0.42)) | hips, BOTTOM_I)
    else:
        c.paint(legs, SKIN_I)
        flare = c.waist + 0.25 * np.clip(y - p.leg, 0, None)
        c.paint((np.abs(x) < flare) & (y >= p.leg - 0.01) & (y < p.leg + 0.2), BOTTOM_I)


def _torso(c: _Canvas) -> None:
    """The torso with its pattern, rounded shoulders; a logo shows from the front only."""
    p, x, y = c.person, c.x, c.y
    frac = np.clip((y - 0.135) / (p.leg - 0.135), 0, 1)
    half = c.shoulder + (c.waist - c.shoulder) * frac - np.clip(0.16 - y, 0, None) * 1.5
    torso = (np.abs(x) < half) & (y >= 0.135) & (y < p.leg + 0.01)
    c.paint(torso, TOP_I)
    if p.pattern == "stripes":
        c.paint(torso & (np.floor(y / p.period) % 2 == 1), TOP2_I)
    elif p.pattern == "checks":
        c.paint(torso & ((np.floor(y / p.period) + np.floor(x / p.period)) % 2 == 1), TOP2_I)
    elif p.pattern == "logo" and c.front:
        c.paint(_box(x, y, -0.045 * c.width, 0.045 * c.width, 0.19, 0.27), TOP2_I)


def _arms(c: _Canvas) -> None:
    """Arms: the sleeve, then skin down to the hands; one swinging arm seen from the side."""
    y = c.y
    sleeve_end = 0.44 if c.person.long_sleeves else 0.24
    arm_half = 0.023 * c.width
    arm_centres = (
        [c.pose.swing * 0.25 * (y - 0.14)]
        if c.side
        else [s * (c.shoulder + arm_half + 0.04 * (y - 0.14)) for s in (-1, 1)]
    )
    for centre in arm_centres:
        arm = (np.abs(c.x - centre) < arm_half) & (y >= 0.14)
        c.paint(arm & (y < sleeve_end), TOP_I)
        c.paint(arm & (y >= sleeve_end) & (y < 0.5), SKIN_I)


def _head(c: _Canvas) -> None:
    """Head, hair (all of it seen from behind), long hair, hat."""
    p, x, y, side = c.person, c.x, c.y, c.side
    head_x = 0.01 * side
    head = ((x - head_x) / 0.05) ** 2 + ((y - 0.075) / 0.064) ** 2 < 1
    c.paint(head, SKIN_I)
    if c.pose.facing == "back":
        c.paint(head, HAIR_I)
    else:
        c.paint(head & ((y < 0.045) | ((x - head_x) * side < -0.012)), HAIR_I)
    if p.long_hair:
        if c.front:
            c.paint((np.abs(np.abs(x) - 0.05) < 0.014) & (y > 0.05) & (y < 0.2), HAIR_I)
        elif side:
            c.paint(_box(x * -side, y, 0.0, 0.058, 0.05, 0.22), HAIR_I)
        else:
            c.paint(_box(x, y, -0.053, 0.053, 0.07, 0.23), HAIR_I)
    if p.hat:
        crown = (x / 0.053) ** 2 + ((y - 0.045) / 0.05) ** 2 < 1
        brim = _box(x - 0.02 * side, y, -0.068, 0.068, 0.035, 0.048)
        c.paint((crown & (y < 0.045)) | brim, HAT_I)


def _bags_in_front(c: _Canvas) -> None:
    """A backpack seen from behind (or its straps from the front), a shoulder bag, a handbag."""
    p, x, y, wf, bag_side = c.person, c.x, c.y, c.width, c.bag_side
    if p.bag == "backpack" and c.pose.facing == "back":
        c.paint(_box(x, y, -0.085 * wf, 0.085 * wf, 0.16, 0.41), BAG_I)
    elif p.bag == "backpack" and c.front:
        c.paint((np.abs(np.abs(x) - 0.06 * wf) < 0.013) & (y >= 0.135) & (y < 0.33), BAG_I)
    elif p.bag == "shoulder":
        line = bag_side * (-0.09 + 0.2 * (y - 0.14) / 0.26) * wf
        c.paint((np.abs(x - line) < 0.012) & (y >= 0.135) & (y < 0.4), BAG_I)
        c.paint(_box(x * bag_side, y, c.shoulder - 0.03, c.shoulder + 0.06, 0.37, 0.5), BAG_I)
    elif p.bag == "handbag":
        c.paint(_box(x * bag_side, y, c.shoulder + 0.01, c.shoulder + 0.08, 0.47, 0.57), BAG_I)


def _box(x: np.ndarray, y: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
