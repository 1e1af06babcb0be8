# SPDX-License-Identifier: Apache-2.0
"""Replays the label-map fuzz corpus and kept crash reproducers (tests/fuzz/{corpus,regressions}/label_map)
through the atheris harness's check function, so CI guards them without atheris."""
import importlib.util
import pathlib

import pytest

FUZZ = pathlib.Path(__file__).resolve().parents[1] / "fuzz"


def _harness():
    spec = importlib.util.spec_from_file_location("fuzz_label_map", FUZZ / "python" / "fuzz_label_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INPUTS = sorted(p for kind in ("corpus", "regressions") for p in (FUZZ / kind / "label_map").glob("*")
                if p.is_file() and p.name != ".gitkeep")


@pytest.fixture(scope="module")
def harness():
    return _harness()


def test_label_map_inputs_exist():
    assert len(INPUTS) >= 5


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_label_map_replay(harness, path):
    harness.check(path.read_bytes())
