# SPDX-License-Identifier: Apache-2.0
"""Numpy dtypes of the records evloader exchanges, identical to Metavision's."""
import numpy as np

#: Change-detection events: x, y, p, t, itemsize 16 (Metavision ``EventCD``).
EventCD = np.dtype({"names": ["x", "y", "p", "t"], "formats": ["<u2", "<u2", "<i2", "<i8"],
                    "offsets": [0, 2, 4, 8], "itemsize": 16})

#: External trigger events: p, t, id, itemsize 24 (Metavision ``EventExtTrigger``).
EventExtTrigger = np.dtype({"names": ["p", "t", "id"], "formats": ["<i2", "<i8", "<i2"],
                            "offsets": [0, 8, 16], "itemsize": 24})

#: Box labels (Metavision ``EventBbox``, the toolbox's ``BBOX_DTYPE``), itemsize 40.
EventBbox = np.dtype({"names": ["t", "x", "y", "w", "h", "class_id", "track_id", "class_confidence"],
                      "formats": ["<i8", "<f4", "<f4", "<f4", "<f4", "<u4", "<u4", "<f4"],
                      "offsets": [0, 8, 12, 16, 20, 24, 28, 32], "itemsize": 40})


def view_records(raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """View a uint8 [n, itemsize] array from the core as a 1-D structured array (no copy)."""
    return raw.view(dtype).reshape(-1)


def as_record_bytes(array, dtype: np.dtype, what: str) -> np.ndarray:
    """Bytes of `array` laid out as `dtype`, converting field by field when the layout differs
    (for example expelliarmus's (t, x, y, p) arrays). Raises ValueError when a field is missing."""
    array = np.asarray(array)
    if array.dtype != dtype:
        if array.dtype.names is None:
            raise ValueError(f"{what}: expected a structured array with fields {dtype.names}, got {array.dtype}")
        missing = [n for n in dtype.names if n not in array.dtype.names]
        if missing:
            raise ValueError(f"{what}: the array lacks the fields {missing}")
        converted = np.zeros(array.shape, dtype=dtype)
        for name in dtype.names:
            converted[name] = array[name]
        array = converted
    array = np.ascontiguousarray(array.reshape(-1))
    return array.view(np.uint8)
