# SPDX-License-Identifier: Apache-2.0
"""Two torch.distributed processes (gloo, CPU): the same number of batches on both ranks, disjoint shares that
together cover every recording once, and an all_reduce per batch that would hang if the counts differed."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed not available", allow_module_level=True)

from evloader.tensor_file import TensorFileWriter  # noqa: E402

WORKER = textwrap.dedent("""
    import json, sys
    import torch, torch.distributed as dist
    from evloader.data import SequentialDataLoader
    rank, world, init, out, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    loader = SequentialDataLoader(files, 50000, "histo", [2, 2, 8, 8], batch_size=2, num_workers=1)
    seen, batches = set(), 0
    for batch in loader:
        total = torch.tensor([1.0])
        dist.all_reduce(total)  # hangs if one rank runs out of batches before the other
        assert total.item() == world
        batches += 1
        for meta, start, duration in batch["video_infos"]:
            if not meta.is_padding():
                seen.add(meta.path)
    dist.barrier()
    json.dump({"batches": batches, "len": len(loader), "seen": sorted(seen)}, open(out, "w"))
    dist.destroy_process_group()
""")


def test_two_ranks_share_the_recordings(tmp_path):
    files = []
    for r, n in enumerate([9, 4, 14, 6, 11, 5, 8]):
        path = tmp_path / f"rec{r}.h5"
        with TensorFileWriter(path, "histo", (2, 8, 8), 50_000, (8, 8)) as w:
            w.write(np.full((n, 2, 8, 8), r, np.float32))
        files.append(str(path))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), "2", init, str(tmp_path / f"out{rank}.json"),
                               *files], env={**os.environ, "OMP_NUM_THREADS": "1"})
             for rank in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    results = [json.load(open(tmp_path / f"out{rank}.json")) for rank in range(2)]
    assert results[0]["batches"] == results[1]["batches"] == results[0]["len"] == results[1]["len"] > 0
    assert not set(results[0]["seen"]) & set(results[1]["seen"])
    assert sorted(results[0]["seen"] + results[1]["seen"]) == sorted(files)
