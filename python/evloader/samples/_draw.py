# SPDX-License-Identifier: Apache-2.0
"""Procedural pictures of the simulated scenes: textured sprites (car, pedestrian, two wheeler, bushes) and
street backgrounds, all in log intensity, drawn with numpy only.

Sprites are drawn at twice their resolution with hard-edged shapes and averaged down, which gives
anti-aliased alpha edges; they are stored premultiplied (value * alpha) with a mip pyramid, so that the
renderer can place them at any scale and sub-pixel position without aliasing (aliasing would make a moving
texture shimmer and fire spurious events).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

# Height in sprite pixels of an object's physical height; screen sizes above this are upsampled.
SPRITE_HEIGHT = 80
_SS = 2  # supersampling factor of the drawing


# --- textures ------------------------------------------------------------------------------------------------
def upsample_bilinear(small: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a coarse grid to (height, width), corners aligned."""
    sh, sw = small.shape
    ys = np.linspace(0, sh - 1, height, dtype=np.float32)
    xs = np.linspace(0, sw - 1, width, dtype=np.float32)
    y0 = np.minimum(ys.astype(np.int64), sh - 2) if sh > 1 else np.zeros(height, np.int64)
    x0 = np.minimum(xs.astype(np.int64), sw - 2) if sw > 1 else np.zeros(width, np.int64)
    fy = (ys - y0)[:, None] if sh > 1 else np.zeros((height, 1), np.float32)
    fx = (xs - x0)[None, :] if sw > 1 else np.zeros((1, width), np.float32)
    y1 = np.minimum(y0 + 1, sh - 1)
    x1 = np.minimum(x0 + 1, sw - 1)
    top = small[y0][:, x0] * (1 - fx) + small[y0][:, x1] * fx
    bottom = small[y1][:, x0] * (1 - fx) + small[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in about [-1, 1]: features of ``cell`` pixels and finer octaves."""
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh = max(2, int(math.ceil(height / cell)) + 1)
        gw = max(2, int(math.ceil(width / cell)) + 1)
        out += amp * upsample_bilinear(rng.uniform(-1, 1, (gh, gw)).astype(np.float32), height, width)
        total += amp
        amp *= 0.5
        cell = max(1.0, cell / 2)
    return out / total


# --- shapes on a supersampled grid ------------------------------------------------------------------------------
class Canvas:
    """A sprite being drawn: coordinates are in sprite pixels (floats), painting is supersampled."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        h, w = height * _SS, width * _SS
        self.y = ((np.arange(h, dtype=np.float32) + 0.5) / _SS)[:, None]
        self.x = ((np.arange(w, dtype=np.float32) + 0.5) / _SS)[None, :]
        self.value = np.zeros((h, w), np.float32)
        self.alpha = np.zeros((h, w), np.float32)

    def paint(self, mask: np.ndarray, value, alpha: float = 1.0) -> None:
        mask = np.broadcast_to(mask, self.value.shape)
        v = value if np.isscalar(value) else np.broadcast_to(value, self.value.shape)[mask]
        self.value[mask] = v
        self.alpha[mask] = alpha

    # masks
    def rect(self, x0, y0, x1, y1):
        return (self.x >= x0) & (self.x < x1) & (self.y >= y0) & (self.y < y1)

    def rounded_rect(self, x0, y0, x1, y1, r):
        cx = np.clip(self.x, x0 + r, x1 - r)
        cy = np.clip(self.y, y0 + r, y1 - r)
        return ((self.x - cx) ** 2 + (self.y - cy) ** 2 <= r * r) & self.rect(x0, y0, x1, y1)

    def ellipse(self, cx, cy, rx, ry):
        return ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 <= 1.0

    def ring(self, cx, cy, r_out, r_in):
        d2 = (self.x - cx) ** 2 + (self.y - cy) ** 2
        return (d2 <= r_out * r_out) & (d2 >= r_in * r_in)

    def polygon(self, points):
        """Convex polygon, points in either winding order."""
        pts = np.asarray(points, np.float32)
        area = 0.5 * np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
        sign = 1.0 if area > 0 else -1.0
        mask = np.ones(self.value.shape, bool)
        for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0)):
            mask &= sign * ((bx - ax) * (self.y - ay) - (by - ay) * (self.x - ax)) >= 0
        return mask

    def segment(self, x0, y0, x1, y1, radius):
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        s = np.clip(((self.x - x0) * dx + (self.y - y0) * dy) / max(length2, 1e-6), 0, 1)
        return (self.x - (x0 + s * dx)) ** 2 + (self.y - (y0 + s * dy)) ** 2 <= radius * radius

    def texture(self, rng, cell, amplitude):
        """Noise added to what is painted (multiplied by alpha later, so the background is untouched)."""
        h, w = self.value.shape
        self.value += amplitude * smooth_noise(rng, h, w, cell * _SS, octaves=2)

    def finish(self, flip: bool = False) -> "Sprite":
        h, w = self.height, self.width
        a = self.alpha.reshape(h, _SS, w, _SS).mean(axis=(1, 3))
        pv = (self.value * self.alpha).reshape(h, _SS, w, _SS).mean(axis=(1, 3))
        if flip:
            a, pv = a[:, ::-1], pv[:, ::-1]
        return Sprite.from_arrays(np.ascontiguousarray(pv, np.float32), np.ascontiguousarray(a, np.float32))


