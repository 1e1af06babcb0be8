# SPDX-License-Identifier: Apache-2.0
"""``get_sample``: metavision_core's sample lookup, without downloads.

Prophesee's sample recordings (the names of ``metavision_core.utils.get_sample``) are looked for in the
given folder and in the folders of the ``EVLOADER_SAMPLES_DIR`` environment variable; evloader never
downloads them. Simulated samples (names starting with ``sim_``) are generated on the spot, deterministically.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Dict, List

from .simulator import LABEL_MAP, SimConfig

__all__ = ["get_sample", "list_samples", "PROPHESEE_SAMPLES", "SIMULATED_SAMPLES", "SAMPLES_DIR_ENV"]

SAMPLES_DIR_ENV = "EVLOADER_SAMPLES_DIR"

#: The names known to ``metavision_core.utils.get_sample`` (behaviour spec §10).
PROPHESEE_SAMPLES = (
    "driving_sample.raw", "pedestrians.raw", "blinking_leds_td.dat", "calib_propheshield_parking.10_sec.raw",
    "80_balls.raw", "195_falling_particles.raw", "laser.raw", "spinner.dat", "spinner.raw", "hand_spinner.raw",
    "traffic_monitoring.raw", "200_jets.raw", "sparklers.raw", "monitoring_40_50hz.raw",
    "day_200618_170002_0_20.raw", "day_200618_mask.png", "MNIST.zip", "mini-dataset",
)

_WHERE_FROM = ("Prophesee publishes its sample recordings with the Metavision SDK documentation "
               "(https://docs.prophesee.ai, 'Recordings and datasets'); evloader does not download anything")

#: Simulated samples: name -> what is generated (320x240 street scenes with _bbox.npy labels, unless said).
SIMULATED_SAMPLES: Dict[str, dict] = {
    "sim_street.raw": dict(kind="evt3", seed=101, scenario="mixed", duration_s=4.0),
    "sim_street_evt2.raw": dict(kind="evt2", seed=101, scenario="mixed", duration_s=4.0),
    "sim_street_td.dat": dict(kind="dat", seed=101, scenario="mixed", duration_s=4.0),
    "sim_traffic.raw": dict(kind="evt3", seed=102, scenario="traffic", duration_s=4.0),
    "sim_pedestrians.raw": dict(kind="evt3", seed=103, scenario="pedestrians", duration_s=4.0),
    "sim_crossing.raw": dict(kind="evt3", seed=104, scenario="mixed", duration_s=4.0),
    # A small dataset in the train/ val/ test/ layout (RAW EVT3, labels, label map).
    "sim_dataset": dict(kind="dataset", seed=7, recordings=6, duration_s=4.0),
    # Like the seed tutorial's "dataset_precomputed": flat folder of histo .h5 files (50 ms, 640x360) with
    # their labels and the label map.
    "sim_dataset_precomputed": dict(kind="precomputed", seed=8, recordings=2, duration_s=2.0, size=(640, 360)),
}


def list_samples() -> List[str]:
    """All names get_sample knows: Prophesee's (found locally or not) and the simulated ones."""
    return list(PROPHESEE_SAMPLES) + list(SIMULATED_SAMPLES)


def _samples_dirs() -> List[str]:
    value = os.environ.get(SAMPLES_DIR_ENV, "")
    return [d for d in value.split(os.pathsep) if d]


def _link_or_copy(src: str, dst: str) -> str:
    """Make ``src`` visible as ``dst`` (a symbolic link; a copy where links are not possible)."""
    try:
        os.symlink(os.path.abspath(src), dst, target_is_directory=os.path.isdir(src))
    except FileExistsError:
        pass
    except OSError:
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
    return dst


