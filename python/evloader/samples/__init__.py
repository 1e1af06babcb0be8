# SPDX-License-Identifier: Apache-2.0
"""Sample recordings: a simulated event camera (``evloader sample``) and ``get_sample``.

    >>> from evloader.samples import get_sample, write_dataset, simulate
    >>> path = get_sample("sim_street.raw")            # generated on the spot, with sim_street_bbox.npy
    >>> events, boxes = simulate(seed=3, duration_us=1_000_000)
    >>> write_dataset("my_dataset", recordings=12)     # train/ val/ test/ + label_map_dictionary.json
"""
from .dataset import FORMATS, add_sample_parser, dataset_is_complete, split_counts, write_dataset, write_recording
from .registry import PROPHESEE_SAMPLES, SAMPLES_DIR_ENV, SIMULATED_SAMPLES, get_sample, list_samples
from .simulator import CLASS_NAMES, LABEL_MAP, Recording, SimConfig, simulate

__all__ = ["get_sample", "list_samples", "PROPHESEE_SAMPLES", "SIMULATED_SAMPLES", "SAMPLES_DIR_ENV",
           "write_dataset", "write_recording", "dataset_is_complete", "split_counts", "add_sample_parser",
           "FORMATS", "SimConfig", "Recording", "simulate", "LABEL_MAP", "CLASS_NAMES"]
