# SPDX-License-Identifier: Apache-2.0
"""A simulated event camera watching a street: the recordings of ``evloader sample``.

The scene. A static camera looks at a street (buildings, road with lane marks, sidewalks, poles, bushes).
Cars, two wheelers and pedestrians move on the ground plane: they cross the view, come closer or go away
(so their size on the sensor changes with their distance), pedestrians swing their legs and arms. Bushes
sway in the wind (moving, unlabelled clutter). Everything is drawn in log intensity with textures, so edges
inside objects fire events as well as their outlines.

The sensor. Every ``step_us`` the scene is rendered and each pixel compares its log intensity with the level
of its last event: each crossing of its contrast threshold (ON or OFF, a per-pixel value drawn around
``contrast_threshold``: fixed-pattern mismatch) is an event, time-stamped by linear interpolation inside the
step. A pixel that fired is blind for ``refractory_us``. Background activity (random events at
``background_rate_hz`` per pixel) and a few hot pixels are added. Events are sorted by time.

The labels. At ``label_rate_hz`` every visible object gets an EventBbox (amodal box clipped to the sensor,
class id of :data:`LABEL_MAP`, track id, confidence 1), except during a few unlabelled stretches; a
labelled instant without any object gets one ``"empty"`` box (Gen4's convention for "labelled, nothing
there"). Objects less than 20 % visible (occluded or out of the view) are not labelled.

Everything is drawn from one ``numpy.random.Generator`` seeded by the caller: the same seed gives the same
events and boxes, bit for bit.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._dtypes import EventBbox, EventCD
from . import _draw

__all__ = ["SimConfig", "LABEL_MAP", "CLASS_NAMES", "Recording", "simulate"]

# Gen4's class ids for the three classes, plus the "empty" marker of labelled frames without objects.
PEDESTRIAN, TWO_WHEELER, CAR, EMPTY = 0, 1, 2, 3
LABEL_MAP = {"0": "pedestrian", "1": "two wheeler", "2": "car", "3": "empty"}
CLASS_NAMES = ["pedestrian", "two wheeler", "car"]

SCENARIOS = {
    # class weights (pedestrian, two wheeler, car) and the usual number of objects in view
    "mixed": ((0.35, 0.2, 0.45), (3.0, 6.0)),
    "traffic": ((0.1, 0.25, 0.65), (3.0, 6.0)),
    "pedestrians": ((0.8, 0.1, 0.1), (2.0, 5.0)),
}


@dataclasses.dataclass
class SimConfig:
    """Parameters of a simulated recording (times in µs, log-intensity units for contrasts)."""
    width: int = 320
    height: int = 240
    duration_us: int = 10_000_000
    step_us: int = 5000  #: rendering period; adjusted down so that it divides the label period
    contrast_threshold: float = 0.25
    threshold_mismatch: float = 0.03  #: standard deviation of the per-pixel thresholds
    refractory_us: int = 500
    background_rate_hz: float = 0.2  #: per pixel
    hot_pixel_fraction: float = 2e-4
    hot_pixel_rate_hz: float = 40.0
    label_rate_hz: float = 20.0
    unlabeled_rate_hz: float = 0.15  #: how often an unlabelled stretch starts (per second)
    unlabeled_length_s: Tuple[float, float] = (0.3, 1.0)
    scenario: str = "mixed"
    max_crossings: int = 12  #: events of one pixel in one step at most (a sensor saturates too)

    def checked(self) -> "SimConfig":
        if self.width < 32 or self.height < 32:
            raise ValueError(f"the sensor must be at least 32x32, got {self.width}x{self.height}")
        if self.width > 4096 or self.height > 4096:
            raise ValueError(f"the sensor must be at most 4096x4096, got {self.width}x{self.height}")
        if self.duration_us <= 0:
            raise ValueError(f"duration must be positive, got {self.duration_us} us")
        if self.label_rate_hz <= 0 or 1e6 / self.label_rate_hz != int(1e6 / self.label_rate_hz):
            raise ValueError(f"label_rate_hz must divide one second into whole microseconds, got {self.label_rate_hz}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r} (one of {', '.join(SCENARIOS)})")
        if not self.contrast_threshold > 0:
            raise ValueError("contrast_threshold must be positive")
        return self

    @property
    def label_period_us(self) -> int:
        return int(round(1e6 / self.label_rate_hz))

    @property
    def effective_step_us(self) -> int:
        period = self.label_period_us
        return period // max(1, math.ceil(period / max(1, self.step_us)))


# --- the scene -----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Camera:
    width: int
    height: int
    focal: float
    horizon: float
    cam_height: float

    def ground_y(self, z):
        return self.horizon + self.focal * self.cam_height / z

    def z_of_y(self, y):
        return self.focal * self.cam_height / max(1e-3, y - self.horizon)

    def screen_x(self, x, z):
        return 0.5 * self.width + self.focal * x / z

    def world_x(self, sx, z):
        return (sx - 0.5 * self.width) * z / self.focal


# Per class: depth range (m), speed range (m/s), spawn mix (crossing, approaching, receding).
_CLASS_MOTION = {
    CAR: ((8.0, 28.0), (5.0, 12.0), (0.6, 0.2, 0.2)),
    TWO_WHEELER: ((7.0, 22.0), (3.0, 8.0), (0.6, 0.2, 0.2)),
    PEDESTRIAN: ((3.5, 12.0), (0.9, 1.7), (1.0, 0.0, 0.0)),
}
_FADE_S = 0.4


class _Thing:
    """A moving object or a swaying bush, in world coordinates."""

    def __init__(self, ident, cls, look, x, z, vx, vz, speed0, fade_in=0.0, sprite=None, sway=None, crossing=True):
        self.ident, self.cls, self.look = ident, cls, look
        self.crossing = crossing  # side view, moving across: turns back at the ends of its depth range
        self.x, self.z, self.vx, self.vz = x, z, vx, vz
        self.vx0, self.vz0 = vx, vz
        self.speed0 = speed0
        self.phase = 0.0
        self.opacity = 0.0 if fade_in > 0 else 1.0
        self.fading = 1 if fade_in > 0 else 0  # +1 fading in, -1 fading out
        self.sprite = sprite  # fixed sprite (clutter)
        self.sway = sway  # (base screen x, bottom y, amplitude px, frequency Hz, phase, screen height px)


class _Scene:
    def __init__(self, cfg: SimConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        w, h = cfg.width, cfg.height
        horizon = h * rng.uniform(0.26, 0.33)
        focal = 0.9 * w
        self.cam = _Camera(w, h, focal, horizon, cam_height=1.3)
        road = (self.cam.ground_y(30.0), self.cam.ground_y(7.0))
        self.background = _draw.street_background(rng, w, h, horizon, road).astype(np.float32)
        self.road_tone = float(np.median(self.background[int(road[0]):int(road[1])]))
        weights, (lo, hi) = SCENARIOS[cfg.scenario]
        self.class_weights = np.asarray(weights) / np.sum(weights)
        self.desired = rng.uniform(lo, hi)
        self.things: List[_Thing] = []
        self.next_id = 1
        # Clutter: bushes on the near sidewalk and in the grass, drawn in front of what is behind them.
        for _ in range(int(rng.integers(1, 4))):
            size = rng.uniform(0.08, 0.16) * h
            bottom = rng.uniform(road[1] + 0.3 * size, h + 0.2 * size)
            sprite = _draw.bush(rng, int(size * 1.2))
            sway = (rng.uniform(0, w), bottom, rng.uniform(0.5, 1.6) * w / 320, rng.uniform(0.3, 1.2),
                    rng.uniform(0, 2 * math.pi), size)
            self.things.append(_Thing(0, -1, None, 0, self.cam.z_of_y(bottom), 0, 0, 0, sprite=sprite, sway=sway))
        for _ in range(int(round(self.desired))):
            self._spawn(initial=True)

    # spawning and motion
    def _spawn(self, initial: bool = False) -> None:
        rng, cam = self.rng, self.cam
        cls = int(rng.choice([PEDESTRIAN, TWO_WHEELER, CAR], p=self.class_weights))
        (zmin, zmax), (smin, smax), mix = _CLASS_MOTION[cls]
        speed = rng.uniform(smin, smax)
        kind = int(rng.choice(3, p=mix))
        direction = 1.0 if rng.random() < 0.5 else -1.0
        fade = 0.0
        if kind == 0:  # crossing
            z = rng.uniform(zmin, zmax)
            vx, vz = direction * speed, rng.normal(0, 0.12) * speed
            look = self._look(cls, side=True, flip=direction < 0)
            half_w = 0.5 * self._width_m(look) * cam.focal / z
            if initial:
                sx = rng.uniform(0.1, 0.9) * cam.width
            else:
                sx = -half_w - 1 if direction > 0 else cam.width + half_w + 1
            x = cam.world_x(sx, z)
        elif kind == 1:  # approaching from far away: fades in
            z = zmax * rng.uniform(0.85, 1.0) if not initial else rng.uniform(zmin + 4, zmax)
            x = rng.uniform(-4.5, 4.5)
            vx, vz = rng.normal(0, 0.3), -speed * rng.uniform(0.5, 1.0)
            look = self._look(cls, side=False, flip=False)
            fade = 0.0 if initial else _FADE_S
        else:  # receding: enters from a side near the camera, fades out far away
            z = zmin * rng.uniform(1.0, 1.3) if not initial else rng.uniform(zmin, zmax - 4)
            look = self._look(cls, side=False, flip=False)
            half_w = 0.5 * self._width_m(look) * cam.focal / z
            if initial:
                sx = rng.uniform(0.2, 0.8) * cam.width
            else:
                sx = cam.width + half_w if direction > 0 else -half_w
            x = cam.world_x(sx, z)
            vx, vz = -0.15 * direction * speed if not initial else 0.0, speed * rng.uniform(0.5, 1.0)
        thing = _Thing(self.next_id, cls, look, x, z, vx, vz, speed, fade_in=fade, crossing=kind == 0)
        thing.phase = rng.random()
        self.next_id += 1
        self.things.append(thing)

    def _look(self, cls, side, flip):
        rng = self.rng
        if cls == CAR:
            return _draw.car_side(rng, flip, self.road_tone) if side else _draw.car_front(rng, self.road_tone)
        if cls == TWO_WHEELER:
            return _draw.two_wheeler_side(rng, flip, self.road_tone) if side else \
                _draw.two_wheeler_front(rng, self.road_tone)
        return _draw.pedestrian(rng, flip, self.road_tone)

    @staticmethod
    def _width_m(look) -> float:
        s = look.frames[0]
        return look.height_m * s.width / s.height

    def advance(self, t_s: float, dt_s: float) -> None:
        rng, cam = self.rng, self.cam
        movers = [th for th in self.things if th.sway is None]
        if movers:
            noise = rng.standard_normal((len(movers), 2))
        for th, (nx, nz) in zip(movers, noise if movers else []):
            (zmin, zmax), _, _ = _CLASS_MOTION[th.cls]
            # Ornstein-Uhlenbeck wander around the initial velocity: smooth speed changes.
            sigma = 0.25 * th.speed0 * math.sqrt(dt_s)
            th.vx += 0.5 * (th.vx0 - th.vx) * dt_s + sigma * nx
            th.vz += 0.5 * (th.vz0 - th.vz) * dt_s + sigma * nz
            th.x += th.vx * dt_s
            th.z += th.vz * dt_s
            if th.fading == 1:
                th.opacity = min(1.0, th.opacity + dt_s / _FADE_S)
                if th.opacity >= 1.0:
                    th.fading = 0
            elif th.fading == -1:
                th.opacity = max(0.0, th.opacity - dt_s / _FADE_S)
            if th.z < zmin or th.z > zmax:
                if th.crossing or th.z < 0.6 * zmin:
                    th.vz = -th.vz
                    th.vz0 = -th.vz0
                    th.z = min(max(th.z, 0.6 * zmin), zmax)
                elif th.z > zmax and th.fading == 0:
                    th.fading = -1
        # Remove what left the view (or faded out); spawn to keep about `desired` objects in view.
        kept = []
        for th in self.things:
            if th.sway is None:
                half_w = 0.5 * self._width_m(th.look) * cam.focal / th.z
                sx = cam.screen_x(th.x, th.z)
                # out of the view and not coming back (its speed wanders, but not that much)
                gone = (sx + half_w < -2 and th.vx <= 0.5) or (sx - half_w > cam.width + 2 and th.vx >= -0.5)
                gone = gone or (th.fading == -1 and th.opacity <= 0.0) or th.z < 0.5
                if gone:
                    continue
            kept.append(th)
        self.things = kept
        count = sum(1 for th in self.things if th.sway is None)
        rate = max(0.0, self.desired - count) * 0.8 + 0.05
        if count < 8 and rng.random() < rate * dt_s:
            self._spawn()

    # rendering
    def placements(self, t_s: float):
        """(thing, sprite, centre x, bottom y, screen height px, opacity) far to near."""
        cam = self.cam
        out = []
        for th in self.things:
            if th.sway is not None:
                bx, by, amp, freq, ph, size = th.sway
                out.append((th.z, th, th.sprite, bx + amp * math.sin(2 * math.pi * freq * t_s + ph), by, size, 1.0))
                continue
            if th.opacity <= 0:
                continue
            sprite = th.look.frame_at(t_s, th.phase)
            out.append((th.z, th, sprite, cam.screen_x(th.x, th.z), cam.ground_y(th.z),
                        cam.focal * th.look.height_m / th.z, th.opacity))
        out.sort(key=lambda item: -item[0])
        return [item[1:] for item in out]


def _blit(frame: np.ndarray, sprite: _draw.Sprite, cx: float, bottom: float, screen_h: float, opacity: float,
          ids: Optional[np.ndarray] = None, ident: int = 0):
    """Composite a sprite (bilinear, from the mip level whose pixels are just smaller than the screen's).
    Returns (x0, y0, scale, roi) with roi = (r0, r1, c0, c1) the pixels written, or None."""
    H, W = frame.shape
    k = screen_h / sprite.height
    level = 0
    if k < 1.0:
        level = min(len(sprite.levels) - 1, int(math.floor(math.log2(1.0 / k))))
    ks = k * (2 ** level)
    planes = sprite.levels[level]  # [2, h + 2, w + 2]: premultiplied value, alpha
    x0 = cx - 0.5 * sprite.width * k
    y0 = bottom - sprite.height * k
    c0, c1 = max(0, int(math.floor(x0))), min(W, int(math.ceil(x0 + sprite.width * k)))
    r0, r1 = max(0, int(math.floor(y0))), min(H, int(math.ceil(bottom)))
    if c0 >= c1 or r0 >= r1:
        return x0, y0, k, None
    _, hp, wp = planes.shape
    u = np.clip((np.arange(c0, c1, dtype=np.float32) + 0.5 - x0) / ks + 0.5, 0, wp - 1.001)  # +1 pad, -0.5
    v = np.clip((np.arange(r0, r1, dtype=np.float32) + 0.5 - y0) / ks + 0.5, 0, hp - 1.001)
    u0, v0 = u.astype(np.int64), v.astype(np.int64)
    fu, fv = (u - u0)[None, None, :], (v - v0)[None, :, None]
    # Only the sprite window under the ROI is read: rows, then columns.
    cu, cv = int(u0[0]), int(v0[0])
    window = planes[:, cv:int(v0[-1]) + 2, cu:int(u0[-1]) + 2]
    v0 -= cv
    u0 -= cu
    top = window[:, v0]
    rows = top + (window[:, v0 + 1] - top) * fv
    left = rows[:, :, u0]
    pa = left + (rows[:, :, u0 + 1] - left) * fu
    p, a = pa[0], pa[1]
    if opacity < 1.0:
        p *= opacity
        a *= opacity
    roi = frame[r0:r1, c0:c1]
    roi *= 1.0 - a
    roi += p
    if ids is not None:
        ids[r0:r1, c0:c1][a > 0.5] = ident
    return x0, y0, k, (r0, r1, c0, c1)


def _union(a, b):
    if b is None:
        return a
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


# --- the sensor -----------------------------------------------------------------------------------------------
class _Sensor:
    """Contrast-threshold pixels with mismatch, refractory period, background activity and hot pixels.

    Only the pixels under the given regions (where something was drawn now or in the previous step) are
    compared with their reference level: the rest shows the static background and cannot cross. A pixel
    inside two regions is processed twice, which is harmless: the first pass leaves it less than one
    threshold from its reference."""

    def __init__(self, cfg: SimConfig, first: np.ndarray, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        shape = (cfg.height, cfg.width)
        c = cfg.contrast_threshold
        self.c_on = np.clip(rng.normal(c, cfg.threshold_mismatch, shape), 0.5 * c, 2 * c).astype(np.float32)
        self.c_off = np.clip(rng.normal(c, cfg.threshold_mismatch, shape), 0.5 * c, 2 * c).astype(np.float32)
        self.inv_on, self.inv_off = 1.0 / self.c_on, 1.0 / self.c_off
        self.ref = (first + rng.uniform(-0.5, 0.5, shape).astype(np.float32) * self.c_on).astype(np.float32)
        self.prev = first.astype(np.float32).copy()
        n = cfg.width * cfg.height
        self.last_t = np.full(n, -(1 << 40), np.int64)
        n_hot = int(round(cfg.hot_pixel_fraction * n))
        self.hot = rng.choice(n, size=n_hot, replace=False) if n_hot else np.zeros(0, np.int64)

    def _region(self, frame, r0, r1, c0, c1, t_a, t_b, out):
        cfg = self.cfg
        W = cfg.width
        dt = t_b - t_a
        refr = cfg.refractory_us
        cur = frame[r0:r1, c0:c1]
        ref = self.ref[r0:r1, c0:c1]
        d = cur - ref
        crossings = np.maximum(d * self.inv_on[r0:r1, c0:c1], -d * self.inv_off[r0:r1, c0:c1])
        local = np.flatnonzero(crossings >= 1.0)
        prev = self.prev[r0:r1, c0:c1]
        if local.size == 0:
            prev[...] = cur
            return
        w = c1 - c0
        lr, lc = local // w, local % w
        ds = d[lr, lc]
        on = ds > 0
        c = np.where(on, self.c_on[r0:r1, c0:c1][lr, lc], self.c_off[r0:r1, c0:c1][lr, lc])
        n_all = crossings[lr, lc].astype(np.int64)
        n = np.minimum(n_all, cfg.max_crossings)
        s = np.where(on, np.float32(1), np.float32(-1))
        la, lb, r = prev[lr, lc], cur[lr, lc], ref[lr, lc]
        dl = lb - la
        dl = np.where(np.abs(dl) < 1e-6, s * 1e-6, dl)
        # crossing j (0-based), of level r + s (j + 1) c, happens at the fraction f0 + j df of the step
        f0 = np.clip((r + s * c - la) / dl, 0.0, 1.0)
        df = c / np.abs(dl)
        ref[lr, lc] = r + s * n_all * c
        prev[...] = cur
        sel = (lr + r0) * W + (lc + c0)
        first = t_a + dt * f0.astype(np.float64)
        spacing = np.maximum(dt * df.astype(np.float64), 1e-3)
        # Refractory period: the first crossing far enough from the pixel's last event, then every m-th.
        # (a hair above the period, so that rounding never brings two events closer than it)
        need = self.last_t[sel] + (refr + 1e-6) - first
        j0 = np.where(need > 0, np.ceil(need / spacing), 0).astype(np.int64)
        m = np.maximum(1, np.ceil((refr + 1e-6) / spacing)).astype(np.int64)
        count = np.where(j0 < n, (n - 1 - j0) // m + 1, 0)
        total = int(count.sum())
        if not total:
            return
        rep = np.repeat(np.arange(sel.size), count)
        starts = np.cumsum(count) - count
        j = j0[rep] + m[rep] * (np.arange(total) - starts[rep])
        out[0].append(sel[rep])
        out[1].append(on[rep])
        out[2].append(np.clip(np.floor(first[rep] + j * spacing[rep]), t_a, t_b - 1).astype(np.int64))
        has = count > 0
        last_j = j0[has] + m[has] * (count[has] - 1)
        self.last_t[sel[has]] = np.clip(np.floor(first[has] + last_j * spacing[has]), t_a, t_b - 1)

    def step(self, frame: np.ndarray, regions, t_a: int, t_b: int):
        """Events of the interval [t_a, t_b) as (pixel index, polarity, t) arrays sorted by t, or None."""
        cfg, rng = self.cfg, self.rng
        dt = t_b - t_a
        out = ([], [], [])
        for r0, r1, c0, c1 in regions:
            self._region(frame, r0, r1, c0, c1, t_a, t_b, out)
        # Background activity (slightly more ON than OFF, like leak events) and hot pixels.
        n_pix = cfg.width * cfg.height
        noise_pix = rng.integers(0, n_pix, int(rng.poisson(cfg.background_rate_hz * n_pix * dt * 1e-6)))
        if self.hot.size:
            hot_counts = rng.poisson(cfg.hot_pixel_rate_hz * dt * 1e-6, self.hot.size)
            if hot_counts.any():
                noise_pix = np.concatenate([noise_pix, np.repeat(self.hot, hot_counts)])
        if noise_pix.size:
            noise_t = rng.integers(t_a, t_b, noise_pix.size)
            noise_on = rng.random(noise_pix.size) < 0.6
            # The refractory period holds among noise events of one pixel too (hot pixels fire often).
            order = np.lexsort((noise_t, noise_pix))
            noise_pix, noise_t, noise_on = noise_pix[order], noise_t[order], noise_on[order]
            same = np.flatnonzero((noise_pix[1:] == noise_pix[:-1]) &
                                  (noise_t[1:] - noise_t[:-1] < cfg.refractory_us)) + 1
            if same.size:  # rare: a plain pass over this step's few noise events
                keep = np.ones(noise_pix.size, bool)
                last_pix, last_time = -1, 0
                for i in range(noise_pix.size):
                    if noise_pix[i] == last_pix and noise_t[i] - last_time < cfg.refractory_us:
                        keep[i] = False
                    else:
                        last_pix, last_time = noise_pix[i], noise_t[i]
                noise_pix, noise_t, noise_on = noise_pix[keep], noise_t[keep], noise_on[keep]
            ok = noise_t >= self.last_t[noise_pix] + cfg.refractory_us
            noise_pix, noise_t, noise_on = noise_pix[ok], noise_t[ok], noise_on[ok]
            np.maximum.at(self.last_t, noise_pix, noise_t)
            out[0].append(noise_pix)
            out[1].append(noise_on)
            out[2].append(noise_t)
        if not out[0]:
            return None
        pix, pol, t = (np.concatenate(x) for x in out)
        order = np.argsort(t, kind="stable")
        return pix[order], pol[order], t[order]


# --- a recording -----------------------------------------------------------------------------------------------
def _unlabeled_stretches(cfg: SimConfig, rng: np.random.Generator) -> List[Tuple[int, int]]:
    stretches, t = [], 0.0
    end = cfg.duration_us * 1e-6
    while True:
        t += rng.exponential(1.0 / cfg.unlabeled_rate_hz) if cfg.unlabeled_rate_hz > 0 else end + 1
        if t >= end:
            return stretches
        length = rng.uniform(*cfg.unlabeled_length_s)
        stretches.append((int(t * 1e6), int((t + length) * 1e6)))
        t += length


class Recording:
    """One simulated recording. Iterate :meth:`chunks` for the events (EventCD arrays, sorted, in pieces of
    about ``chunk_us``); :attr:`boxes` holds the labels produced so far (all of them once iterated)."""

    def __init__(self, config: Optional[SimConfig] = None, seed: Union[int, Sequence[int]] = 0, **overrides):
        cfg = dataclasses.replace(config or SimConfig(), **overrides).checked()
        self.config = cfg
        self.seed = seed
        self.width, self.height = cfg.width, cfg.height
        self._boxes: List[np.ndarray] = []
        self.event_count = 0

    @property
    def boxes(self) -> np.ndarray:
        return _concatenate(self._boxes, EventBbox)

    def chunks(self, chunk_us: int = 200_000) -> Iterator[np.ndarray]:
        cfg = self.config
        rng = np.random.default_rng(self.seed)
        scene = _Scene(cfg, rng)
        step = cfg.effective_step_us
        period = cfg.label_period_us
        unlabeled = _unlabeled_stretches(cfg, rng)
        W, H = cfg.width, cfg.height
        frame = scene.background.copy()
        ids = np.empty((H, W), np.int32)

        def render(t_us, with_ids=False):
            """Draw the things over the background; (placements, regions drawn)."""
            if with_ids:
                ids.fill(-1)
            placed, regions = [], {}
            for index, (th, sprite, cx, bottom, screen_h, opacity) in enumerate(scene.placements(t_us * 1e-6)):
                x0, y0, k, roi = _blit(frame, sprite, cx, bottom, screen_h, opacity, ids if with_ids else None,
                                       index)
                placed.append((index, th, sprite, x0, y0, k, opacity))
                if roi is not None:
                    regions[id(th)] = roi
            return placed, regions

        _, drawn = render(0)
        sensor = _Sensor(cfg, frame, rng)
        pending: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        pending_since = 0
        t = 0
        n_steps = -(-cfg.duration_us // step)
        for i in range(n_steps):
            t_a, t_b = t, min(cfg.duration_us, t + step)
            scene.advance(t_a * 1e-6, (t_b - t_a) * 1e-6)
            label_now = t_b % period == 0 and not any(a <= t_b < b for a, b in unlabeled)
            for r0, r1, c0, c1 in drawn.values():  # back to the background where things were
                frame[r0:r1, c0:c1] = scene.background[r0:r1, c0:c1]
            placed, regions = render(t_b, with_ids=label_now)
            # Pixels that may have changed: where each thing was and is now (one box per thing).
            changed = [_union(roi, drawn.get(key)) for key, roi in regions.items()]
            changed += [roi for key, roi in drawn.items() if key not in regions]
            out = sensor.step(frame, changed, t_a, t_b)
            drawn = regions
            if out is not None:
                pending.append(out)
            if label_now:
                self._boxes.append(self._label(t_b, placed, ids))
            t = t_b
            if t - pending_since >= chunk_us or i == n_steps - 1:
                yield self._assemble(pending)
                pending, pending_since = [], t

    def _assemble(self, parts) -> np.ndarray:
        n = sum(p[0].size for p in parts)
        events = np.empty(n, EventCD)
        if n:
            pix = np.concatenate([p[0] for p in parts])
            events["x"] = pix % self.width
            events["y"] = pix // self.width
            events["p"] = np.concatenate([p[1] for p in parts])
            events["t"] = np.concatenate([p[2] for p in parts])
        self.event_count += n
        return events

    def _label(self, t: int, placed, ids: np.ndarray) -> np.ndarray:
        W, H = self.width, self.height
        visible = np.bincount(ids[ids >= 0].ravel(), minlength=len(placed) + 1)
        rows = []
        for index, th, sprite, x0, y0, k, opacity in placed:
            if th.sway is not None or opacity < 0.5:
                continue
            bx0, by0, bx1, by1 = sprite.bbox
            left, top = x0 + bx0 * k, y0 + by0 * k
            right, bottom = x0 + bx1 * k, y0 + by1 * k
            cl, ct = max(0.0, left), max(0.0, top)
            cr, cb = min(float(W), right), min(float(H), bottom)
            if cr - cl < 2 or cb - ct < 2:
                continue
            if visible[index] < max(20.0, 0.2 * sprite.area * k * k):
                continue
            rows.append((t, cl, ct, cr - cl, cb - ct, th.cls, th.ident, 1.0))
        if not rows:
            rows.append((t, 0.0, 0.0, 0.0, 0.0, EMPTY, 0, 1.0))
        return np.array(rows, dtype=EventBbox)


def simulate(config: Optional[SimConfig] = None, seed: Union[int, Sequence[int]] = 0,
             **overrides) -> Tuple[np.ndarray, np.ndarray]:
    """(events, boxes) of a whole simulated recording, in memory. ``overrides`` replace fields of ``config``
    (e.g. ``simulate(width=160, height=120, duration_us=1_000_000)``)."""
    rec = Recording(config, seed, **overrides)
    return _concatenate(list(rec.chunks()), EventCD), rec.boxes


def _concatenate(parts, dtype) -> np.ndarray:
    """np.concatenate that keeps the padded Metavision layout (numpy's would pack the fields)."""
    out = np.empty(sum(p.size for p in parts), dtype)
    at = 0
    for p in parts:
        out[at:at + p.size] = p
        at += p.size
    return out
