"""A static perspective pinhole camera placed like a gait-dataset camera (CASIA-B view convention).

World frame (see :mod:`pipeline.world.body`): X = the walking direction, Y = up, Z = the walker's right,
metres, floor at y = 0. Camera frame (OpenCV): x right, y down, z forward along the optical axis; pixel
coordinates put the *centre* of pixel (col, row) at (col, row), so the principal point of a centred
camera is ((width - 1) / 2, (height - 1) / 2).

View angle θ (degrees) places the camera at ``target + distance · (cos θ, 0, sin θ)`` (plus height):
θ = 0 the walker comes towards the camera, θ = 90 the camera looks at the walker's right side and the
walker crosses the image left → right, θ = 180 the walker walks away.

Camera shake is a small per-frame rotation about the fixed camera centre (hand-held jitter). Because it
is a pure rotation, the background moves by an exact homography, which :mod:`pipeline.world.scene`
uses to warp its static plate instead of re-rendering it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


def _rotation_xyz(angles: np.ndarray) -> np.ndarray:
    """Rotations [..., 3, 3] from small camera-frame angles [..., 3] = (pitch about x, yaw about y, roll about z)."""
    a, b, c = np.moveaxis(np.asarray(angles, dtype=float), -1, 0)
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    one, zero = np.ones_like(a), np.zeros_like(a)
    rx = np.stack([one, zero, zero, zero, ca, -sa, zero, sa, ca], -1).reshape(*a.shape, 3, 3)
    ry = np.stack([cb, zero, sb, zero, one, zero, -sb, zero, cb], -1).reshape(*a.shape, 3, 3)
    rz = np.stack([cc, -sc, zero, sc, cc, zero, zero, zero, one], -1).reshape(*a.shape, 3, 3)
    return rz @ ry @ rx


@dataclass(frozen=True)
class Camera:
    """Pinhole camera. ``rotation`` maps world to camera axes (rows: right, down, forward).

    ``shake`` is None for a perfectly static camera, else per-frame camera-frame rotations [T, 3] (rad,
    pitch/yaw/roll) applied on top of ``rotation``; frame-aware methods take a frame index (or indices).
    """

    width: int
    height: int
    focal: float
    position: np.ndarray
    rotation: np.ndarray
    shake: np.ndarray | None = None

    # ----------------------------------------------------------------------------------------------
    # construction
    @classmethod
    def look_at(
        cls,
        width: int,
        height: int,
        focal: float,
        position: np.ndarray | tuple[float, float, float],
        target: np.ndarray | tuple[float, float, float],
        up: tuple[float, float, float] = (0.0, 1.0, 0.0),
    ) -> Camera:
        pos = np.asarray(position, dtype=float)
        fwd = np.asarray(target, dtype=float) - pos
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, np.asarray(up, dtype=float))
        norm = np.linalg.norm(right)
        if norm < 1e-9:
            raise ValueError("Camera.look_at: the viewing direction is parallel to 'up'")
        right /= norm
        down = np.cross(fwd, right)
        return cls(int(width), int(height), float(focal), pos, np.stack([right, down, fwd]))

    @classmethod
    def for_view(
        cls,
        view_deg: float,
        width: int = 256,
        height: int = 192,
        distance_m: float = 6.0,
        height_m: float = 1.1,
        fov_deg: float = 45.0,
        target: np.ndarray | tuple[float, float, float] = (0.0, 0.9, 0.0),
    ) -> Camera:
        """A dataset-style camera: ``distance_m`` horizontally from ``target`` at angle ``view_deg``.

        ``fov_deg`` is the horizontal field of view; ``target`` is the point on the walking path the camera
        aims at (default: hip height at the path origin), so the walker walks through the field of view.
        """
        theta = np.deg2rad(view_deg)
        tgt = np.asarray(target, dtype=float)
        pos = np.array([tgt[0] + distance_m * np.cos(theta), height_m, tgt[2] + distance_m * np.sin(theta)])
        focal = 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2.0)
        return cls.look_at(width, height, focal, pos, tgt)

    def with_shake(self, rng: np.random.Generator, n_frames: int, amplitude_deg: float = 0.4) -> Camera:
        """A copy that jitters like a hand-held camera: a smoothed random walk of about ``amplitude_deg``."""
        steps = rng.normal(0.0, 1.0, (n_frames + 8, 3))
        kernel = np.hanning(9)
        smooth = np.stack([np.convolve(steps[:, k], kernel, mode="valid") for k in range(3)], -1)[:n_frames]
        smooth -= smooth.mean(0)
        scale = np.deg2rad(amplitude_deg) / max(float(np.abs(smooth).max()), 1e-9)
        smooth *= scale * np.array([1.0, 1.0, 0.5])  # roll is steadier than pitch/yaw when hand-held
        return self.with_shake_angles(smooth)

    def with_shake_angles(self, angles: np.ndarray | None) -> Camera:
        return replace(self, shake=None if angles is None else np.asarray(angles, dtype=float))

    # ----------------------------------------------------------------------------------------------
    # matrices
    @property
    def principal_point(self) -> tuple[float, float]:
        return (self.width - 1) / 2.0, (self.height - 1) / 2.0

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the conventional name of the intrinsic matrix
        cx, cy = self.principal_point
        return np.array([[self.focal, 0.0, cx], [0.0, self.focal, cy], [0.0, 0.0, 1.0]])

    def rotations(self, frames: int | np.ndarray | None = None) -> np.ndarray:
        """World→camera rotation at ``frames`` ([3, 3] for an int or None, [T, 3, 3] for an array)."""
        if self.shake is None or frames is None:
            base = self.rotation
            return base if frames is None or np.ndim(frames) == 0 else np.broadcast_to(base, (len(frames), 3, 3))
        delta = _rotation_xyz(self.shake[np.asarray(frames)])
        return delta @ self.rotation

    def extrinsics(self, frames: int | np.ndarray | None = None) -> np.ndarray:
        """[R | t] ([3, 4] or [T, 3, 4]) with x_cam = R x_world + t."""
        rot = self.rotations(frames)
        t = -rot @ self.position
        return np.concatenate([rot, t[..., None]], -1)

    def projection_matrix(self, frames: int | np.ndarray | None = None) -> np.ndarray:
        """P = K [R | t] ([3, 4] or [T, 3, 4]): homogeneous world point → homogeneous pixel."""
        return self.K @ self.extrinsics(frames)

    # ----------------------------------------------------------------------------------------------
    # projection
    def to_camera(self, points: np.ndarray, frames: int | np.ndarray | None = None) -> np.ndarray:
        """Camera-frame coordinates of world ``points`` [..., 3]; with a frame array the leading axis is time."""
        rel = np.asarray(points, dtype=float) - self.position
        rot = self.rotations(frames)
        if rot.ndim == 2:
            return rel @ rot.T
        extra = rel.ndim - 2  # broadcast each frame's rotation over the points of that frame
        rot = rot.reshape(rot.shape[0], *([1] * extra), 3, 3)
        return np.einsum("...ij,...j->...i", rot, rel)

    def project(
        self, points: np.ndarray, frames: int | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates [..., 2] and depth along the optical axis [...] of world ``points`` [..., 3].

        Points behind the camera (depth ≤ 0) get NaN pixel coordinates.
        """
        cam = self.to_camera(points, frames)
        depth = cam[..., 2]
        cx, cy = self.principal_point
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(depth > 1e-9, 1.0 / depth, np.nan)
        xy = np.stack([cam[..., 0] * inv * self.focal + cx, cam[..., 1] * inv * self.focal + cy], -1)
        return xy, depth

    def rays(self, frames: int | None = None, margin: int = 0) -> np.ndarray:
        """World-frame ray directions [H + 2m, W + 2m, 3] (unnormalised, unit depth) through every pixel."""
        cx, cy = self.principal_point
        cols = np.arange(-margin, self.width + margin, dtype=float)
        rows = np.arange(-margin, self.height + margin, dtype=float)
        x = (cols[None, :] - cx) / self.focal
        y = (rows[:, None] - cy) / self.focal
        cam = np.stack(np.broadcast_arrays(x, y, np.ones_like(x * y)), -1)
        return cam @ self.rotations(frames)  # row vectors: cam @ R == (R^T cam^T)^T
