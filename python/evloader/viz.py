# SPDX-License-Identifier: Apache-2.0
"""Drawing boxes on frames: metavision_ml's ``display_frame.draw_box_events`` (behaviour spec §9).

OpenCV is imported when a function first needs it, so importing evloader does not require it
(``pip install opencv-python-headless``).
"""
from __future__ import annotations

import threading

import numpy as np

__all__ = ["draw_box_events", "get_palette"]

_palette = None
_palette_lock = threading.Lock()


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("drawing needs OpenCV: pip install opencv-python-headless") from e
    return cv2


def get_palette() -> np.ndarray:
    """The 255 box colours, ``[255, 3]`` uint8: OpenCV's HSV colormap applied to 0..254 (metavision_ml's
    ``COLORS``; OpenCV order, used as given on the RGB frames of ``show()``)."""
    global _palette
    with _palette_lock:
        if _palette is None:
            cv2 = _cv2()
            colors = cv2.applyColorMap(np.arange(0, 255).astype(np.uint8), cv2.COLORMAP_HSV)
            _palette = np.ascontiguousarray(colors.reshape(255, 3))
            _palette.flags.writeable = False
        return _palette


def __getattr__(name):
    if name == "COLORS":  # metavision_ml's module attribute, computed on first use
        return get_palette()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _label_text(label_map, class_id: int) -> str:
    try:
        return str(label_map[class_id])
    except (IndexError, KeyError, TypeError):
        return str(class_id)  # e.g. ignored boxes (class -1 as uint32) or ids beyond the map


def draw_box_events(frame, box_events, label_map, force_color=None, draw_score=True, thickness=1,
                    color_from="class_id", confidence_field="class_confidence", dic_history={}):  # noqa: B006
    """Draw boxes and their class names (plus the score with ``draw_score``) on an ``[H, W, 3]`` uint8 image,
    in place; returns the image. Nothing happens without boxes.

    ``label_map``: class names indexed by class id (list or dict; the tutorial uses
    ``['background'] + wanted_keys``). The colour of a box is ``palette[(box[color_from] * 60) % 255]``
    (``color_from`` must be an integer field), or ``force_color`` (3 values) for all. With
    ``color_from="track_id"``, the centres of the track's past boxes in ``dic_history[track_id]`` are joined
    by 4-pixel lines."""
    if box_events is None or np.ndim(box_events) == 0 or len(box_events) == 0:
        return frame
    box_events = np.asarray(box_events)
    names = box_events.dtype.names or ()
    if confidence_field not in names:
        raise ValueError(f"draw_box_events: confidence field {confidence_field!r} is not a field of {names}")
    cv2 = _cv2()
    height, width = frame.shape[:2]

    # Corners clipped into the image, truncated to int.
    x, y = box_events["x"], box_events["y"]
    left = np.clip(x, 0, width - 1).astype(int)
    top = np.clip(y, 0, height - 1).astype(int)
    right = np.clip(x + box_events["w"], 0, width - 1).astype(int)
    bottom = np.clip(y + box_events["h"], 0, height - 1).astype(int)

    if force_color is not None:
        if len(force_color) != 3:
            raise ValueError(f"force_color must have 3 values, got {force_color!r}")
        colors = np.array([force_color] * len(box_events), dtype=np.uint8)
    else:
        if color_from not in names:
            raise ValueError(f"draw_box_events: color_from {color_from!r} is not a field of {names}")
        if not np.issubdtype(box_events[color_from].dtype, np.integer):
            raise ValueError(f"draw_box_events: color_from field {color_from!r} must be an integer field")
        palette = get_palette()
        colors = palette[box_events[color_from] * 60 % len(palette)]

    for i in range(len(box_events)):
        color = colors[i].tolist()
        tlx, tly, brx, bry = int(left[i]), int(top[i]), int(right[i]), int(bottom[i])
        cv2.rectangle(frame, (tlx, tly), (brx, bry), color, thickness)
        text = _label_text(label_map, int(box_events["class_id"][i]))
        if draw_score:
            text += " {:.2f}".format(box_events[confidence_field][i])
        origin = (int(tlx + 0.05 * (brx - tlx)), int(tly + 0.94 * (bry - tly)))
        cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.7, color)
        if color_from == "track_id":
            history = dic_history[box_events["track_id"][i]]
            cx, cy = int((tlx + brx) / 2), int((tly + bry) / 2)
            for past in history[::-1]:
                px, py = int(past["x"] + past["w"] / 2), int(past["y"] + past["h"] / 2)
                cv2.line(frame, (cx, cy), (px, py), color, thickness=4)
                cx, cy = px, py
    return frame
