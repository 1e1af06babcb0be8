# SPDX-License-Identifier: Apache-2.0
"""Every real recording decodes to the reference numbers of shared/data/real/SOURCES.md."""
import numpy as np
import pytest

import evloader

REFERENCE = {
    # file: (events, first t, last t, sum x, sum y, sum p, sum t, (width, height))
    "evt3_gen41_expelliarmus.raw": (219596, 11718656, 11727457, 159113225, 85638051, 115532, 2574324900467,
                                    (1280, 720)),
    "evt2_gen3_faery.raw": (521252, 913716224, 913812095, 128979953, 216346680, 185861, 476298094656969,
                            (640, 480)),
    "ncars_sample_td.dat": (2009, 0, 99952, 93457, 40463, 1350, 98196680, (0, 0)),
    "evt2_gen3_faery_cd.dat": (521252, 913716224, 913812095, 128979953, 216346680, 185861, 476298094656969,
                               (640, 480)),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_real_file_matches_reference_numbers(real_dir, name):
    count, first, last, sx, sy, sp, st, geometry = REFERENCE[name]
    reader = evloader.open_reader(real_dir / name, index="memory")
    events = reader.load_all()
    assert events.dtype == evloader.EventCD
    assert len(events) == count
    assert events["t"][0] == first and events["t"][-1] == last
    assert int(events["x"].sum(dtype=np.int64)) == sx
    assert int(events["y"].sum(dtype=np.int64)) == sy
    assert int(events["p"].sum(dtype=np.int64)) == sp
    assert int(events["t"].sum(dtype=np.int64)) == st
    assert reader.geometry == geometry
    assert reader.is_done()
    # The summary comes from the index and agrees with the full decode.
    assert reader.event_count() == count
    assert reader.first_timestamp() == first and reader.last_timestamp() == last
    assert reader.duration() == last - first
    assert reader.file_stats().violations == 0


def test_metavision_time_shift_of_raw_files(real_dir):
    # EVT3: (first TIME_HIGH - 1) << 12 with first TIME_HIGH 2861; EVT2: first TIME_HIGH << 6.
    evt3 = evloader.open_reader(real_dir / "evt3_gen41_expelliarmus.raw", time_origin="metavision")
    assert evt3.time_shift() == (2861 - 1) << 12
    assert evt3.load_n_events(1)["t"][0] == 11718656 - (2860 << 12)
    evt2 = evloader.open_reader(real_dir / "evt2_gen3_faery.raw", time_origin="metavision")
    first = evt2.load_n_events(1)["t"][0]
    assert 0 <= first < 64
    assert evt2.time_shift() == 913716224 - first
    # DAT files are never shifted, as in the Metavision SDK.
    dat = evloader.open_reader(real_dir / "evt2_gen3_faery_cd.dat", time_origin="metavision")
    assert dat.time_shift() == 0


@pytest.mark.parametrize("name", ["evt3_gen41_expelliarmus.raw", "evt2_gen3_faery.raw", "evt2_gen3_faery_cd.dat"])
def test_seek_time_equals_linear_scan(real_dir, tmp_path, name):
    everything = evloader.open_reader(real_dir / name, index="memory").load_all()
    reader = evloader.open_reader(real_dir / name, index="memory")
    t = everything["t"]
    rng = np.random.default_rng(1)
    targets = list(rng.integers(t[0] - 100, t[-1] + 100, size=25)) + [t[0], t[-1], t[-1] + 1, 0]
    for target in targets:
        reader.seek_time(int(target))
        start = int(np.searchsorted(t, target, side="left"))
        assert reader.current_event_index() == start
        assert reader.current_time() == target
        got = reader.load_n_events(1000)
        np.testing.assert_array_equal(got, everything[start:start + 1000])


def test_seek_event_and_reset(real_dir):
    path = real_dir / "evt3_gen41_expelliarmus.raw"
    everything = evloader.open_reader(path, index="memory").load_all()
    reader = evloader.open_reader(path, index="memory")
    for n in [0, 1, 99_999, 150_001, len(everything) - 1]:
        reader.seek_event(n)
        assert reader.current_time() == everything["t"][n]
        np.testing.assert_array_equal(reader.load_n_events(500), everything[n:n + 500])
    reader.seek_event(len(everything) + 10)
    assert reader.is_done()
    reader.reset()
    assert reader.current_time() == 0 and reader.current_event_index() == 0
    np.testing.assert_array_equal(reader.load_n_events(10), everything[:10])


def test_events_iterator_delta_t_covers_recording(real_dir):
    path = real_dir / "evt2_gen3_faery.raw"
    everything = evloader.open_reader(path, time_origin="metavision", index="memory").load_all()
    slices = list(evloader.EventsIterator(str(path), delta_t=5000, index="memory"))
    for k, s in enumerate(slices):
        assert np.all((s["t"] >= k * 5000) & (s["t"] < (k + 1) * 5000))
    np.testing.assert_array_equal(np.concatenate(slices), everything)
