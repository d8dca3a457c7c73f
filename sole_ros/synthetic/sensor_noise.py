"""A Kinect-v1-like structured-light depth sensor model applied to ideal rendered depth.

What it reproduces, and where the numbers come from:
  * axial noise growing with distance and incidence angle: sigma_z(z, theta) =
    0.0012 + 0.0019 (z - 0.4)^2 + 0.0001 / sqrt(z) * theta^2 / (pi/2 - theta)^2 metres
    (Nguyen, Izadi, Lovell, "Modeling Kinect Sensor Noise", 3DIMPVT 2012);
  * lateral noise: depth is read at a pixel position jittered by a fraction of a pixel, which makes
    object silhouettes ragged;
  * quantisation: depth comes from disparity d = f b / z measured in 1/8 pixel steps
    (f = 580 px at 640 wide, baseline b = 7.5 cm; Khoshelham & Elberink 2012), so the depth step
    grows with z^2 (about 3 mm at 1 m, 2.6 cm at 3 m);
  * missing readings (0): outside the working range, grazing surfaces, the projector's shadow beside
    every foreground edge, unstable pixels on depth edges, dark (IR-absorbing) surfaces, and
    blob-shaped and isolated random dropouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class KinectNoise:
    min_range: float = 0.45
    max_range: float = 4.5
    lateral_sigma_px: float = 0.4
    disparity_step_px: float = 1.0 / 8.0
    ir_focal_px_at_640: float = 580.0
    baseline_m: float = 0.075
    grazing_start_deg: float = 70.0  # dropouts begin here and are certain at grazing_full_deg
    grazing_full_deg: float = 85.0
    edge_dropout: float = 0.5  # probability a pixel on a depth edge has no reading
    edge_jump_m: float = 0.05
    dark_albedo: float = 0.12  # luminance below which IR is absorbed
    dark_dropout: float = 0.4
    blob_fraction: float = 0.01  # share of the image covered by blob holes
    speckle_dropout: float = 0.003

    def axial_sigma(self, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        theta = np.minimum(theta, np.deg2rad(89.0))
        return (
            0.0012
            + 0.0019 * (z - 0.4) ** 2
            + 0.0001 / np.sqrt(np.maximum(z, 1e-3)) * theta**2 / (np.pi / 2 - theta) ** 2
        )

    def disparity_factor(self, width: int) -> float:
        """f * b in pixel-metres for this image width (disparity in px = factor / z)."""
        return self.ir_focal_px_at_640 * width / 640.0 * self.baseline_m

    def apply(
        self,
        depth: np.ndarray,
        cos_incidence: np.ndarray,
        albedo_luminance: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Noisy float32 depth (0 = no reading) from ideal ``depth`` (0 = nothing hit)."""
        h, w = depth.shape
        valid = depth > 0
        # Lateral noise: read each pixel from a jittered neighbour (nearest, so no mixed depths).
        dv = np.rint(rng.normal(0, self.lateral_sigma_px, (h, w))).astype(int)
        du = np.rint(rng.normal(0, self.lateral_sigma_px, (h, w))).astype(int)
        rows = np.clip(np.arange(h)[:, None] + dv, 0, h - 1)
        cols = np.clip(np.arange(w)[None, :] + du, 0, w - 1)
        z = depth[rows, cols].astype(np.float64)
        cos_i = cos_incidence[rows, cols]
        lum = albedo_luminance[rows, cols]
        valid = z > 0

        theta = np.arccos(np.clip(cos_i, 0.0, 1.0))
        z_noisy = z + rng.normal(0, 1, (h, w)) * self.axial_sigma(z, theta)
        fb = self.disparity_factor(w)
        disparity = np.where(valid, fb / np.maximum(z_noisy, 1e-3), 0.0)
        disparity_q = np.round(disparity / self.disparity_step_px) * self.disparity_step_px
        out = np.where(valid & (disparity_q > 0), fb / np.maximum(disparity_q, 1e-9), 0.0)

        missing = ~valid | (out < self.min_range) | (out > self.max_range)
        # Grazing angles: the projected pattern smears out.
        grazing = np.clip(
            (np.rad2deg(theta) - self.grazing_start_deg)
            / (self.grazing_full_deg - self.grazing_start_deg),
            0,
            1,
        )
        missing |= rng.random((h, w)) < grazing
        missing |= self._projector_shadow(np.where(valid, fb / np.maximum(z, 1e-3), 0.0))
        missing |= self._depth_edges(z, valid) & (rng.random((h, w)) < self.edge_dropout)
        missing |= (lum < self.dark_albedo) & (rng.random((h, w)) < self.dark_dropout)
        missing |= self._blobs(h, w, rng)
        missing |= rng.random((h, w)) < self.speckle_dropout
        return np.where(missing, 0.0, out).astype(np.float32)

    @staticmethod
    def _projector_shadow(disparity: np.ndarray, max_shift: int = 40) -> np.ndarray:
        """Pixels the projector cannot light: a nearer surface k pixels to the left whose disparity
        exceeds this pixel's by at least k hides it from a projector offset along +x."""
        h, w = disparity.shape
        shadow = np.zeros((h, w), dtype=bool)
        for k in range(1, min(max_shift, w)):
            shadow[:, k:] |= disparity[:, :-k] - disparity[:, k:] >= k
        return shadow & (disparity > 0)

    def _depth_edges(self, z: np.ndarray, valid: np.ndarray) -> np.ndarray:
        edges = np.zeros_like(valid)
        for axis in (0, 1):
            jump = np.abs(np.diff(z, axis=axis)) > self.edge_jump_m
            jump |= np.diff(valid.astype(np.int8), axis=axis) != 0
            if axis == 0:
                edges[1:] |= jump
                edges[:-1] |= jump
            else:
                edges[:, 1:] |= jump
                edges[:, :-1] |= jump
        return edges

    def _blobs(self, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        """Smooth random field thresholded so about ``blob_fraction`` of pixels fall in holes."""
        if self.blob_fraction <= 0:
            return np.zeros((h, w), dtype=bool)
        coarse = rng.normal(size=(h // 16 + 2, w // 16 + 2))
        # Bilinear upsampling of the coarse field gives blobs of about 16 px.
        ys = np.linspace(0, coarse.shape[0] - 1.001, h)
        xs = np.linspace(0, coarse.shape[1] - 1.001, w)
        y0, x0 = ys.astype(int), xs.astype(int)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        field = (
            (1 - fy) * (1 - fx) * coarse[y0][:, x0]
            + (1 - fy) * fx * coarse[y0][:, x0 + 1]
            + fy * (1 - fx) * coarse[y0 + 1][:, x0]
            + fy * fx * coarse[y0 + 1][:, x0 + 1]
        )
        return field > np.quantile(field, 1 - self.blob_fraction)
