# SPDX-License-Identifier: Apache-2.0
"""The Python examples run as a user runs them (a fresh interpreter, from another folder), in their fast
modes: the seed tutorial as a script (frames to files) and the detector training script."""
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("cv2")

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"


def _run(script, cwd, env=None, args=()):
    full_env = dict(os.environ, **(env or {}))
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=full_env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_tutorial_script(tmp_path):
    work = tmp_path / "tutorial"
    out = _run("tutorial.py", tmp_path, {"DOC_DISPLAY": "OFF", "TUTORIAL_DIR": str(work),
                                         "TUTORIAL_MAX_FRAMES": "3", "TUTORIAL_TRAIN_STEPS": "2"})
    assert "input shape: torch.Size([3, 2, 2, 360, 640])" in out
    assert "box events:  3 lists" in out
    assert "step 1: loss" in out
    for folder in ("sequential_dataloader", "sequential_dataloader_boxes"):
        frames = sorted((work / folder).glob("frame_*.png"))
        assert len(frames) == 3 and all(f.stat().st_size > 0 for f in frames)
    assert (work / "sim_dataset_precomputed" / "label_map_dictionary.json").is_file()
    if "skipping the CDProcessorDataLoader part" not in out:
        assert len(list((work / "stream_dataloader").glob("frame_*.png"))) == 3
        assert (work / "sim_street.raw").is_file()


def test_train_detector_script(tmp_path):
    out = _run("train_detector.py", tmp_path, args=["--fast", "--output", "run"])
    assert "epoch 0: loss" in out and "val AP@0.5" in out
    assert (tmp_path / "run" / "detector.pt").is_file() and (tmp_path / "run" / "history.json").is_file()
    assert (tmp_path / "detector_dataset" / "train").is_dir()
