# SPDX-License-Identifier: Apache-2.0
"""A small recurrent detector for event tensors: convolutional encoder, a convolutional GRU that carries
memory from one time bin to the next, and a CenterNet-style head (class heat maps, box sizes, centre offsets)
at a quarter of the input resolution.

The recurrence matters for event cameras: a slow or stopping object fires few events, and the memory keeps
what earlier bins showed. ``reset(mask_keep_memory)`` zeroes the memory of the batch slots where a new
recording starts and detaches it from the graph of the previous batch (truncated back-propagation through
time), exactly as in the seed tutorial's training loop.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4  # output cell size in input pixels


def _conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvGRUCell(nn.Module):
    """GRU whose gates are 3x3 convolutions over [input, hidden]."""

    def __init__(self, cin: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(cin + hidden, 2 * hidden, 3, 1, 1)
        self.candidate = nn.Conv2d(cin + hidden, hidden, 3, 1, 1)

    def forward(self, x, h):
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden, x.shape[2], x.shape[3])
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * c


class RecurrentDetector(nn.Module):
    """Input ``[N, C, H, W]`` (one time bin); output dict of ``heatmap`` logits ``[N, K, H/4, W/4]``, ``size``
    (log box width and height in cells) and ``offset`` (centre offset in cells), each ``[N, 2, H/4, W/4]``."""

    def __init__(self, in_channels: int = 2, num_classes: int = 3, width: int = 32):
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.stem = nn.Sequential(_conv(in_channels, w // 2, 2), _conv(w // 2, w, 2), _conv(w, w))  # stride 4
        self.down = _conv(w, int(1.5 * w), 2)  # stride 8
        self.gru = ConvGRUCell(int(1.5 * w), w)
        self.fuse = _conv(2 * w, w)
        self.heatmap = nn.Conv2d(w, num_classes, 1)
        self.box = nn.Conv2d(w, 4, 1)
        # CenterNet's prior: heat maps start near 0.1 so that the focal loss does not explode at first.
        nn.init.constant_(self.heatmap.bias, -2.19)
        nn.init.zeros_(self.box.weight)
        nn.init.zeros_(self.box.bias)
        self.state: Optional[torch.Tensor] = None

    def reset(self, mask_keep_memory: Optional[torch.Tensor] = None) -> None:
        """Keep the memory where ``mask_keep_memory`` is 1 (the slot continues its recording), zero it where 0;
        detach it from the previous graph (truncated BPTT). ``None`` forgets everything."""
        if self.state is None:
            return
        if mask_keep_memory is None:
            self.state = None
            return
        mask = mask_keep_memory.to(self.state.device, self.state.dtype).view(-1, 1, 1, 1)
        if mask.shape[0] != self.state.shape[0]:
            self.state = None
            return
        self.state = self.state.detach() * mask

    def forward(self, x: torch.Tensor) -> dict:
        f4 = self.stem(x)
        f8 = self.down(f4)
        self.state = self.gru(f8, self.state)
        up = F.interpolate(self.state, size=f4.shape[-2:], mode="nearest")
        feat = self.fuse(torch.cat([f4, up], 1))
        box = self.box(feat)
        return {"heatmap": self.heatmap(feat), "size": box[:, :2], "offset": box[:, 2:]}


# --- targets and loss -----------------------------------------------------------------------------------------
def _boxes_array(labels) -> np.ndarray:
    """(x, y, w, h, class) float rows of the boxes of one frame (EventBbox array, or empty / nan padding)."""
    if labels is None or isinstance(labels, float) or not hasattr(labels, "dtype") or labels.dtype.names is None:
        return np.zeros((0, 5), np.float32)
    if len(labels) == 0:
        return np.zeros((0, 5), np.float32)
    return np.stack([labels["x"], labels["y"], labels["w"], labels["h"],
                     labels["class_id"].astype(np.int64)], 1).astype(np.float32)


def build_targets(frames: Sequence, num_classes: int, height: int, width: int):
    """CenterNet targets for a list of frames (each an EventBbox array in input pixels, class ids 1..K):
    ``heatmap [F, K, h, w]`` (elliptic Gaussians, TTFNet-style), and per object its frame, cell index and
    regression targets (log size and offset, in cells)."""
    h, w = height // STRIDE, width // STRIDE
    heat = np.zeros((len(frames), num_classes, h, w), np.float32)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    index, regress = [], []
    for f, labels in enumerate(frames):
        for x, y, bw, bh, cls in _boxes_array(labels):
            c = int(cls) - 1
            if c < 0 or c >= num_classes or bw <= 0 or bh <= 0:
                continue
            cx, cy = (x + 0.5 * bw) / STRIDE, (y + 0.5 * bh) / STRIDE
            ix, iy = min(w - 1, max(0, int(cx))), min(h - 1, max(0, int(cy)))
            sx, sy = max(0.5, bw / STRIDE / 6), max(0.5, bh / STRIDE / 6)  # a third of the half size
            g = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
            np.maximum(heat[f, c], g, out=heat[f, c])
            heat[f, c, iy, ix] = 1.0
            index.append((f, iy, ix))
            regress.append((math.log(bw / STRIDE), math.log(bh / STRIDE), cx - ix, cy - iy))
    return heat, np.asarray(index, np.int64).reshape(-1, 3), np.asarray(regress, np.float32).reshape(-1, 4)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of objects."""
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred ** 2 * (1 - target) ** 4 * neg
    n = pos.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / torch.clamp(n, min=1.0)


