# SPDX-License-Identifier: Apache-2.0
"""The demo's pictures: a preview video of validation batches and a PNG contact sheet, both with ground
truth (thin white boxes) and predictions (class-coloured boxes with their score)."""
from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np

# Class colours (BGR for OpenCV): car, pedestrian, two wheeler... in the order of the class ids.
_COLORS = [(60, 60, 255), (60, 220, 60), (255, 160, 40), (0, 220, 255), (255, 60, 255), (200, 200, 0)]
GT_COLOR = (255, 255, 255)


def draw_frame(frame: dict, label_names: Sequence[str], threshold: float, scale: int) -> np.ndarray:
    """One visualised time bin, enlarged ``scale`` times, with its boxes; BGR uint8."""
    import cv2

    img = frame["image"]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = cv2.resize(img[..., ::-1], (img.shape[1] * scale, img.shape[0] * scale),
                     interpolation=cv2.INTER_NEAREST)
    for x, y, w, h, _ in frame["gt"]:
        cv2.rectangle(img, (int(x * scale), int(y * scale)), (int((x + w) * scale), int((y + h) * scale)),
                      GT_COLOR, 1)
    for x, y, w, h, score, cls in frame["dets"]:
        if score < threshold:
            continue
        color = _COLORS[(int(cls) - 1) % len(_COLORS)]
        p0, p1 = (int(x * scale), int(y * scale)), (int((x + w) * scale), int((y + h) * scale))
        cv2.rectangle(img, p0, p1, color, 2)
        name = label_names[int(cls)] if 0 <= int(cls) < len(label_names) else str(int(cls))
        cv2.putText(img, f"{name} {score:.2f}", (p0[0], max(10, p0[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1,
                    cv2.LINE_AA)
    return img


def _caption(img: np.ndarray, text: str) -> None:
    import cv2

    cv2.putText(img, text, (4, img.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1, cv2.LINE_AA)


def _legend(width: int, label_names: Sequence[str]) -> np.ndarray:
    import cv2

    bar = np.zeros((22, width, 3), np.uint8)
    x = 6
    items = [("ground truth", GT_COLOR)] + [(n, _COLORS[i % len(_COLORS)]) for i, n in enumerate(label_names[1:])]
    for name, color in items:
        cv2.rectangle(bar, (x, 6), (x + 12, 16), color, 2 if name != "ground truth" else 1)
        cv2.putText(bar, name, (x + 16, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA)
        x += 26 + 8 * len(name)
    return bar


def write_video(path: str, frames: List[dict], slots: int, label_names: Sequence[str], fps: float,
                threshold: float, scale: int = 2) -> bool:
    """mp4 of the kept frames: the batch slots side by side in a grid, one video frame per time bin (played at
    the recording's speed). Returns False when OpenCV cannot encode mp4."""
    import cv2

    if not frames:
        return False
    slots = max(1, slots)
    cols = int(math.ceil(math.sqrt(slots)))
    rows = int(math.ceil(slots / cols))
    h, w = frames[0]["image"].shape[:2]
    cell_h, cell_w = h * scale, w * scale
    legend = _legend(cols * cell_w, label_names)
    size = (cols * cell_w, rows * cell_h + legend.shape[0])
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
    if not writer.isOpened():
        return False
    try:
        canvas = np.zeros((size[1], size[0], 3), np.uint8)
        by_step: List[List[dict]] = []
        counters = [0] * slots
        for frame in frames:  # frames come slot by slot within a time bin: regroup them per time bin
            k = counters[frame["slot"]]
            counters[frame["slot"]] += 1
            while len(by_step) <= k:
                by_step.append([])
            by_step[k].append(frame)
        for group in by_step:
            canvas[...] = 0
            canvas[rows * cell_h:] = legend
            for frame in group:
                r, c = divmod(frame["slot"], cols)
                img = draw_frame(frame, label_names, threshold, scale)
                _caption(img, f"{frame['file']}  {frame['t_us'] / 1e6:.2f} s")
                canvas[r * cell_h:(r + 1) * cell_h, c * cell_w:(c + 1) * cell_w] = img
            writer.write(canvas)
    finally:
        writer.release()
    return True


def write_contact_sheet(path: str, frames: List[dict], label_names: Sequence[str], threshold: float,
                        count: int = 12, columns: int = 4, scale: int = 2) -> str:
    """A PNG grid of ``count`` labelled frames spread over the kept ones (those with objects first)."""
    import cv2

    candidates = [f for f in frames if f["labeled"] and len(f["gt"])] or [f for f in frames if f["labeled"]] or frames
    if not candidates:
        raise ValueError("no frame to draw")
    pick = np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int)
    tiles = []
    for i in pick:
        img = draw_frame(candidates[i], label_names, threshold, scale)
        _caption(img, f"{candidates[i]['file']}  {candidates[i]['t_us'] / 1e6:.2f} s")
        tiles.append(img)
    columns = min(columns, len(tiles))
    rows = int(math.ceil(len(tiles) / columns))
    th, tw = tiles[0].shape[:2]
    sheet = np.zeros((rows * (th + 4), columns * (tw + 4), 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * (th + 4) + 2:r * (th + 4) + 2 + th, c * (tw + 4) + 2:c * (tw + 4) + 2 + tw] = tile
    sheet = np.vstack([sheet, _legend(sheet.shape[1], label_names)])
    if not cv2.imwrite(path, sheet):
        raise OSError(f"{path}: could not write the PNG")
    return path
