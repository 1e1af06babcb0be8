# SPDX-License-Identifier: Apache-2.0
"""evloader: fast, deterministic data loading for event cameras.

Importing evloader has no side effects: no global torch or numpy settings are changed, no HDF5 filter is
registered (``evloader.hdf5.register_ecf_filter()`` does that on request), torch is imported only by the loaders.
"""
from ._core import ConfigError, DecodeStats, Error, FormatError, IoError
from ._dtypes import EventBbox, EventCD, EventExtTrigger
from .io import (DatWriter, Decoder, EventReader, EventsIterator, RawWriter, open_reader, read_boxes,
                 write_boxes)
from .samples import get_sample

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DecodeStats", "Error", "FormatError", "IoError",
    "EventBbox", "EventCD", "EventExtTrigger",
    "DatWriter", "Decoder", "EventReader", "EventsIterator", "RawWriter", "get_sample", "open_reader",
    "read_boxes", "write_boxes",
]
# Submodules, imported on use: evloader.data (SequentialDataLoader, box_processing), evloader.preprocessing,
# evloader.tensor_file, evloader.precompute, evloader.hdf5, evloader.viz, evloader.compat.