def detection_loss(outputs: dict, frames: Sequence, num_classes: int) -> dict:
    """Loss of the outputs of F frames (dict of [F, ...] tensors) against their labels."""
    heat_logits = outputs["heatmap"]
    _, _, h, w = heat_logits.shape
    heat, index, regress = build_targets(frames, num_classes, h * STRIDE, w * STRIDE)
    device = heat_logits.device
    heat = torch.from_numpy(heat).to(device)
    hm = focal_loss(heat_logits, heat)
    if len(index):
        idx = torch.from_numpy(index).to(device)
        reg = torch.from_numpy(regress).to(device)
        size = outputs["size"][idx[:, 0], :, idx[:, 1], idx[:, 2]]
        offset = outputs["offset"][idx[:, 0], :, idx[:, 1], idx[:, 2]]
        size_loss = F.smooth_l1_loss(size, reg[:, :2], beta=0.1)
        offset_loss = F.smooth_l1_loss(offset, reg[:, 2:], beta=0.1)
    else:
        size_loss = offset_loss = heat_logits.sum() * 0
    total = hm + size_loss + offset_loss
    return {"loss": total, "heatmap": hm.detach(), "size": size_loss.detach(), "offset": offset_loss.detach()}


@torch.no_grad()
def decode(outputs: dict, top_k: int = 50, threshold: float = 0.05) -> List[np.ndarray]:
    """Detections per frame: arrays of rows (x, y, w, h, score, class id 1..K) in input pixels."""
    heat = torch.sigmoid(outputs["heatmap"])
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat).float()
    n, k, h, w = heat.shape
    scores, flat = peaks.view(n, -1).topk(min(top_k, k * h * w))
    cls = flat // (h * w)
    cell = flat % (h * w)
    iy, ix = cell // w, cell % w
    out = []
    size = outputs["size"].float()
    offset = outputs["offset"].float()
    for i in range(n):
        keep = scores[i] >= threshold
        ys, xs, c, s = iy[i][keep], ix[i][keep], cls[i][keep], scores[i][keep]
        bw = torch.exp(size[i, 0, ys, xs].clamp(max=6)) * STRIDE
        bh = torch.exp(size[i, 1, ys, xs].clamp(max=6)) * STRIDE
        cx = (xs.float() + offset[i, 0, ys, xs]) * STRIDE
        cy = (ys.float() + offset[i, 1, ys, xs]) * STRIDE
        det = torch.stack([cx - bw / 2, cy - bh / 2, bw, bh, s, (c + 1).float()], 1)
        out.append(det.cpu().numpy())
    return out
