# SPDX-License-Identifier: Apache-2.0
"""Event-to-tensor preprocessings with the API of ``metavision_ml.preprocessing`` (SDK 4.2.1).

Every kernel is called as ``fn(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True,
**kwargs)``: ``events`` is an ``EventCD`` structured array with timestamps relative to the window start,
``output_array`` a preallocated C-contiguous ``[T, C, H, W]`` numpy array written in place (never copied).
The C++ kernels release the GIL, so several threads can run them at once on different outputs.

Differences from the reference, all in places where it would misbehave (see docs/preprocessing.md):
events it would write out of bounds are dropped; bad parameters raise ``ValueError``
(``evloader.ConfigError``) before anything is written, instead of an ``AssertionError`` or memory
corruption; ``viz_timesurface`` returns RGB where OpenCV's colormap gives BGR.

Importing this module has no side effects (no torch, no global settings).
"""
from __future__ import annotations

import copy
import functools
import numbers
from typing import Any, Callable, Dict, Optional

import numpy as np

from . import _core
from ._dtypes import EventCD, as_record_bytes

__all__ = [
    "PREPROCESSING_DICT", "register_new_preprocessing", "get_preprocess_dict", "get_preprocess_function_names",
    "get_preprocess_kwargs_keys", "is_native_preprocessing", "CDProcessor",
    "histo", "diff", "timesurface", "event_cube", "multi_channel_timesurface", "diff_quantized", "histo_quantized",
    "viz_histo", "viz_diff", "viz_timesurface", "viz_event_cube_rgb", "viz_histo_filtered", "viz_histo_binarized",
    "viz_diff_binarized", "viz_multichannel_timesurface", "viz_histo_rgb", "gray_to_rgb", "normalize",
    "filter_outliers", "BG_COLOR", "POS_COLOR", "NEG_COLOR",
]

#: Metavision's colours (RGB): background, positive, negative.
BG_COLOR = np.array([30, 37, 52], dtype=np.uint8)
POS_COLOR = np.array([216, 223, 236], dtype=np.uint8)
NEG_COLOR = np.array([64, 126, 201], dtype=np.uint8)

_KERNEL_DTYPES = ("float32", "float64", "int8", "uint8", "int16", "int32", "int64")
# dtype -> name by lookup: numpy's dtype.name is computed in Python at every access (microseconds). Only
# native byte order matches.
_DTYPE_NAMES = {np.dtype(n): n for n in _KERNEL_DTYPES}


