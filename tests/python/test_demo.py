# SPDX-License-Identifier: Apache-2.0
"""`evloader demo` in its short mode (tiny dataset, a few steps) and the pieces of its detector: targets,
decoding, the memory reset of truncated BPTT, average precision."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

import evloader  # noqa: E402
from evloader.demo import run_demo, short_config  # noqa: E402
from evloader.demo.evaluate import average_precision, iou_matrix, mean_ap  # noqa: E402
from evloader.demo.model import (RecurrentDetector, build_targets, decode,  # noqa: E402
                                 detection_loss)


def _boxes(rows):
    out = np.zeros(len(rows), evloader.EventBbox)
    for i, (x, y, w, h, c) in enumerate(rows):
        out[i]["x"], out[i]["y"], out[i]["w"], out[i]["h"], out[i]["class_id"] = x, y, w, h, c
    return out


def test_average_precision_against_hand_counts():
    gt = [np.array([[0, 0, 10, 10, 1], [20, 20, 10, 10, 1]], np.float32), np.array([[0, 0, 8, 8, 2]], np.float32)]
    perfect = [np.array([[0, 0, 10, 10, 0.9, 1], [20, 20, 10, 10, 0.8, 1]]), np.array([[0, 0, 8, 8, 0.7, 2]])]
    assert average_precision(perfect, gt, 3) == pytest.approx({1: 1.0, 2: 1.0, 3: math.nan}, nan_ok=True)
    # One of two found (the other detection misses): precision 1 up to recall 0.5, then nothing.
    half = [np.array([[0, 0, 10, 10, 0.9, 1], [50, 50, 10, 10, 0.8, 1]]), np.zeros((0, 6))]
    ap = average_precision(half, gt, 2)
    assert ap[1] == pytest.approx(51 / 101) and ap[2] == 0.0
    # A false positive ranked first halves the precision at every recall.
    fp_first = [np.array([[50, 50, 10, 10, 0.95, 1], [0, 0, 10, 10, 0.9, 1], [20, 20, 10, 10, 0.8, 1]]),
                np.zeros((0, 6))]
    assert average_precision(fp_first, gt, 1)[1] == pytest.approx(2 / 3)
    # The wrong class or a poor overlap does not count; a duplicate is a false positive.
    assert average_precision([np.array([[0, 0, 10, 10, 0.9, 2]]), np.zeros((0, 6))], gt, 1)[1] == 0.0
    assert average_precision([np.array([[6, 6, 10, 10, 0.9, 1]]), np.zeros((0, 6))], gt, 1)[1] == 0.0
    assert mean_ap({1: 0.5, 2: math.nan, 3: 1.0}) == 0.75
    assert iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 10, 10]]))[0, 0] == pytest.approx(50 / 150)


def test_targets_decode_back_to_the_boxes():
    frames = [_boxes([(10, 8, 24, 12, 3), (40, 20, 6, 16, 1)]), _boxes([])]
    heat, index, regress = build_targets(frames, 3, 48, 64)
    assert heat.shape == (2, 3, 12, 16) and heat[1].max() == 0
    assert heat[0, 2].max() == 1.0 and heat[0, 0].max() == 1.0 and len(index) == 2
    # Outputs that say exactly what the targets say decode to the boxes.
    logits = torch.full((2, 3, 12, 16), -20.0)
    size, offset = torch.zeros(2, 2, 12, 16), torch.zeros(2, 2, 12, 16)
    for (f, iy, ix), (lw, lh, ox, oy), cls in zip(index, regress, [2, 0]):
        logits[f, cls, iy, ix] = 5.0
        size[f, :, iy, ix] = torch.tensor([lw, lh])
        offset[f, :, iy, ix] = torch.tensor([ox, oy])
    dets = decode({"heatmap": logits, "size": size, "offset": offset})
    assert len(dets[1]) == 0 and len(dets[0]) == 2
    found = dets[0][np.argsort(dets[0][:, 5])]
    expected = np.array([[40, 20, 6, 16], [10, 8, 24, 12]], np.float32)
    assert np.allclose(found[:, :4], expected, atol=1e-3) and list(found[:, 5]) == [1, 3]


def test_reset_keeps_or_forgets_memory_per_slot_and_cuts_the_graph():
    torch.manual_seed(0)
    net = RecurrentDetector(2, 3, 8)
    x = torch.rand(3, 2, 32, 32)
    net(x)
    before = net.state.clone()
    assert net.state.requires_grad
    net.reset(torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1, 1))
    assert not net.state.requires_grad
    assert torch.equal(net.state[0], before[0]) and torch.equal(net.state[2], before[2])
    assert float(net.state[1].abs().sum()) == 0.0
    net.reset(None)
    assert net.state is None


@pytest.fixture
def one_thread():
    # Tiny tensors: one thread is faster, and much faster on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_loss_falls_when_fitting_one_batch(one_thread):
    torch.manual_seed(0)
    net = RecurrentDetector(2, 3, 8)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    x = torch.zeros(2, 2, 48, 64)
    x[0, 1, 8:20, 10:34] = 1.0  # a "car" of events
    x[1, 0, 20:36, 40:46] = 1.0  # a "pedestrian"
    frames = [_boxes([(10, 8, 24, 12, 3)]), _boxes([(40, 20, 6, 16, 1)])]
    losses = []
    for _ in range(30):
        net.reset(None)
        opt.zero_grad()
        loss = detection_loss(net(x), frames, 3)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_short_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    metrics = run_demo(short_config(str(out)))
    printed = capsys.readouterr().out
    for step in range(1, 7):
        assert f"[{step}/6]" in printed
    assert "frames/s" in printed and "waited for data" in printed and "AP@0.5" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["classes"] == ["pedestrian", "two wheeler", "car"]
    assert set(saved["ap50"]) == {"pedestrian", "two wheeler", "car"}
    assert saved["training"]["steps"] == 3 and saved["training"]["loss_history"]
    assert 0.0 <= saved["training"]["wait_share"] <= 1.0
    assert saved["loader_benchmark"]["frames_per_s"] > 0
    assert metrics["array_dim"] == [4, 2, 48, 64]
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 96 and sheet.shape[1] > 128
    if saved["video"]:
        video = cv2.VideoCapture(saved["video"])
        assert video.get(cv2.CAP_PROP_FRAME_COUNT) > 0
    assert (out / "detector.pt").is_file()
    assert (out / "sample_dataset" / "dataset_info.json").is_file()


def test_demo_cli_on_a_users_dataset(tmp_path, capsys):
    from evloader.cli import main
    from evloader.samples import write_dataset

    data = tmp_path / "mydata"
    write_dataset(data, recordings=3, duration_s=1.0, size=(128, 96), seed=2, jobs=1, progress=False)
    out = tmp_path / "out"
    assert main(["demo", "--short", "--dataset", str(data), "--output", str(out), "--steps", "2", "-q"]) == 0
    printed = capsys.readouterr().out
    assert str(data) in json.loads((out / "metrics.json").read_text())["dataset"]
    assert "building the sample dataset" not in printed and not (out / "sample_dataset").exists()
    # A dataset without a val split is refused with a message.
    (data / "val" / "sim_2_001.raw").unlink()
    assert main(["demo", "--short", "--dataset", str(data), "--output", str(out), "-q"]) == 1
    assert "val" in capsys.readouterr().err


def test_demo_refuses_cuda_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from evloader.cli import main

    assert main(["demo", "--short", "--device", "cuda", "--output", str(tmp_path / "o"), "-q"]) == 1
    assert "CUDA" in capsys.readouterr().err