@dataclass
class Sprite:
    """Premultiplied log intensity and alpha, as a mip pyramid (level k is 2^k times smaller, padded by one
    transparent pixel on every side so that bilinear sampling never reads outside). ``bbox`` is the tight box
    (x0, y0, x1, y1) of alpha > 0.5 at level 0, ``area`` its count of such pixels."""
    levels: List[np.ndarray]  # [2, h + 2, w + 2] each: premultiplied value, alpha
    height: int
    width: int
    bbox: Tuple[float, float, float, float]
    area: float

    @staticmethod
    def from_arrays(pv: np.ndarray, alpha: np.ndarray) -> "Sprite":
        h, w = alpha.shape
        solid = alpha > 0.5
        rows, cols = np.flatnonzero(solid.any(axis=1)), np.flatnonzero(solid.any(axis=0))
        bbox = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)) if rows.size else \
            (0.0, 0.0, float(w), float(h))
        levels = []
        while True:
            levels.append(np.stack([np.pad(pv, 1), np.pad(alpha, 1)]).astype(np.float32))
            if min(pv.shape) < 8:
                break
            hh, ww = pv.shape[0] // 2 * 2, pv.shape[1] // 2 * 2
            pv = pv[:hh, :ww].reshape(hh // 2, 2, ww // 2, 2).mean(axis=(1, 3))
            alpha = alpha[:hh, :ww].reshape(hh // 2, 2, ww // 2, 2).mean(axis=(1, 3))
        return Sprite(levels, h, w, bbox, float(solid.sum()))


@dataclass
class Appearance:
    """The frames of an object's look (several for animated ones: a walk cycle) and their frame rate."""
    frames: List[Sprite]
    fps: float = 0.0
    height_m: float = 1.5
    extra: dict = field(default_factory=dict)

    def frame_at(self, t_s: float, phase: float) -> Sprite:
        if len(self.frames) == 1 or self.fps <= 0:
            return self.frames[0]
        return self.frames[int(t_s * self.fps + phase * len(self.frames)) % len(self.frames)]


def _tone(rng, low=-1.2, high=1.2):
    return float(rng.uniform(low, high))


def _contrasting(rng, avoid: float, min_diff: float = 0.6, low=-1.4, high=1.4) -> float:
    """A random tone at least ``min_diff`` away from ``avoid`` (objects must differ from what is under them)."""
    for _ in range(20):
        v = float(rng.uniform(low, high))
        if abs(v - avoid) >= min_diff:
            return v
    return avoid + (min_diff if avoid < 0 else -min_diff)


# --- object classes -------------------------------------------------------------------------------------------
def car_side(rng, flip: bool, road_tone: float) -> Appearance:
    length_m, height_m = rng.uniform(3.8, 4.8), rng.uniform(1.35, 1.6)
    h = SPRITE_HEIGHT
    w = int(round(h * length_m / height_m))
    c = Canvas(h, w)
    body = _contrasting(rng, road_tone)
    glass = body - 0.9 if body > -0.2 else body + 0.9
    c.paint(c.rounded_rect(0, 0.40 * h, w, 0.86 * h, 0.12 * h), body)
    roof_top, cab_l, cab_r = 0.02 * h, rng.uniform(0.2, 0.3) * w, rng.uniform(0.7, 0.8) * w
    c.paint(c.polygon([(cab_l, 0.42 * h), (cab_l + 0.1 * w, roof_top), (cab_r - 0.08 * w, roof_top),
                       (cab_r, 0.42 * h)]), body)
    mid = 0.5 * (cab_l + cab_r)
    c.paint(c.polygon([(cab_l + 0.04 * w, 0.40 * h), (cab_l + 0.12 * w, 0.09 * h), (mid - 0.02 * w, 0.09 * h),
                       (mid - 0.02 * w, 0.40 * h)]), glass)
    c.paint(c.polygon([(mid + 0.02 * w, 0.40 * h), (mid + 0.02 * w, 0.09 * h), (cab_r - 0.09 * w, 0.09 * h),
                       (cab_r - 0.02 * w, 0.40 * h)]), glass)
    c.paint(c.rect(mid - 0.005 * w, 0.45 * h, mid + 0.005 * w, 0.8 * h), body - 0.5)  # door gap
    c.paint(c.rect(0.0, 0.5 * h, 0.04 * w, 0.6 * h), 1.6)  # tail light (front after the flip)
    c.paint(c.rect(0.96 * w, 0.5 * h, w, 0.6 * h), 1.8)
    for cx in (0.19 * w, 0.81 * w):
        c.paint(c.ellipse(cx, 0.78 * h, 0.22 * h, 0.22 * h), -2.0)
        c.paint(c.ellipse(cx, 0.78 * h, 0.1 * h, 0.1 * h), -0.3 + rng.uniform(-0.2, 0.2))
    c.texture(rng, 6.0, 0.18)
    return Appearance([c.finish(flip)], height_m=height_m, extra={"length_m": length_m})


def car_front(rng, road_tone: float) -> Appearance:
    width_m, height_m = rng.uniform(1.7, 2.0), rng.uniform(1.35, 1.6)
    h = SPRITE_HEIGHT
    w = int(round(h * width_m / height_m))
    c = Canvas(h, w)
    body = _contrasting(rng, road_tone)
    glass = body - 0.9 if body > -0.2 else body + 0.9
    c.paint(c.rect(0.06 * w, 0.82 * h, 0.24 * w, h), -2.0)
    c.paint(c.rect(0.76 * w, 0.82 * h, 0.94 * w, h), -2.0)
    c.paint(c.rounded_rect(0, 0.42 * h, w, 0.9 * h, 0.1 * h), body)
    c.paint(c.polygon([(0.05 * w, 0.44 * h), (0.16 * w, 0.02 * h), (0.84 * w, 0.02 * h), (0.95 * w, 0.44 * h)]), body)
    c.paint(c.polygon([(0.12 * w, 0.4 * h), (0.2 * w, 0.08 * h), (0.8 * w, 0.08 * h), (0.88 * w, 0.4 * h)]), glass)
    for cx in (0.16 * w, 0.84 * w):
        c.paint(c.ellipse(cx, 0.56 * h, 0.1 * w, 0.05 * h), 1.9)
    c.paint(c.rect(0.32 * w, 0.52 * h, 0.68 * w, 0.66 * h), body - 0.8)
    c.paint(c.rect(0.35 * w, 0.74 * h, 0.65 * w, 0.8 * h), 1.2)  # plate
    c.texture(rng, 6.0, 0.18)
    return Appearance([c.finish()], height_m=height_m, extra={"width_m": width_m})


def pedestrian(rng, flip: bool, road_tone: float, frames: int = 8) -> Appearance:
    height_m = rng.uniform(1.55, 1.9)
    h = SPRITE_HEIGHT
    w = int(round(0.5 * h))
    skin = _tone(rng, -0.6, 1.0)
    shirt = _contrasting(rng, road_tone, 0.7)
    pants = _contrasting(rng, shirt, 0.5)
    shoes = -1.6
    hair = _tone(rng, -1.8, 0.5)
    bag = rng.random() < 0.3
    sprites = []
    cx = 0.5 * w
    for k in range(frames):
        phase = 2 * math.pi * k / frames
        swing = 0.16 * h * math.sin(phase)
        c = Canvas(h, w)
        hip_y, foot_y, shoulder_y = 0.52 * h, 0.97 * h, 0.2 * h
        # Far leg and arm first (darker), then the body, then the near ones.
        c.paint(c.segment(cx - 0.01 * h, hip_y, cx - swing, foot_y, 0.045 * h), pants - 0.25)
        c.paint(c.ellipse(cx - swing + 0.03 * h, foot_y - 0.01 * h, 0.045 * h, 0.025 * h), shoes)
        c.paint(c.segment(cx, shoulder_y + 0.02 * h, cx + 0.7 * swing, 0.5 * h, 0.035 * h), shirt - 0.3)
        c.paint(c.rounded_rect(cx - 0.085 * h, 0.16 * h, cx + 0.085 * h, 0.55 * h, 0.05 * h), shirt)
        if bag:
            c.paint(c.rounded_rect(cx - 0.14 * h, 0.22 * h, cx - 0.06 * h, 0.42 * h, 0.02 * h), shirt - 0.9)
        c.paint(c.segment(cx + 0.01 * h, hip_y, cx + swing, foot_y, 0.045 * h), pants)
        c.paint(c.ellipse(cx + swing + 0.03 * h, foot_y - 0.01 * h, 0.045 * h, 0.025 * h), shoes)
        c.paint(c.segment(cx, shoulder_y + 0.02 * h, cx - 0.7 * swing, 0.5 * h, 0.035 * h), shirt + 0.15)
        c.paint(c.rect(cx - 0.025 * h, 0.12 * h, cx + 0.025 * h, 0.17 * h), skin)
        c.paint(c.ellipse(cx, 0.075 * h, 0.055 * h, 0.068 * h), skin)
        c.paint(c.ellipse(cx - 0.01 * h, 0.05 * h, 0.056 * h, 0.045 * h), hair)
        tex = np.random.default_rng(int(rng.integers(1 << 31)))
        c.texture(tex, 3.0, 0.12)
        sprites.append(c.finish(flip))
    # Walking cadence of about 1.8 steps per second, a full cycle being two steps.
    return Appearance(sprites, fps=frames * rng.uniform(0.8, 1.0), height_m=height_m)


def two_wheeler_side(rng, flip: bool, road_tone: float) -> Appearance:
    height_m = rng.uniform(1.5, 1.75)
    h = SPRITE_HEIGHT
    w = int(round(1.15 * h))
    c = Canvas(h, w)
    metal = _contrasting(rng, road_tone, 0.6)
    jacket = _contrasting(rng, road_tone, 0.7)
    skin = _tone(rng, -0.6, 1.0)
    motor = rng.random() < 0.5
    r = 0.19 * h
    back, front, wy = (0.2 * w, 0.8 * w, h - r - 0.01 * h)
    for cx in (back, front):
        c.paint(c.ring(cx, wy, r, r * (0.55 if motor else 0.8)), -2.0)
        if not motor:
            c.paint(c.segment(cx - r, wy, cx + r, wy, 0.01 * h), metal - 0.4)
            c.paint(c.segment(cx, wy - r, cx, wy + r, 0.01 * h), metal - 0.4)
    seat = (0.42 * w, 0.5 * h)
    bar = (0.74 * w, 0.4 * h)
    if motor:
        c.paint(c.rounded_rect(0.25 * w, 0.5 * h, 0.78 * w, 0.75 * h, 0.06 * h), metal)
        c.paint(c.ellipse(0.86 * w, 0.5 * h, 0.035 * h, 0.05 * h), 1.9)
    else:
        head_tube = (front - 0.05 * w, 0.45 * h)
        crank = (0.48 * w, wy)
        for a, b in (((back, wy), seat), (seat, head_tube), (crank, seat), (crank, head_tube), ((back, wy), crank)):
            c.paint(c.segment(a[0], a[1], b[0], b[1], 0.02 * h), metal)
    c.paint(c.segment(front, wy, bar[0], bar[1], 0.022 * h), metal - 0.3)
    shoulder = (0.55 * w, 0.17 * h)
    c.paint(c.segment(seat[0], seat[1] - 0.02 * h, 0.52 * w, wy - 0.02 * h, 0.05 * h), jacket - 0.4)  # leg
    c.paint(c.segment(seat[0], seat[1] - 0.04 * h, shoulder[0], shoulder[1] + 0.04 * h, 0.08 * h), jacket)
    c.paint(c.segment(shoulder[0], shoulder[1] + 0.04 * h, bar[0], bar[1], 0.035 * h), jacket + 0.2)
    c.paint(c.ellipse(shoulder[0] + 0.04 * h, 0.08 * h, 0.07 * h, 0.075 * h),
            _tone(rng, -1.8, 1.5) if motor else skin)
    c.texture(rng, 4.0, 0.12)
    return Appearance([c.finish(flip)], height_m=height_m)


def two_wheeler_front(rng, road_tone: float) -> Appearance:
    height_m = rng.uniform(1.5, 1.75)
    h = SPRITE_HEIGHT
    w = int(round(0.5 * h))
    c = Canvas(h, w)
    jacket = _contrasting(rng, road_tone, 0.7)
    cx = 0.5 * w
    c.paint(c.rounded_rect(cx - 0.035 * h, 0.6 * h, cx + 0.035 * h, h, 0.03 * h), -2.0)
    c.paint(c.segment(0.1 * w, 0.42 * h, 0.9 * w, 0.42 * h, 0.02 * h), -1.0)
    c.paint(c.rounded_rect(cx - 0.13 * h, 0.15 * h, cx + 0.13 * h, 0.58 * h, 0.06 * h), jacket)
    c.paint(c.segment(cx - 0.12 * h, 0.2 * h, 0.12 * w, 0.42 * h, 0.035 * h), jacket + 0.25)
    c.paint(c.segment(cx + 0.12 * h, 0.2 * h, 0.88 * w, 0.42 * h, 0.035 * h), jacket + 0.25)
    c.paint(c.rect(cx - 0.1 * h, 0.55 * h, cx - 0.04 * h, 0.85 * h), jacket - 0.5)
    c.paint(c.rect(cx + 0.04 * h, 0.55 * h, cx + 0.1 * h, 0.85 * h), jacket - 0.5)
    c.paint(c.ellipse(cx, 0.08 * h, 0.07 * h, 0.08 * h), _tone(rng, -1.8, 1.5))
    c.paint(c.ellipse(cx, 0.5 * h, 0.04 * h, 0.03 * h), 1.9)
    c.texture(rng, 4.0, 0.12)
    return Appearance([c.finish()], height_m=height_m)


def bush(rng, size_px: int) -> Sprite:
    """A leafy blob (unlabelled clutter that sways in the wind)."""
    h = w = max(8, int(size_px))
    c = Canvas(h, w)
    tone = _tone(rng, -1.0, 0.2)
    mask = np.zeros(c.value.shape, bool)
    for _ in range(6):
        mask |= c.ellipse(rng.uniform(0.3, 0.7) * w, rng.uniform(0.35, 0.7) * h, rng.uniform(0.15, 0.3) * w,
                          rng.uniform(0.15, 0.3) * h)
    c.paint(mask, tone)
    hh, ww = c.value.shape
    c.value += 0.7 * smooth_noise(rng, hh, ww, 3.0, octaves=2)  # leaves: fine, strong texture
    return c.finish()


# --- background -----------------------------------------------------------------------------------------------
def street_background(rng, width: int, height: int, horizon: float, road: Tuple[float, float]) -> np.ndarray:
    """A static street in log intensity: sky, buildings with windows, far sidewalk, road with lane marks,
    near sidewalk with tiles, poles; fine grain everywhere."""
    img = np.zeros((height, width), np.float32)
    yy = np.arange(height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    sky = 1.3 + 0.3 * smooth_noise(rng, height, width, width / 4) - 0.4 * yy / height
    img[:] = sky
    # Buildings standing on the far sidewalk.
    x = -rng.uniform(0, 30)
    while x < width:
        bw = rng.uniform(0.08, 0.3) * width
        top = rng.uniform(0.02, 0.8) * horizon
        tone = _tone(rng, -0.9, 0.8)
        x0, x1 = int(max(0, x)), int(min(width, x + bw))
        img[int(top):int(horizon), x0:x1] = tone
        # Window grid.
        step_x, step_y = rng.uniform(6, 12) * width / 320, rng.uniform(7, 12) * height / 240
        win = tone - rng.uniform(0.5, 1.0) if tone > 0 else tone + rng.uniform(0.5, 1.0)
        wx = ((xx - x) % step_x < 0.5 * step_x) & (xx >= x + 2) & (xx < x + bw - 2)
        wy = ((yy - top) % step_y < 0.55 * step_y) & (yy >= top + 3) & (yy < horizon - 4)
        img[:] = np.where(wx & wy, win, img)
        x += bw + rng.uniform(0, 12)
    far_walk = horizon + 0.25 * (road[0] - horizon)
    img[int(horizon):int(road[0])] = 0.6 + 0.1 * rng.standard_normal()
    img[int(horizon):int(far_walk)] -= 0.4
    # Road with dashed lane marks between the lanes.
    asphalt = -0.5 + 0.15 * rng.standard_normal()
    img[int(road[0]):int(road[1])] = asphalt
    for frac in (0.33, 0.62):
        y = road[0] + frac * (road[1] - road[0])
        thick = max(1.0, 0.006 * height * (1 + 2 * frac))
        period = 30.0 * width / 320
        dash = (np.abs(yy - y) < thick) & ((xx % period) < 0.55 * period)
        img[:] = np.where(dash, 1.4, img)
    img[int(road[1]):int(road[1]) + max(1, height // 80)] = 0.9  # curb
    # Near sidewalk with tile joints, then grass at the bottom.
    walk_top = int(road[1]) + max(1, height // 80)
    img[walk_top:] = 0.4
    tile = 18.0 * width / 320
    joints = ((xx % tile) < 1.0) | (((yy - walk_top) % (0.6 * tile)) < 1.0)
    img[walk_top:] = np.where(joints[walk_top:], -0.1, 0.4)
    grass_top = int(0.92 * height)
    img[grass_top:] = -0.3 + 0.5 * smooth_noise(rng, height - grass_top, width, 2.0, octaves=2)
    # Poles.
    for _ in range(int(rng.integers(1, 4))):
        px = rng.uniform(0, width)
        img[:int(road[0]), int(px):int(px + max(1, width / 160))] = -1.5
    img += 0.15 * smooth_noise(rng, height, width, 2.0, octaves=2)
    return img