def _kwarg_value(key: str, value: Any):
    """A kwarg as the core takes it: None, bool, int, float or str (numpy scalars and dtypes converted)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.dtype, type)):
        try:
            return np.dtype(value).name
        except TypeError:
            pass
    raise _core.ConfigError(f"kwarg {key!r}: unsupported value {value!r}")


def _integer(name: str, what: str, value) -> int:
    if type(value) is int:
        return value
    if isinstance(value, (bool, np.bool_)):
        raise _core.ConfigError(f"{name}: {what} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    raise _core.ConfigError(f"{name}: {what} must be an integer, got {value!r}")


@functools.lru_cache(maxsize=512)
def _preprocessor(name: str, items: tuple) -> "_core.Preprocessor":
    return _core.make_preprocessor(name, dict(items))


def _run(name: str, events, output_array, total_tbins_delta_t, downsampling_factor, reset, kwargs) -> None:
    if not isinstance(output_array, np.ndarray):
        raise _core.ConfigError(f"{name}: output_array must be a numpy array, got {type(output_array).__name__}")
    dtype_name = _DTYPE_NAMES.get(output_array.dtype)
    if dtype_name is None:
        raise _core.ConfigError(f"{name}: output dtype {output_array.dtype} is not supported "
                                f"(use one of {', '.join(_KERNEL_DTYPES)}, native byte order)")
    if output_array.ndim != 4:
        raise _core.ConfigError(f"{name}: output_array must be [T, C, H, W], got shape {output_array.shape}")
    if not output_array.flags.c_contiguous:
        raise _core.ConfigError(f"{name}: output_array must be C-contiguous (it is written in place)")
    if not output_array.flags.writeable:
        raise _core.ConfigError(f"{name}: output_array is read-only")
    items = {k: _kwarg_value(k, v) for k, v in kwargs.items()}
    # The output decides the dtype; a preprocess_dtype among the kwargs (registry kwargs passed as they
    # are) only describes what a loader would allocate.
    items["preprocess_dtype"] = dtype_name
    pre = _preprocessor(name, tuple(sorted(items.items())))
    total = _integer(name, "total_tbins_delta_t", total_tbins_delta_t)
    ds = _integer(name, "downsampling_factor", downsampling_factor)
    pre.run(as_record_bytes(events, EventCD, "events"), output_array, total, ds, bool(reset))


def histo(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True, **kwargs):
    """Two-channel (OFF, ON) histogram, each event adding ``1 / (max_incr_per_pixel * 4**ds)`` up to 1.

    kwargs: ``max_incr_per_pixel`` (default 5; None means increments of 1).
    """
    _run("histo", events, output_array, total_tbins_delta_t, downsampling_factor, reset, kwargs)


def diff(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True, **kwargs):
    """One-channel ON - OFF histogram in [-1, 1] (signed or float output). kwargs: ``max_incr_per_pixel``."""
    _run("diff", events, output_array, total_tbins_delta_t, downsampling_factor, reset, kwargs)


def timesurface(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True, **kwargs):
    """Two-channel linear time surface: latest ``t - bin * dt`` per pixel, divided by dt when ``normed``
    (default True). Float or >= 4-byte integer output. Other kwargs are accepted and ignored."""
    _run("timesurface", events, output_array, total_tbins_delta_t, downsampling_factor, reset, kwargs)


def multi_channel_timesurface(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True,
                              **kwargs):
    """Time surface with C/2 micro-bins per time bin: channel ``2m + p`` of bin t is micro-bin ``t*C/2 + m``.
    Float output, even C."""
    _run("multi_channel_timesurface", events, output_array, total_tbins_delta_t, downsampling_factor, reset,
         kwargs)


def event_cube(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True, **kwargs):
    """Event cube (Zhu et al. 2018): events spread bilinearly in time over T*C/2 micro-bins (split_polarity,
    default) or T*C signed micro-bins, clamped to [-1, 1]. kwargs: ``split_polarity``,
    ``max_incr_per_pixel`` (default 5; the registry's ``event_cube_paper`` uses 255/4 and 10 channels)."""
    _run("event_cube", events, output_array, total_tbins_delta_t, downsampling_factor, reset, kwargs)


def diff_quantized(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True, **kwargs):
    """Sensor-style DIFF3D frame: saturating ON - OFF counters on ``negative_bit_length`` bits (2..8), int8
    output; with downsampling (average pooling) or ``normalization`` (divide by 2**(nbl-1)) a float output."""
    _run("diff_quantized", events, output_array, total_tbins_delta_t, downsampling_factor, reset, kwargs)


def histo_quantized(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True, **kwargs):
    """Sensor-style HISTO3D frame: OFF counters up to 2**nbl - 1, ON up to 2**(total_bit_length - nbl) - 1,
    uint8 output; with downsampling (average pooling) or ``normalization`` (divide by the larger clamp) a
    float output."""
    _run("histo_quantized", events, output_array, total_tbins_delta_t, downsampling_factor, reset, kwargs)


# ---------------------------------------------------------------------------------------------------------
# Visualisations (C++): [H, W, 3] uint8 RGB images of one time bin [C, H, W].

def _frame(im, min_channels: int = 1) -> np.ndarray:
    """[C, H, W] C-contiguous in a dtype the core reads (others are converted to float32, as the
    reference's astype(np.float32) would)."""
    im = np.asarray(im)
    if im.ndim == 2:
        im = im[None]
    if im.ndim != 3:
        raise _core.ConfigError(f"expected a [C, H, W] or [H, W] array, got shape {im.shape}")
    if im.shape[0] < min_channels:
        raise _core.ConfigError(f"expected at least {min_channels} channels, got shape {im.shape}")
    if im.dtype not in _DTYPE_NAMES:
        im = im.astype(np.float32)
    return np.ascontiguousarray(im)


def viz_histo_binarized(im) -> np.ndarray:
    """Background colour, POS_COLOR where channel 0 > 0, then NEG_COLOR where channel 1 > 0 (ON events show
    in NEG_COLOR, as in the reference)."""
    return _core.viz_rgb("viz_histo_binarized", _frame(im, 2))


def viz_diff_binarized(im) -> np.ndarray:
    """POS_COLOR where channel 0 > 0, NEG_COLOR where < 0, background elsewhere."""
    return _core.viz_rgb("viz_diff_binarized", _frame(im, 1))


def viz_diff(im) -> np.ndarray:
    """Gray uint8 image of the same shape: clipped to mean +- 3 std, min-max normalised; all 127 when blank."""
    a = np.asarray(im)
    flat = _frame(a.reshape(1, 1, -1) if a.size else a.reshape(1, 1, 0))
    if flat.size == 0:
        return np.zeros(a.shape, np.uint8)
    return _core.viz_gray("viz_diff", flat).reshape(a.shape)


def viz_histo(im) -> np.ndarray:
    """viz_diff of ``im[1] - im[0]`` (shape ``im.shape[1:]``)."""
    a = np.asarray(im)
    if a.ndim < 2 or a.shape[0] < 2:
        raise _core.ConfigError(f"viz_histo: expected [2, H, W], got shape {a.shape}")
    rest = a.shape[1:]
    n = int(np.prod(rest))
    if n == 0:
        return np.zeros(rest, np.uint8)
    return _core.viz_gray("viz_histo", _frame(a[:2].reshape(2, 1, n))).reshape(rest)


def gray_to_rgb(im) -> np.ndarray:
    """Repeat a gray image on three channels."""
    return np.asarray(im)[..., None].repeat(3, 2)


def viz_histo_rgb(im) -> np.ndarray:
    """viz_histo on three channels."""
    return _core.viz_rgb("viz_histo_rgb", _frame(im, 2))


def viz_histo_filtered(im, val_max=0.5) -> np.ndarray:
    """``clip(im[1] - im[0], +-val_max)`` mapped to 0..255, gray on three channels."""
    return _core.viz_rgb("viz_histo_filtered", _frame(im, 2), False, float(val_max))


def viz_timesurface(im) -> np.ndarray:
    """JET colormap (RGB order) of ``uint8(v * 255)``, v the max of the two planes of a [2, H, W] input, or the
    [H, W] input itself. The reference returns OpenCV's BGR order: ours is its last axis reversed."""
    a = np.asarray(im)
    if a.ndim == 3 and a.shape[0] not in (1, 2):
        raise _core.ConfigError(f"viz_timesurface: expected [2, H, W] or [H, W], got shape {a.shape}")
    return _core.viz_rgb("viz_timesurface", _frame(a))


def viz_event_cube_rgb(im, split_polarity=True) -> np.ndarray:
    """Three micro-bins as R, G, B: viz_histo of channel pairs (0,1), (2,3), (4,5) with split polarity, else
    viz_diff of channels 0, 1, 2."""
    return _core.viz_rgb("viz_event_cube_rgb", _frame(im, 6 if split_polarity else 3), bool(split_polarity))


def viz_multichannel_timesurface(tensor, blend=False) -> np.ndarray:
    """viz_event_cube_rgb of the first three micro-bins; ``blend`` combines all micro-bins into one time
    surface image as the reference does."""
    return _core.viz_rgb("viz_multichannel_timesurface", _frame(tensor, 2), bool(blend))


def normalize(im):
    """Min-max normalisation to [0, 1) (``(im - min) / (max - min + 1e-6)``)."""
    low, high = im.min(), im.max()
    return (im - low) / (high - low + 1e-6)


def filter_outliers(input_val, num_std=2):
    """Clip to mean +- num_std standard deviations."""
    val_range = num_std * input_val.std()
    img_min = input_val.mean() - val_range
    img_max = input_val.mean() + val_range
    return np.clip(input_val, img_min, img_max)


# ---------------------------------------------------------------------------------------------------------
# Registry.

_FUNCTIONS = {
    "diff": (diff, viz_diff_binarized),
    "diff_quantized": (diff_quantized, viz_diff_binarized),
    "histo": (histo, viz_histo_binarized),
    "histo_quantized": (histo_quantized, viz_histo_binarized),
    "timesurface": (timesurface, viz_timesurface),
    "event_cube": (event_cube, viz_event_cube_rgb),
    "event_cube_paper": (event_cube, viz_event_cube_rgb),
    "multi_channel_timesurface": (multi_channel_timesurface, viz_multichannel_timesurface),
}


_KWARG_ORDER = ("preprocess_dtype", "split_polarity", "max_incr_per_pixel", "negative_bit_length",
                "total_bit_length", "normalization")


def _registry_kwargs(name: str) -> Dict[str, Any]:
    kwargs = dict(_core.preprocessor_default_kwargs(name))
    kwargs["preprocess_dtype"] = np.dtype(kwargs["preprocess_dtype"])
    # in the reference's key order
    return {k: kwargs[k] for k in sorted(kwargs, key=lambda k: (_KWARG_ORDER + (k,)).index(k))}


#: name -> {'cin', 'events_to_tensor', 'kwargs', 'viz'}, in the reference's order.
PREPROCESSING_DICT: Dict[str, Dict[str, Any]] = {
    name: {"cin": _core.preprocessor_channels(name), "events_to_tensor": _FUNCTIONS[name][0],
           "kwargs": _registry_kwargs(name), "viz": _FUNCTIONS[name][1]}
    for name in _core.preprocessor_names()
}

_NATIVE = {name: entry["events_to_tensor"] for name, entry in PREPROCESSING_DICT.items()}


def _check_name(preproc_name) -> None:
    if preproc_name not in PREPROCESSING_DICT:
        raise _core.ConfigError(f"preprocessing {preproc_name} does not exist ! (" + ", ".join(PREPROCESSING_DICT)
                                + ")")


def register_new_preprocessing(preproc_name: str, n_input_channels: int, function: Callable,
                               viz_function: Optional[Callable],
                               kwargs: Optional[Dict[str, Any]] = None) -> None:
    """Register a Python preprocessing for this process (re-run it in spawned worker processes).

    ``function(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True, **kwargs)`` fills
    ``output_array`` [T, n_input_channels, H, W] in place; ``viz_function(tensor[C, H, W]) -> [H, W, 3]``.
    ``kwargs`` defaults to ``{'preprocess_dtype': np.dtype('float32'), 'max_incr_per_pixel': 5}``.
    """
    if preproc_name in PREPROCESSING_DICT:
        raise _core.ConfigError(f"preprocessing {preproc_name} already registered ! (" + ", ".join(PREPROCESSING_DICT)
                                + ")")
    if not callable(function):
        raise _core.ConfigError(f"preprocessing {preproc_name}: function must be callable")
    if not isinstance(n_input_channels, numbers.Integral) or n_input_channels < 1:
        raise _core.ConfigError(f"preprocessing {preproc_name}: n_input_channels must be a positive integer")
    if kwargs is None:
        kwargs = {"preprocess_dtype": np.dtype("float32"), "max_incr_per_pixel": 5}
    PREPROCESSING_DICT[preproc_name] = {"cin": int(n_input_channels), "events_to_tensor": function,
                                        "viz": viz_function, "kwargs": kwargs}


def get_preprocess_dict(preproc_name: str) -> Dict[str, Any]:
    """A deep copy of the registry entry: {'cin', 'events_to_tensor', 'kwargs', 'viz'}."""
    _check_name(preproc_name)
    return copy.deepcopy(PREPROCESSING_DICT[preproc_name])


def get_preprocess_function_names():
    """Names of the built-in and registered preprocessings."""
    return list(PREPROCESSING_DICT)


def get_preprocess_kwargs_keys(preproc_name: str):
    """The kwargs names of a preprocessing (a dict keys view)."""
    _check_name(preproc_name)
    return PREPROCESSING_DICT[preproc_name]["kwargs"].keys()


def is_native_preprocessing(preproc_name: str) -> bool:
    """Whether the name is one of the C++ kernels (loaders can then run it without the GIL)."""
    entry = PREPROCESSING_DICT.get(preproc_name)
    return entry is not None and preproc_name in _NATIVE and entry["events_to_tensor"] is _NATIVE[preproc_name]


class CDProcessor:
    """Events -> tensor with a registered preprocessing (metavision_ml's CDProcessor).

    Args:
        height, width: tensor size (after downsampling).
        num_tbins: time bins T.
        preprocessing: registered name.
        downsampling_factor: coordinates are divided by 2**downsampling_factor.
        preprocess_kwargs: merged over the registry's kwargs.
    """

    def __init__(self, height, width, num_tbins=5, preprocessing="histo", downsampling_factor=0,
                 preprocess_kwargs=None):
        self.preprocess_dict = get_preprocess_dict(preprocessing)
        self.preprocess_kwargs = self.preprocess_dict["kwargs"]
        self.preprocess_kwargs.update(preprocess_kwargs or {})
        self.dtype = np.dtype(self.preprocess_kwargs.pop("preprocess_dtype", np.uint8))
        if downsampling_factor > 0 and "quantized" in preprocessing:
            # averaged counters are fractional
            self.dtype = np.dtype("float32")
        self.array = np.zeros((num_tbins, self.preprocess_dict["cin"], height, width), self.dtype)
        self.fun = functools.partial(self.preprocess_dict["events_to_tensor"],
                                     downsampling_factor=downsampling_factor, reset=False, **self.preprocess_kwargs)
        self.viz = self.preprocess_dict["viz"]

    def __call__(self, events, delta_t=None):
        """The tensor of `events` (relative timestamps) over `delta_t` µs (default: last t - first t). Returns
        the internal buffer, overwritten by the next call: copy it to keep it."""
        if delta_t is None:
            delta_t = int(events["t"][-1] - events["t"][0]) if len(events) else 0
        self.array[...] = 0
        self.fun(events, self.array, delta_t)
        return self.array

    def show(self, array):
        return self.viz(array)

    def get_array_dim(self):
        """Shape [T, C, H, W] of the tensor."""
        return self.array.shape

    def get_preprocess_dtype(self):
        return self.array.dtype
