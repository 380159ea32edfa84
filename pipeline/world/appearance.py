"""Appearance of a synthetic-world identity: skin, hair, clothes, and the coat / bag covariates."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

PATTERNS = ("plain", "stripes", "checks", "dots")

# Skin tones spanning the Fitzpatrick range (sRGB), hair colours from black to blond/grey.
_SKIN = np.array([[255, 224, 196], [241, 194, 164], [224, 172, 138], [198, 134, 96], [141, 85, 54], [96, 60, 40]])
_HAIR = np.array([[20, 16, 14], [60, 40, 28], [110, 75, 45], [170, 130, 80], [200, 170, 110], [150, 150, 150]])


def _colour(rng: np.random.Generator, lo: float = 0.08, hi: float = 0.92) -> tuple[int, int, int]:
    """A clothing colour drawn in HSV so that saturations and brightnesses are plausible."""
    import colorsys

    h = rng.uniform(0, 1)
    s = rng.uniform(0.15, 0.85)
    v = rng.uniform(lo, hi)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _mix(base: np.ndarray, rng: np.random.Generator, spread: float) -> tuple[int, int, int]:
    value = np.clip(base + rng.normal(0, spread, 3), 0, 255)
    return tuple(int(v) for v in value)  # type: ignore[return-value]


@dataclass(frozen=True)
class Appearance:
    """Colours are sRGB 0-255 triples. ``hair_length`` 0 = very short … 1 = shoulder length."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_length: float
    top: tuple[int, int, int]
    top_pattern: str
    top_pattern_colour: tuple[int, int, int]
    sleeve_length: float  # 0 = sleeveless … 1 = long sleeves (fraction of the arm covered)
    bottom: tuple[int, int, int]
    trouser_length: float  # 0.35 = shorts … 1 = full length
    shoes: tuple[int, int, int]
    coat: tuple[int, int, int]  # worn only under the clothing-change covariate
    coat_thickness: float  # extra radius factor on torso and upper limbs when the coat is worn
    bag: tuple[int, int, int]  # colour of the carried bag (bag covariate)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Appearance:
        top_pattern = str(rng.choice(PATTERNS, p=[0.5, 0.2, 0.15, 0.15]))
        return cls(
            skin=_mix(_SKIN[rng.integers(len(_SKIN))], rng, 8.0),
            hair=_mix(_HAIR[rng.integers(len(_HAIR))], rng, 8.0),
            hair_length=float(rng.uniform(0.0, 1.0)),
            top=_colour(rng),
            top_pattern=top_pattern,
            top_pattern_colour=_colour(rng),
            sleeve_length=float(rng.choice([0.3, 0.6, 1.0], p=[0.4, 0.2, 0.4])),
            bottom=_colour(rng, 0.08, 0.6),
            trouser_length=float(rng.choice([0.4, 1.0], p=[0.2, 0.8])),
            shoes=_colour(rng, 0.05, 0.5),
            coat=_colour(rng, 0.1, 0.7),
            coat_thickness=float(rng.uniform(1.15, 1.35)),
            bag=_colour(rng, 0.1, 0.8),
        )

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> Appearance:
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"Appearance: unknown fields {sorted(unknown)}")
        return cls(**{k: (tuple(int(c) for c in v) if isinstance(v, list | tuple) else v) for k, v in values.items()})
