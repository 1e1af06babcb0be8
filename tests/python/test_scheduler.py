# SPDX-License-Identifier: Apache-2.0
"""The schedule against the spec's worked example and a pure-Python model of metavision_ml's arithmetic."""
import bisect
import math

import numpy as np
import pytest

from evloader.data import FileMetadata, Scheduler


def model_rounding(duration, total, max_batch=None, tolerance=1000):
    excess = duration % total
    rounded = duration - excess
    if excess and total - excess <= tolerance:
        rounded += total
    if max_batch:
        rounded = min(rounded, max_batch * total)
    return rounded


def model_schedule(durations, delta_t, num_tbins, batch_size, padding, max_consecutive_batch=None):
    """metavision_ml 4.2.1's create_schedule + _construct_schedule + __getitem__, written from the spec."""
    total = delta_t * num_tbins
    entries = []
    for i, d in enumerate(durations):
        if max_consecutive_batch:
            for start in range(0, model_rounding(d - total, total) + 1, max_consecutive_batch * total):
                entries.append((i, start, d))
        else:
            entries.append((i, 0, d))
    n = min(batch_size, len(entries))
    actual = [model_rounding(d - s, total, max_batch=max_consecutive_batch) for _, s, d in entries]
    cum = [list(np.cumsum(actual[s::n])) for s in range(n)]
    ends = [c[-1] // total for c in cum]
    length = (max(ends) if padding else min(ends)) * n
    items = []
    for index in range(length):
        b, s = divmod(index, n)
        it = (b + 1) * total
        if it > cum[s][-1]:
            items.append(None)
            continue
        k = bisect.bisect_left(cum[s], it)
        rec, start_ts, _ = entries[s + n * k]
        elapsed = cum[s][k - 1] if k else 0
        items.append((rec, start_ts, start_ts + math.ceil(it - total - elapsed), total))
    return n, items


def ours(durations, delta_t, num_tbins, batch_size, padding, max_consecutive_batch=None):
    metas = [FileMetadata(f"rec{i}.dat", d, delta_t, num_tbins) for i, d in enumerate(durations)]
    s = Scheduler(metas, delta_t * num_tbins, batch_size, max_consecutive_batch=max_consecutive_batch,
                  padding=padding)
    items = []
    for index in range(len(s)):
        meta, start, duration = s[index]
        items.append(None if meta.is_padding() else (int(meta.path[3:-4]), meta.start_ts, start, duration))
    return s.batch_size, items


def test_spec_worked_example():
    durations = [1_000_000, 600_000, 450_000, 1_200_000, 300_999]
    n, items = ours(durations, 10_000, 10, 2, padding=True)
    assert n == 2 and len(items) == 36
    slot0 = [it[0] if it else "pad" for it in items[0::2]]
    slot1 = [it[0] for it in items[1::2]]
    assert slot0 == [0] * 10 + [2] * 4 + [4] * 3 + ["pad"]
    assert slot1 == [1] * 6 + [3] * 12
    assert len(ours(durations, 10_000, 10, 2, padding=False)[1]) == 34
    # max_consecutive_batch=3 cuts file 0 into chunks starting at 0, 0.3, 0.6 and 0.9 s.
    metas = [FileMetadata("rec0.dat", 1_000_000, 10_000, 10)]
    s = Scheduler(metas, 100_000, 1, max_consecutive_batch=3, padding=True)
    assert sorted({s[i][0].start_ts for i in range(len(s))}) == [0, 300_000, 600_000, 900_000]


@pytest.mark.parametrize("seed", range(25))
def test_matches_the_spec_model_on_random_durations(seed):
    rng = np.random.default_rng(seed)
    n_files = int(rng.integers(1, 9))
    delta_t = int(rng.choice([1000, 10_000, 50_000]))
    num_tbins = int(rng.integers(1, 6))
    durations = [int(x) for x in rng.integers(delta_t * num_tbins // 2, 40 * delta_t * num_tbins, size=n_files)]
    batch_size = int(rng.integers(1, 6))
    padding = bool(rng.integers(0, 2))
    mcb = int(rng.integers(1, 5)) if rng.random() < 0.4 else None
    assert ours(durations, delta_t, num_tbins, batch_size, padding, mcb) == \
        model_schedule(durations, delta_t, num_tbins, batch_size, padding, mcb)


def test_shuffle_is_seeded_and_reschedule_keeps_labels_and_padding():
    metas = [FileMetadata(f"rec{i}.dat", 500_000 + 100_000 * i, 10_000, 5, labels=f"rec{i}_bbox.npy")
             for i in range(8)]
    a = Scheduler(metas, 50_000, 3, padding=True)
    b = Scheduler(metas, 50_000, 3, padding=True)
    a.shuffle(7)
    b.shuffle(7)
    assert [a[i] for i in range(len(a))] == [b[i] for i in range(len(b))]
    b.shuffle(8)
    assert [getattr(a[i][0], "path", None) for i in range(len(a))] != [getattr(b[i][0], "path", None) for i in range(len(b))]
    a.reschedule(max_consecutive_batch=2)
    assert a.padding
    labelled = [a[i][0] for i in range(len(a)) if not a[i][0].is_padding()]
    assert all(m.labels == m.path.replace(".dat", "_bbox.npy") for m in labelled)
    assert any(m.start_ts > 0 for m in labelled)


def test_ranks_share_the_recordings():
    metas = [FileMetadata(f"rec{i}.dat", 300_000 + 77_000 * i, 10_000, 5) for i in range(9)]
    counts, seen = set(), []
    for rank in range(3):
        s = Scheduler(metas, 50_000, 2, rank=rank, world_size=3)
        counts.add(s.num_batches)
        seen += sorted({s[i][0].path for i in range(len(s)) if not s[i][0].is_padding()})
    assert len(counts) == 1
    assert sorted(seen) == sorted(m.path for m in metas)
