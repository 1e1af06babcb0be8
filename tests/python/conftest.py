# SPDX-License-Identifier: Apache-2.0
import os
import pathlib

import numpy as np
import pytest

import evloader

REPO = pathlib.Path(__file__).resolve().parents[2]


def _real_dir():
    env = os.environ.get("EVLOADER_DATA_DIR")
    path = pathlib.Path(env) if env else REPO.parent / "shared" / "data" / "real"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def real_dir():
    path = _real_dir()
    if path is None:
        pytest.skip("real recordings not found (../shared/data/real or EVLOADER_DATA_DIR)")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Index files of the tests go to a private cache, never to ~/.cache.
    monkeypatch.setenv("EVLOADER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def make_events(n, width=640, height=480, seed=0, t0=0, max_gap=40):
    """Sorted random events with runs of neighbouring pixels (which exercise the vector words)."""
    rng = np.random.default_rng(seed)
    t = t0 + np.cumsum(rng.integers(0, max_gap, size=n) * (rng.random(n) < 0.4))
    events = np.zeros(n, dtype=evloader.EventCD)
    events["t"] = t
    events["x"] = rng.integers(0, width, size=n)
    events["y"] = rng.integers(0, height, size=n)
    events["p"] = rng.integers(0, 2, size=n)
    return events


def canonical(events):
    """Events sorted by (t, y, p, x): the order-independent form within one timestamp."""
    return np.sort(events, order=["t", "y", "p", "x"])
