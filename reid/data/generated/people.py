"""Who a generated person is: clothing, build and accessories, drawn at random; look-alikes.

An identity is a set of attributes; about a quarter of the identities copy an earlier one but
for one attribute group, so colour alone does not tell two people apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

LOOKALIKE_FRACTION = 0.25

# Clothing palette (RGB) and the relative frequency of each colour (dark clothes are common).
# fmt: off
CLOTHES = np.array(
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

# attribute groups a look-alike changes together
_LOOKALIKE_GROUPS = {
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


@dataclass(frozen=True)
class Person:
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


def random_people(rng: np.random.Generator, count: int) -> list[Person]:
    """`count` identities; about a quarter copy an earlier one but for one attribute."""
    people: list[Person] = []
    for _ in range(count):
        if people and rng.random() < LOOKALIKE_FRACTION:
            people.append(_lookalike(rng, people[int(rng.integers(len(people)))]))
        else:
            people.append(random_person(rng))
    return people


def random_person(rng: np.random.Generator) -> Person:
    """One identity, its attributes drawn independently."""
    top_i, top2_i = rng.choice(len(CLOTHES), size=2, replace=False, p=_CLOTHES_P)
    return Person(
        skin=_jitter(rng, _SKIN[rng.integers(len(_SKIN))], 8),
        hair=_jitter(rng, _HAIR[rng.integers(len(_HAIR))], 8),
        long_hair=bool(rng.random() < 0.3),
        top=_jitter(rng, CLOTHES[top_i], 12),
        top2=_jitter(rng, CLOTHES[top2_i], 12),
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


def _lookalike(rng: np.random.Generator, person: Person) -> Person:
    """A copy of `person` differing in one attribute group (a hard negative)."""
    other = random_person(rng)
    names = list(_LOOKALIKE_GROUPS)
    changed = _LOOKALIKE_GROUPS[names[int(rng.integers(len(names)))]]
    if changed == ("hat", "hat_color"):
        return replace(person, hat=not person.hat, hat_color=other.hat_color)
    if changed == ("long_sleeves",):
        return replace(person, long_sleeves=not person.long_sleeves)
    if changed == ("pattern", "top2", "period") and other.pattern == person.pattern:
        other = replace(other, pattern=_PATTERNS[(_PATTERNS.index(person.pattern) + 1) % 4])
    if changed == ("bag", "bag_color", "bag_side") and other.bag == person.bag == "none":
        other = replace(other, bag="backpack")
    return replace(person, **{name: getattr(other, name) for name in changed})


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(colour + rng.uniform(-amount, amount, size=3), 0, 255).astype(np.float32)


def _clothing_colour(rng: np.random.Generator) -> np.ndarray:
    return _jitter(rng, CLOTHES[rng.choice(len(CLOTHES), p=_CLOTHES_P)], 12)
