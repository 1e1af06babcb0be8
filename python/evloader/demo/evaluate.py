# SPDX-License-Identifier: Apache-2.0
"""Average precision of box detections at one IoU threshold, per class (COCO's 101-point interpolation)."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (x, y, w, h) rows of ``a`` against those of ``b``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    ax0, ay0, ax1, ay1 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(ax0[:, None], bx0[None]), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(ay0[:, None], by0[None]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / np.maximum(union, 1e-9)


def average_precision(detections: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], num_classes: int,
                      iou_threshold: float = 0.5) -> Dict[int, float]:
    """AP per class id (1..num_classes) over frames.

    ``detections[f]``: rows (x, y, w, h, score, class); ``ground_truth[f]``: rows (x, y, w, h, class).
    Within a frame, detections are matched greedily by decreasing score to the unmatched ground-truth box of
    their class with the highest IoU >= the threshold. AP is the mean of the interpolated precision at the
    recalls 0, 0.01, ..., 1. A class without ground truth gets NaN."""
    result = {}
    for c in range(1, num_classes + 1):
        scores: List[float] = []
        hits: List[bool] = []
        n_gt = 0
        for det, gt in zip(detections, ground_truth):
            d = det[det[:, 5] == c] if len(det) else np.zeros((0, 6))
            g = gt[gt[:, 4] == c] if len(gt) else np.zeros((0, 5))
            n_gt += len(g)
            if not len(d):
                continue
            d = d[np.argsort(-d[:, 4], kind="stable")]
            ious = iou_matrix(d[:, :4], g[:, :4])
            taken = np.zeros(len(g), bool)
            for i in range(len(d)):
                scores.append(float(d[i, 4]))
                if len(g):
                    candidates = np.where(taken, -1.0, ious[i])
                    j = int(np.argmax(candidates))
                    if candidates[j] >= iou_threshold:
                        taken[j] = True
                        hits.append(True)
                        continue
                hits.append(False)
        if n_gt == 0:
            result[c] = float("nan")
            continue
        order = np.argsort(-np.asarray(scores), kind="stable")
        tp = np.asarray(hits, bool)[order] if hits else np.zeros(0, bool)
        ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
        recall = ctp / n_gt
        precision = ctp / np.maximum(ctp + cfp, 1)
        # Precision envelope (best precision at any higher recall), sampled at 101 recalls.
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        points = np.linspace(0, 1, 101)
        idx = np.searchsorted(recall, points, side="left")
        sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, max(len(envelope) - 1, 0))], 0.0) \
            if len(envelope) else np.zeros_like(points)
        result[c] = float(np.mean(sampled))
    return result


def mean_ap(per_class: Dict[int, float]) -> float:
    values = [v for v in per_class.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")
