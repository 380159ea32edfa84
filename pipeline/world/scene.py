"""Backgrounds of the synthetic gait world: a ``studio`` and a cluttered ``wild`` scene.

Both are a floor (y = 0) and a wall behind the walking path, ray-cast once per sequence into a static
*plate* seen by the un-shaken camera. Per frame, :meth:`Background.frame` darkens the floor with the
walker's soft contact shadow and (``wild`` only) warps the plate by the camera-shake homography;
:meth:`Background.finish` then applies the frame's lighting drift and sensor noise to the composited
image, because both act on the whole picture (walker included), as they would in a real camera.

``studio``: plain wall and floor with gentle shading, no shake, no noise, no drift.
``wild``: textured wall with posters/windows/shelves/cables, tiled or speckled floor, side light,
lighting gain and colour drift, sensor noise and hand-held camera shake.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.world.camera import Camera

KINDS = ("studio", "wild")


@dataclass
class Background:
    """A static scene plate plus the per-frame effects that a sequence applies on top of it.

    ``plate`` [H + 2m, W + 2m, 3] uint8 is the empty scene seen by the un-shaken camera with a margin of
    ``margin`` pixels on every side (room for the shake warp); ``floor_xz`` holds the world (x, z) of
    the floor seen at each plate pixel (a far-away sentinel where the wall is seen), for shadows.
    """

    kind: str
    plate: np.ndarray
    floor_xz: np.ndarray
    margin: int
    light: np.ndarray  # world-frame unit direction towards the key light
    ambient: float
    shadow_strength: float
    gains: np.ndarray  # [T, 3] per-frame colour gain (lighting drift); ones for studio
    noise_sigma: float
    shake_deg: float
    noise_bank: np.ndarray | None = None  # [K, 2, H, W, 3] uint8 pre-drawn noise: positive, negative part

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames this background produces."""
        h, w = self.plate.shape[:2]
        return w - 2 * self.margin, h - 2 * self.margin

    def frame(self, t: int, camera: Camera, blobs: np.ndarray) -> np.ndarray:
        """A fresh background [H, W, 3] uint8 for frame ``t`` seen by ``camera`` (which may carry shake),
        with the soft floor shadow of ``blobs`` [k, 5] = (x, z, sx, sz, weight) in world metres."""
        w, h = self.size
        m = self.margin
        if camera.shake is None:
            frame = self.plate[m : m + h, m : m + w].copy()
        else:
            # Pure rotation: frame pixel p_t ~ K R_d K^-1 p_0, so plate pixel = K_m R_d^T K^-1 p_t.
            k = camera.K
            km = k.copy()
            km[:2, 2] += m
            delta = camera.rotations(t) @ camera.rotation.T
            homography = km @ delta.T @ np.linalg.inv(k)
            frame = cv2.warpPerspective(self.plate, homography, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        # The shadow uses the un-shaken floor coordinates: shake moves it by a pixel or two, far less
        # than its softness.
        self._shadow(frame, self.floor_xz[m : m + h, m : m + w], camera, blobs)
        return frame

    def _shadow(self, frame: np.ndarray, floor_xz: np.ndarray, camera: Camera, blobs: np.ndarray) -> None:
        if self.shadow_strength <= 0 or len(blobs) == 0:
            return
        box = _shadow_box(camera, blobs, frame.shape[:2])
        if box is None:
            return
        y0, y1, x0, x1 = box
        fx, fz = floor_xz[y0:y1, x0:x1, 0], floor_xz[y0:y1, x0:x1, 1]
        dark = np.zeros(fx.shape, np.float32)
        for x, z, sx, sz, weight in blobs:
            dark += weight * np.exp(-(((fx - x) / sx) ** 2) - ((fz - z) / sz) ** 2)
        factor = 1.0 - self.shadow_strength * np.minimum(dark, 1.0)
        frame[y0:y1, x0:x1] = (frame[y0:y1, x0:x1] * factor[..., None]).astype(np.uint8)

    def finish(self, t: int, rgb: np.ndarray) -> np.ndarray:
        """Apply frame ``t``'s lighting gain and sensor noise to a composited frame (in place when possible)."""
        gain = self.gains[min(t, len(self.gains) - 1)]
        if np.any(np.abs(gain - 1.0) > 1e-4):
            lut = np.clip(np.arange(256, dtype=np.float32)[:, None] * gain[None, :], 0, 255).astype(np.uint8)
            rgb = cv2.LUT(rgb, lut.reshape(256, 1, 3))
        if self.noise_bank is not None:
            noise = self.noise_bank[t % len(self.noise_bank)]
            rgb = cv2.add(rgb, noise[0])  # saturating adds of the positive and negative noise halves
            rgb = cv2.subtract(rgb, noise[1])
        return rgb


def _shadow_box(camera: Camera, blobs: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Pixel box that can receive shadow: the blobs' 2.5-sigma floor rectangles, projected (un-shaken)."""
    x, z, sx, sz = blobs[:, 0], blobs[:, 1], 2.5 * blobs[:, 2], 2.5 * blobs[:, 3]
    corners = np.stack(
        [np.stack([x + a * sx, np.zeros_like(x), z + b * sz], -1) for a in (-1, 1) for b in (-1, 1)], 1
    ).reshape(-1, 3)
    xy, depth = camera.with_shake_angles(None).project(corners)
    xy = xy[depth > 0.05]
    if len(xy) == 0:
        return None
    h, w = shape
    x0, y0 = np.floor(np.min(xy, 0)).astype(int)
    x1, y1 = np.ceil(np.max(xy, 0)).astype(int) + 1
    x0, x1, y0, y1 = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
    return None if x0 >= x1 or y0 >= y1 else (y0, y1, x0, x1)


# --------------------------------------------------------------------------------------------------
# geometry shared by both kinds


def _ray_cast(camera: Camera, margin: int, wall_distance: float, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per plate pixel: which surface is hit (floor / wall) and its coordinates."""
    rays = camera.rays(None, margin)  # [h, w, 3], world frame
    origin = camera.position
    fwd = camera.rotation[2].copy()
    fwd[1] = 0.0
    fwd /= np.linalg.norm(fwd)
    right = np.array([-fwd[2], 0.0, fwd[0]])  # horizontal, to the camera's right
    plane_point = target + fwd * wall_distance
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[..., 1] < -1e-6, -origin[1] / rays[..., 1], np.inf)
        t_wall = np.where(rays @ fwd > 1e-6, ((plane_point - origin) @ fwd) / (rays @ fwd), np.inf)
    floor = t_floor < t_wall
    hit = origin + rays * np.minimum(t_floor, t_wall)[..., None]
    return {
        "floor": floor,
        "floor_x": hit[..., 0],
        "floor_z": hit[..., 2],
        "wall_u": hit @ right,  # metres along the wall
        "wall_y": hit[..., 1],
        "wall_dist": np.abs((plane_point - hit) @ fwd),  # distance of a floor point from the wall
        "range": np.minimum(t_floor, t_wall) * np.linalg.norm(rays, axis=-1),
    }


def _floor_xz(geo: dict[str, np.ndarray]) -> np.ndarray:
    far = 1e4  # shadows never reach the wall: a far sentinel keeps exp() at zero without NaN checks
    x = np.where(geo["floor"], geo["floor_x"], far)
    z = np.where(geo["floor"], geo["floor_z"], far)
    return np.stack([x, z], -1).astype(np.float32)


def _margin_for(camera: Camera, shake_deg: float) -> int:
    return 0 if shake_deg <= 0 else int(np.ceil(camera.focal * np.tan(np.deg2rad(shake_deg) * 1.6))) + 3


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def _smooth_walk(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """A slow smooth random drift of length n with peak amplitude about ``amplitude``."""
    knots = rng.normal(0.0, 1.0, max(3, n // 12 + 3))
    x = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    x -= x.mean()
    return amplitude * x / max(float(np.abs(x).max()), 1e-9)


# --------------------------------------------------------------------------------------------------
# studio


def studio(
    camera: Camera,
    n_frames: int,
    rng: np.random.Generator,
    *,
    shadow_strength: float = 0.4,
    target: tuple[float, float, float] = (0.0, 0.9, 0.0),
) -> Background:
    """Plain wall and floor, softly lit, with the walker's contact shadow; static camera."""
    tgt = np.asarray(target, float)
    geo = _ray_cast(camera, 0, float(rng.uniform(2.5, 4.0)), tgt)
    hue = rng.uniform(0, 1)
    wall = _hsv(hue, rng.uniform(0.02, 0.18), rng.uniform(0.55, 0.9))
    floor = _hsv(hue + rng.uniform(-0.15, 0.15), rng.uniform(0.03, 0.25), rng.uniform(0.3, 0.6))
    # Soft light falloff: the wall darkens towards the floor corner (ambient occlusion) and with height;
    # the floor darkens with distance from the camera.
    wall_shade = 1.0 - 0.18 * np.exp(-geo["wall_y"] / 0.35) - 0.06 * np.clip(geo["wall_y"] - 2.0, 0, 2)
    floor_shade = (1.0 - 0.22 * np.exp(-geo["wall_dist"] / 0.5)) * (1.05 - 0.02 * geo["range"])
    shade = np.where(geo["floor"], floor_shade, wall_shade).astype(np.float32)
    colour = np.where(geo["floor"][..., None], floor, wall) * shade[..., None]
    plate = np.clip(colour, 0, 255).astype(np.uint8)
    light = _light_from_camera(camera, azimuth=rng.uniform(-0.5, 0.5), elevation=rng.uniform(0.5, 0.8))
    return Background(
        kind="studio",
        plate=plate,
        floor_xz=_floor_xz(geo),
        margin=0,
        light=light,
        ambient=0.5,
        shadow_strength=shadow_strength,
        gains=np.ones((max(n_frames, 1), 3), np.float32),
        noise_sigma=0.0,
        shake_deg=0.0,
    )


def _light_from_camera(camera: Camera, azimuth: float, elevation: float) -> np.ndarray:
    """Unit light direction (towards the light) rotated ``azimuth`` rad from the camera, ``elevation`` up."""
    back = -camera.rotation[2].copy()
    back[1] = 0.0
    back /= np.linalg.norm(back)
    side = np.array([-back[2], 0.0, back[0]])
    horizontal = np.cos(azimuth) * back + np.sin(azimuth) * side
    d = np.cos(elevation) * horizontal + np.array([0.0, np.sin(elevation), 0.0])
    return d / np.linalg.norm(d)


# --------------------------------------------------------------------------------------------------
# wild


@dataclass
class _Canvas:
    """A texture in metric coordinates: texel (row, col) of (h, v) metres is ((v1 - v) k, (h - h0) k)."""

    img: np.ndarray  # float32 RGB
    h0: float
    v1: float
    density: float  # texels per metre

    @classmethod
    def blank(cls, h_range: tuple[float, float], v_range: tuple[float, float], density: float) -> _Canvas:
        cols = max(int(np.ceil((h_range[1] - h_range[0]) * density)), 2)
        rows = max(int(np.ceil((v_range[1] - v_range[0]) * density)), 2)
        return cls(np.zeros((rows, cols, 3), np.float32), h_range[0], v_range[1], density)

    def px(self, h: float, v: float) -> tuple[int, int]:
        return int((h - self.h0) * self.density), int((self.v1 - v) * self.density)

    def n(self, metres: float) -> int:
        return max(int(round(metres * self.density)), 1)

    def maps(self, h: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap maps that sample this texture at metric coordinates (h, v)."""
        return ((h - self.h0) * self.density).astype(np.float32), ((self.v1 - v) * self.density).astype(np.float32)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        rows, cols = self.img.shape[:2]
        return self.h0, self.h0 + cols / self.density, self.v1 - rows / self.density, self.v1


def _random_colour(rng: np.random.Generator, s: tuple[float, float] = (0.1, 0.9), v=(0.1, 0.95)) -> tuple:
    return tuple(float(c) for c in _hsv(rng.uniform(0, 1), rng.uniform(*s), rng.uniform(*v)))


def _grime(canvas: _Canvas, rng: np.random.Generator, amount: float) -> None:
    """Multiplicative blotches (about half a metre) plus fine grain, like weathered paint or concrete."""
    img = canvas.img
    h, w = img.shape[:2]
    blotch = max(canvas.n(0.5), 2)
    coarse = cv2.resize(rng.normal(0, 1, (h // blotch + 2, w // blotch + 2)).astype(np.float32), (w, h))
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.0)
    img *= (1.0 + amount * (0.8 * coarse + 0.6 * fine))[..., None]
    np.clip(img, 0, 255, out=img)


def _wall_texture(rng: np.random.Generator, h_range, v_range, density: float) -> _Canvas:
    """A cluttered wall: a two-colour gradient, grime, and about three objects per metre of wall."""
    canvas = _Canvas.blank(h_range, v_range, density)
    top, bottom = _hsv(rng.uniform(0, 1), rng.uniform(0.05, 0.5), rng.uniform(0.35, 0.9)), _hsv(
        rng.uniform(0, 1), rng.uniform(0.05, 0.5), rng.uniform(0.25, 0.8)
    )
    ramp = np.linspace(0, 1, canvas.img.shape[0], dtype=np.float32)[:, None, None]
    canvas.img[:] = top * (1 - ramp) + bottom * ramp
    _grime(canvas, rng, 0.18)
    for _ in range(int(3.0 * (h_range[1] - h_range[0])) + 5):
        _wall_object(canvas, rng)
    _grime(canvas, rng, 0.08)
    return canvas


def _wall_object(c: _Canvas, rng: np.random.Generator) -> None:
    """One random wall item (metric sizes): poster, window, shelf with boxes, pipe, disc, scribble, band."""
    h0, h1, v0, v1 = c.extent
    colour = _random_colour(rng)
    kind = rng.choice(["poster", "window", "shelf", "pipe", "disc", "scribble", "band"])
    x, y = c.px(rng.uniform(h0, h1), rng.uniform(max(v0, 0.0), min(v1, 3.5)))
    if kind in ("poster", "window"):
        rw, rh = c.n(rng.uniform(0.3, 1.6)), c.n(rng.uniform(0.4, 2.0))
        cv2.rectangle(c.img, (x, y), (x + rw, y + rh), colour, -1)
        inner = tuple(v * rng.uniform(0.5, 1.4) for v in colour)
        if kind == "window":  # panes with a frame
            for k in range(1, 3):
                cv2.line(c.img, (x + k * rw // 3, y), (x + k * rw // 3, y + rh), inner, c.n(0.04))
            cv2.line(c.img, (x, y + rh // 2), (x + rw, y + rh // 2), inner, c.n(0.04))
        else:  # a poster with lines of 'text' and a picture
            for k in range(int(rng.integers(2, 7))):
                yy = y + c.n(0.06) + k * max(rh // 7, 2)
                cv2.rectangle(c.img, (x + c.n(0.05), yy), (x + int(rng.integers(2, max(rw, 3))), yy + c.n(0.03)),
                              inner, -1)
            cv2.circle(c.img, (x + rw // 2, y + 2 * rh // 3), max(rw // 6, 1), inner, -1)
    elif kind == "shelf":
        rw = c.n(rng.uniform(0.8, 2.5))
        cv2.rectangle(c.img, (x, y), (x + rw, y + c.n(0.06)), colour, -1)
        for _ in range(int(rng.integers(2, 8))):  # boxes and books standing on it
            bx, bh = x + int(rng.integers(0, rw)), c.n(rng.uniform(0.1, 0.4))
            cv2.rectangle(c.img, (bx, y - bh), (bx + c.n(rng.uniform(0.05, 0.3)), y), _random_colour(rng), -1)
    elif kind == "pipe":
        rows, cols = c.img.shape[:2]
        if rng.random() < 0.5:
            cv2.line(c.img, (x, 0), (x + int(rng.integers(-3, 4)), rows), colour, c.n(rng.uniform(0.02, 0.12)))
        else:
            cv2.line(c.img, (0, y), (cols, y + int(rng.integers(-5, 6))), colour, c.n(rng.uniform(0.02, 0.1)))
    elif kind == "disc":
        axes = (c.n(rng.uniform(0.1, 0.6)), c.n(rng.uniform(0.1, 0.6)))
        cv2.ellipse(c.img, (x, y), axes, 0, 0, 360, colour, -1)
    elif kind == "scribble":
        pts = np.cumsum(rng.normal(0, c.n(0.18), (int(rng.integers(4, 12)), 2)), 0) + [x, y]
        cv2.polylines(c.img, [pts.astype(np.int32)], False, colour, c.n(rng.uniform(0.01, 0.05)))
    else:
        cv2.rectangle(c.img, (0, y), (c.img.shape[1], y + c.n(rng.uniform(0.05, 0.4))), colour, -1)


def _floor_texture(rng: np.random.Generator, h_range, v_range, density: float) -> _Canvas:
    """Tiles with varied shades and grout, or plain concrete; grime; stains and litter."""
    canvas = _Canvas.blank(h_range, v_range, density)
    img = canvas.img
    base = _hsv(rng.uniform(0, 1), rng.uniform(0.02, 0.35), rng.uniform(0.25, 0.65))
    img[:] = base
    rows, cols = img.shape[:2]
    if rng.random() < 0.6:
        tile = canvas.n(rng.uniform(0.3, 0.9))
        shades = rng.uniform(0.85, 1.15, (rows // tile + 1, cols // tile + 1)).astype(np.float32)
        img *= np.repeat(np.repeat(shades, tile, 0), tile, 1)[:rows, :cols, None]
        grout = tuple(float(c) * 0.6 for c in base)
        for i in range(0, max(rows, cols), tile):
            cv2.line(img, (i, 0), (i, rows), grout, canvas.n(0.02))
            cv2.line(img, (0, i), (cols, i), grout, canvas.n(0.02))
    _grime(canvas, rng, 0.2)
    area = (h_range[1] - h_range[0]) * (v_range[1] - v_range[0])
    for _ in range(int(rng.integers(2, 5) * area / 10) + 3):
        centre = (int(rng.integers(0, cols)), int(rng.integers(0, rows)))
        axes = (canvas.n(rng.uniform(0.05, 0.4)), canvas.n(rng.uniform(0.05, 0.4)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, _random_colour(rng, (0, 0.8), (0.1, 0.9)), -1)
    return canvas


def _visible_range(values: np.ndarray, where: np.ndarray, pad: float) -> tuple[float, float]:
    """Range of ``values`` over the pixels ``where`` (padded); a tiny default range when none are seen."""
    if not where.any():
        return 0.0, 1.0
    v = values[where]
    return float(v.min()) - pad, float(v.max()) + pad


def _density(camera: Camera, nearest: float, cap: float) -> float:
    """Texels per metre close to the pixel footprint of the nearest visible point (never above ``cap``)."""
    return float(np.clip(camera.focal / max(nearest, 0.5), 8.0, cap))


def wild(
    camera: Camera,
    n_frames: int,
    rng: np.random.Generator,
    *,
    shadow_strength: float = 0.3,
    shake_deg: float = 0.35,
    noise_sigma: float = 3.0,
    drift: float = 0.15,
    target: tuple[float, float, float] = (0.0, 0.9, 0.0),
) -> Background:
    """Cluttered textured scene with lighting drift, sensor noise and camera shake.

    The wall and floor textures are generated only over what the camera can see (margin included) and
    at about the pixel density there, so the per-sequence cost stays small at any resolution.
    """
    tgt = np.asarray(target, float)
    margin = _margin_for(camera, shake_deg)
    geo = _ray_cast(camera, margin, float(rng.uniform(2.0, 5.0)), tgt)
    wall, floor = ~geo["floor"], geo["floor"]
    wall_near = float(geo["range"][wall].min()) if wall.any() else 10.0
    floor_near = float(geo["range"][floor].min()) if floor.any() else 10.0
    wall_tex = _wall_texture(
        rng, _visible_range(geo["wall_u"], wall, 0.5), _visible_range(geo["wall_y"], wall, 0.3),
        _density(camera, wall_near, 64.0),
    )  # fmt: skip
    floor_tex = _floor_texture(
        rng, _visible_range(geo["floor_x"], floor, 0.5), _visible_range(geo["floor_z"], floor, 0.5),
        _density(camera, floor_near, 48.0),
    )  # fmt: skip
    wall_img = cv2.remap(wall_tex.img, *wall_tex.maps(geo["wall_u"], geo["wall_y"]), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    floor_img = cv2.remap(floor_tex.img, *floor_tex.maps(geo["floor_x"], geo["floor_z"]), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    # A side light: a brightness ramp across the image and darkening of the far floor.
    w = geo["floor"].shape[1]
    ramp = 1.0 + rng.uniform(-0.25, 0.25) * np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    far = np.where(floor, 1.05 - 0.025 * geo["range"], 1.0).astype(np.float32)
    colour = np.where(floor[..., None], floor_img, wall_img) * (ramp * far)[..., None]
    plate = np.clip(colour, 0, 255).astype(np.uint8)
    light = _light_from_camera(camera, azimuth=rng.uniform(-1.0, 1.0), elevation=rng.uniform(0.3, 0.9))
    return Background(
        kind="wild",
        plate=plate,
        floor_xz=_floor_xz(geo),
        margin=margin,
        light=light,
        ambient=float(rng.uniform(0.4, 0.55)),
        shadow_strength=shadow_strength,
        gains=_lighting_drift(rng, n_frames, drift),
        noise_sigma=noise_sigma,
        shake_deg=shake_deg,
        noise_bank=_noise_bank(rng, camera.width, camera.height, noise_sigma),
    )


def _lighting_drift(rng: np.random.Generator, n_frames: int, drift: float) -> np.ndarray:
    """Per-frame RGB gains: a global brightness drift of ±``drift`` plus a weaker colour-temperature drift."""
    n = max(n_frames, 1)
    brightness = 1.0 + _smooth_walk(rng, n, drift)
    warmth = _smooth_walk(rng, n, drift / 3)
    return np.stack([brightness * (1 + warmth), brightness, brightness * (1 - warmth)], -1).astype(np.float32)


def _noise_bank(rng: np.random.Generator, width: int, height: int, sigma: float, k: int = 4) -> np.ndarray | None:
    """k frames of Gaussian sensor noise, split into positive and negative uint8 halves for saturating adds.

    Frames cycle through the bank: at 3 grey levels of noise nobody can tell a period of k frames.
    """
    if sigma <= 0:
        return None
    noise = np.rint(rng.standard_normal((k, height, width, 3), dtype=np.float32) * sigma).astype(np.int16)
    pos = np.clip(noise, 0, 255).astype(np.uint8)
    neg = np.clip(-noise, 0, 255).astype(np.uint8)
    return np.stack([pos, neg], 1)  # [k, 2, H, W, 3]


def make_background(kind: str, camera: Camera, n_frames: int, rng: np.random.Generator, **options) -> Background:
    """The ``kind`` ('studio' or 'wild') background for a sequence of ``n_frames`` seen by ``camera``."""
    if kind == "studio":
        return studio(camera, n_frames, rng, **options)
    if kind == "wild":
        return wild(camera, n_frames, rng, **options)
    raise ValueError(f"unknown background {kind!r}; expected one of {KINDS}")
