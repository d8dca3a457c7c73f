"""Geometric primitives the synthetic scenes are built from.

Every primitive answers three questions, vectorised over many rays or points:
  * ``intersect(origins, dirs)``: distance along each ray to the first surface hit (inf where none)
    and the surface normal there, so frames can be rendered by exact ray casting;
  * ``sample_surface(n, rng)``: points uniformly spread over the surface with their normals, so the
    same geometry gives the scene's point cloud;
  * ``contains(points)``: inside the solid, so surface samples hidden inside another solid
    (a bottle's neck base inside its body) can be dropped.

Primitives only rotate about the world z axis (yaw): objects stand upright on tables and floors,
which keeps the intersection code short and exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sole_ros.geometry import yaw_matrix

_EPS = 1e-9


@dataclass
class Primitive:
    """Base: a solid or a shell with a yaw rotation and a constant albedo (RGB in [0, 1])."""

    center: np.ndarray
    yaw: float = 0.0
    albedo: tuple[float, float, float] = (0.5, 0.5, 0.5)
    _rot: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.center = np.asarray(self.center, dtype=np.float64)
        self._rot = yaw_matrix(self.yaw)

    # World <-> local frame (local: centred, axis-aligned).
    def _to_local(self, points: np.ndarray) -> np.ndarray:
        return (points - self.center) @ self._rot

    def _dir_to_local(self, dirs: np.ndarray) -> np.ndarray:
        return dirs @ self._rot

    def _dir_to_world(self, dirs: np.ndarray) -> np.ndarray:
        return dirs @ self._rot.T

    def _to_world(self, points: np.ndarray) -> np.ndarray:
        return points @ self._rot.T + self.center

    # Interface.
    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        raise NotImplementedError

    def area(self) -> float:
        raise NotImplementedError

    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def sample_surface(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def contains(self, points: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Box(Primitive):
    """A solid box; ``size`` is the full extent along its local x, y, z."""

    size: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        super().__post_init__()
        self.half = np.asarray(self.size, dtype=np.float64) / 2

    def bounding_sphere(self):
        return self.center, float(np.linalg.norm(self.half))

    def _face_areas(self) -> np.ndarray:
        sx, sy, sz = 2 * self.half
        return np.array([sy * sz, sy * sz, sx * sz, sx * sz, sx * sy, sx * sy])

    def area(self):
        return float(self._face_areas().sum())

    def intersect(self, origins, dirs):
        o = self._to_local(origins)
        d = self._dir_to_local(dirs)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / np.where(np.abs(d) < _EPS, _EPS, d)
            t1 = (-self.half - o) * inv
            t2 = (self.half - o) * inv
        t_near = np.minimum(t1, t2)
        t_far = np.maximum(t1, t2)
        t_enter = t_near.max(axis=1)
        t_exit = t_far.min(axis=1)
        # Rays starting inside see the far face (not needed for cameras, kept for correctness).
        t = np.where(t_enter > 0, t_enter, t_exit)
        hit = (t_enter <= t_exit) & (t > 0)
        axis = np.where(t_enter > 0, t_near.argmax(axis=1), t_far.argmin(axis=1))
        normal_local = np.zeros_like(o)
        rows = np.arange(len(o))
        normal_local[rows, axis] = -np.sign(d[rows, axis])
        return np.where(hit, t, np.inf), self._dir_to_world(normal_local)

    def sample_surface(self, n, rng):
        areas = self._face_areas()
        face = rng.choice(6, size=n, p=areas / areas.sum())
        uv = rng.uniform(-1.0, 1.0, size=(n, 3)) * self.half
        axis = face // 2
        sign = np.where(face % 2 == 0, -1.0, 1.0)
        rows = np.arange(n)
        uv[rows, axis] = sign * self.half[axis]
        normals = np.zeros((n, 3))
        normals[rows, axis] = sign
        return self._to_world(uv), self._dir_to_world(normals)

    def contains(self, points):
        return np.all(np.abs(self._to_local(points)) < self.half - 1e-6, axis=1)


@dataclass
class Cylinder(Primitive):
    """An upright cylinder centred at ``center``; ``open_top`` makes it a cup (side + bottom only),
    so a ray entering from above sees the inner wall and the floor of the cup."""

    radius: float = 0.05
    height: float = 0.1
    open_top: bool = False

    def bounding_sphere(self):
        return self.center, float(np.hypot(self.radius, self.height / 2))

    def _part_areas(self) -> np.ndarray:
        cap = np.pi * self.radius**2
        return np.array([2 * np.pi * self.radius * self.height, cap, 0.0 if self.open_top else cap])

    def area(self):
        return float(self._part_areas().sum())

    def intersect(self, origins, dirs):
        o = origins - self.center  # yaw is irrelevant for a body of revolution
        d = dirs
        h = self.height / 2
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = 2 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1])
        c = o[:, 0] ** 2 + o[:, 1] ** 2 - self.radius**2
        disc = b * b - 4 * a * c
        ok = (disc >= 0) & (a > _EPS)
        sq = np.sqrt(np.where(ok, disc, 0.0))
        a_safe = np.where(a > _EPS, a, 1.0)
        best_t = np.full(len(o), np.inf)
        best_n = np.zeros_like(o)
        for root in ((-b - sq) / (2 * a_safe), (-b + sq) / (2 * a_safe)):
            z = o[:, 2] + root * d[:, 2]
            valid = ok & (root > 1e-7) & (np.abs(z) <= h) & (root < best_t)
            p = o + root[:, None] * d
            n = np.stack([p[:, 0], p[:, 1], np.zeros(len(o))], axis=1) / self.radius
            # The inner wall faces inwards: flip the normal towards the ray.
            n = np.where((np.sum(n * d, axis=1) > 0)[:, None], -n, n)
            best_t = np.where(valid, root, best_t)
            best_n = np.where(valid[:, None], n, best_n)
        caps = [(-h, -1.0)] if self.open_top else [(-h, -1.0), (h, 1.0)]
        for zc, nz in caps:
            with np.errstate(divide="ignore", invalid="ignore"):
                tc = (zc - o[:, 2]) / np.where(np.abs(d[:, 2]) < _EPS, _EPS, d[:, 2])
            p = o + tc[:, None] * d
            valid = (tc > 1e-7) & (p[:, 0] ** 2 + p[:, 1] ** 2 <= self.radius**2) & (tc < best_t)
            n = np.zeros_like(o)
            n[:, 2] = np.where(d[:, 2] * nz > 0, -nz, nz)
            best_t = np.where(valid, tc, best_t)
            best_n = np.where(valid[:, None], n, best_n)
        return best_t, best_n

    def sample_surface(self, n, rng):
        areas = self._part_areas()
        part = rng.choice(3, size=n, p=areas / areas.sum())
        theta = rng.uniform(0, 2 * np.pi, n)
        h = self.height / 2
        # Side: uniform angle and height; caps: uniform over the disk (sqrt radius).
        r = np.where(part == 0, self.radius, self.radius * np.sqrt(rng.uniform(0, 1, n)))
        z = np.where(part == 0, rng.uniform(-h, h, n), np.where(part == 1, -h, h))
        pts = np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=1)
        normals = np.where(
            (part == 0)[:, None],
            np.stack([np.cos(theta), np.sin(theta), np.zeros(n)], axis=1),
            np.stack([np.zeros(n), np.zeros(n), np.where(part == 1, -1.0, 1.0)], axis=1),
        )
        return pts + self.center, normals

    def contains(self, points):
        if self.open_top:
            return np.zeros(len(points), dtype=bool)  # a shell has no inside
        p = points - self.center
        return (p[:, 0] ** 2 + p[:, 1] ** 2 < (self.radius - 1e-6) ** 2) & (
            np.abs(p[:, 2]) < self.height / 2 - 1e-6
        )


@dataclass
class Sphere(Primitive):
    """A sphere; with ``z_max`` (relative to the centre) it is cut into an open shell (a bowl)."""

    radius: float = 0.05
    z_max: float | None = None

    def bounding_sphere(self):
        return self.center, float(self.radius)

    def _cap_fraction(self) -> float:
        # Area of a sphere below height z_max is 2*pi*r*(r + z_max): a fraction (r + z)/(2r).
        if self.z_max is None:
            return 1.0
        return float(np.clip((self.radius + self.z_max) / (2 * self.radius), 0.0, 1.0))

    def area(self):
        return 4 * np.pi * self.radius**2 * self._cap_fraction()

    def intersect(self, origins, dirs):
        o = origins - self.center
        b = np.sum(o * dirs, axis=1)
        c = np.sum(o * o, axis=1) - self.radius**2
        disc = b * b - c
        ok = disc >= 0
        sq = np.sqrt(np.where(ok, disc, 0.0))
        best_t = np.full(len(o), np.inf)
        best_n = np.zeros_like(o)
        for root in (-b - sq, -b + sq):
            p = o + root[:, None] * dirs
            valid = ok & (root > 1e-7) & (root < best_t)
            if self.z_max is not None:
                valid &= p[:, 2] <= self.z_max
            n = p / self.radius
            n = np.where((np.sum(n * dirs, axis=1) > 0)[:, None], -n, n)
            best_t = np.where(valid, root, best_t)
            best_n = np.where(valid[:, None], n, best_n)
        return best_t, best_n

    def sample_surface(self, n, rng):
        # Uniform on the sphere: z uniform in [-r, z_max] (Archimedes), angle uniform.
        z_top = self.radius if self.z_max is None else min(self.z_max, self.radius)
        z = rng.uniform(-self.radius, z_top, n)
        theta = rng.uniform(0, 2 * np.pi, n)
        rho = np.sqrt(np.maximum(self.radius**2 - z**2, 0.0))
        pts = np.stack([rho * np.cos(theta), rho * np.sin(theta), z], axis=1)
        return pts + self.center, pts / self.radius

    def contains(self, points):
        if self.z_max is not None:
            return np.zeros(len(points), dtype=bool)
        return np.sum((points - self.center) ** 2, axis=1) < (self.radius - 1e-6) ** 2