def _generate(name: str, spec: dict, target: str) -> None:
    from .dataset import write_dataset, write_recording

    folder = os.path.dirname(target)
    kind = spec["kind"]
    size = spec.get("size", (320, 240))
    if kind in ("evt3", "evt2", "dat"):
        cfg = SimConfig(width=size[0], height=size[1], duration_us=int(spec["duration_s"] * 1e6),
                        scenario=spec.get("scenario", "mixed"))
        base = target[:-len("_td.dat")] if kind == "dat" else target[:-len(".raw")]
        write_recording(base, cfg, spec["seed"], formats=[kind], evt2_base=base)
        return
    # Folders are built next to the target and renamed into place when complete.
    work = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=folder)
    try:
        if kind == "dataset":
            write_dataset(work, recordings=spec["recordings"], duration_s=spec["duration_s"], size=size,
                          seed=spec["seed"], progress=False, overwrite=True, jobs=1)
            final_src = work
        else:  # precomputed, flat
            from ..precompute import precompute

            raw_dir = os.path.join(work, "raw")
            out_dir = os.path.join(work, "out")
            paths = []
            for i in range(spec["recordings"]):
                cfg = SimConfig(width=size[0], height=size[1], duration_us=int(spec["duration_s"] * 1e6),
                                scenario="mixed")
                paths.append(write_recording(os.path.join(raw_dir, f"sim_{spec['seed']}_{i:03d}"), cfg,
                                             [spec["seed"], i])["path"])
            import json

            with open(os.path.join(raw_dir, "label_map_dictionary.json"), "w") as f:
                json.dump(LABEL_MAP, f, indent=1)
            precompute(paths, out_dir, preprocess="histo", delta_t=50000, jobs=1, progress=False)
            final_src = out_dir
        os.replace(final_src, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def get_sample(sample_name: str, folder: str = ".") -> str:
    """The path of a sample recording (``folder/sample_name``), as ``metavision_core.utils.get_sample``.

    * A file (or folder) of that name already in ``folder`` is returned as it is.
    * Prophesee's sample names (:data:`PROPHESEE_SAMPLES`) are also looked for in the folders of the
      ``EVLOADER_SAMPLES_DIR`` environment variable (``os.pathsep``-separated); one found there is linked
      into ``folder``. evloader never downloads: a sample found nowhere raises FileNotFoundError saying where
      such files come from and how to point evloader at them.
    * Simulated samples (:data:`SIMULATED_SAMPLES`, names starting with ``sim_``) are generated into
      ``folder`` on first use (a few seconds), the same bytes every time; their ``_bbox.npy`` labels and,
      for datasets, ``label_map_dictionary.json`` come with them.
    """
    name = os.fspath(sample_name)
    folder = os.fspath(folder)
    if not name or os.path.basename(name) != name:
        raise ValueError(f"get_sample takes a sample name (a file name without folder), got {sample_name!r}")
    target = os.path.join(folder, name)
    if os.path.exists(target):
        return target
    for d in _samples_dirs():
        candidate = os.path.join(d, name)
        if os.path.exists(candidate):
            if os.path.isdir(folder):
                return _link_or_copy(candidate, target)
            return candidate
    if name in SIMULATED_SAMPLES:
        os.makedirs(folder, exist_ok=True)
        _generate(name, SIMULATED_SAMPLES[name], target)
        return target
    looked = [os.path.abspath(folder)] + [os.path.abspath(d) for d in _samples_dirs()]
    env_note = "" if _samples_dirs() else f" ({SAMPLES_DIR_ENV} is not set)"
    simulated = ", ".join(SIMULATED_SAMPLES)
    if name in PROPHESEE_SAMPLES:
        raise FileNotFoundError(
            f"{name} is one of Prophesee's sample recordings and is not on this machine. {_WHERE_FROM}. "
            f"Once you have it, put it in {os.path.abspath(folder)} or in a folder named by the "
            f"{SAMPLES_DIR_ENV} environment variable (export {SAMPLES_DIR_ENV}=/path/to/samples; several folders "
            f"separated by '{os.pathsep}'). Looked in: {', '.join(looked)}{env_note}. Simulated recordings that "
            f"need no download: {simulated}.")
    raise FileNotFoundError(
        f"{name}: not a known sample and not found (looked in: {', '.join(looked)}{env_note}). Known names: "
        f"Prophesee's {', '.join(PROPHESEE_SAMPLES)} ({_WHERE_FROM}) and the simulated {simulated}.")
