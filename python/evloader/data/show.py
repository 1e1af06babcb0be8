# SPDX-License-Identifier: Apache-2.0
"""Batch visualisation of the loaders (metavision_ml's ``show`` and ``show_dataloader``): every time bin of a
batch as one RGB frame, the batch laid out as a grid, the file name written in each cell and a marker at the
start of each sequence."""
from __future__ import annotations

import math
import os

import numpy as np

# metavision_ml's marker of a sequence start: a 10 x 10 patch whose first channel is 222.
MARKER_SIZE, MARKER_VALUE = 10, 222
TEXT_COLOR = (50, 240, 12)


def grid_shape(n: int):
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    return rows, cols


def _put_name(cell, name):
    try:
        import cv2
    except ImportError:  # drawing text needs OpenCV; the frames are still complete without it
        return
    h, w = cell.shape[:2]
    cv2.putText(cell, name, (int(0.05 * w), int(0.94 * h)), cv2.FONT_HERSHEY_PLAIN, 1.2, TEXT_COLOR)


def iterate_frames(batches, height, width, n_slots, vis_func, viz_labels=None):
    """Yield one canvas [rows*H, cols*W, 3] uint8 per time bin of every batch (the same array each time)."""
    rows, cols = grid_shape(n_slots)
    canvas = np.zeros((rows * height, cols * width, 3), np.uint8)
    for batch in batches:
        inputs = batch["inputs"]
        keep = batch["mask_keep_memory"].reshape(-1)
        for t in range(inputs.shape[0]):
            canvas[...] = 0
            for i in range(inputs.shape[1]):
                frame = inputs[t, i]
                frame = frame.cpu().numpy() if hasattr(frame, "cpu") else np.asarray(frame)
                img = np.ascontiguousarray(vis_func(frame))
                if img.ndim == 2:
                    img = np.repeat(img[..., None], 3, axis=2)
                if viz_labels is not None:
                    img = viz_labels(img, batch["labels"][t][i])
                if t <= 1 and float(keep[i]) == 0:
                    img[:MARKER_SIZE, :MARKER_SIZE, 0] = MARKER_VALUE
                meta = batch["video_infos"][i][0]
                if not getattr(meta, "padding", False):
                    _put_name(img, os.path.basename(meta.path))
                r, c = divmod(i, cols)
                canvas[r * height:(r + 1) * height, c * width:(c + 1) * width] = img[:height, :width]
            yield canvas


def show_batches(loader, vis_func, viz_labels=None):
    height, width = loader.dataset.get_size()
    return iterate_frames(loader, height, width, loader.batch_size, vis_func, viz_labels)


def show_dataloader(dataloader, height, width, *args):
    """metavision_ml's ``show_dataloader(dataloader, height, width, vis_func, viz_labels=None)``, also
    accepting the tutorial's older form with a batch size before ``vis_func``."""
    if args and isinstance(args[0], (int, np.integer)):
        batch_size, args = int(args[0]), args[1:]
    else:
        batch_size = dataloader.batch_size
    if not args:
        raise TypeError("show_dataloader needs vis_func")
    vis_func = args[0]
    viz_labels = args[1] if len(args) > 1 else None
    return iterate_frames(dataloader, height, width, batch_size, vis_func, viz_labels)
