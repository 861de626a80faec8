"""SAT's place read and eviction before and after 583a800 (a same-place [S, S] matrix -> scatter into place buckets),
timed in one process on one thread: ``python experiments/bench_sat_read.py`` (needs the git history).

The old module is read from ``git show 583a800^:rlmem/memory/sat.py`` and registered as ``sat_old``; both memories
get the same weights' shapes and inputs, a memory filled to capacity first. Prints the median time of a training
minibatch (popgym_gru's B=4 sequences of T=128, forward + backward) and of a rollout step (B=32, T=1).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

import torch

from rlmem.memory import build

ROOT = Path(__file__).resolve().parent.parent


def load_old() -> None:
    src = subprocess.run(["git", "show", "583a800^:rlmem/memory/sat.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.replace('@register("sat")', '@register("sat_old")')
    path = Path(tempfile.mkdtemp()) / "sat_old.py"
    path.write_text(src)
    spec = spec_from_file_location("sat_old", path)
    assert spec and spec.loader
    spec.loader.exec_module(module_from_spec(spec))


def median_s(name: str, slots: int, B: int, T: int, backward: bool, reps: int) -> float:
    torch.manual_seed(0)
    mem = build(name, 3, d_model=128, num_layers=2, num_heads=2, capacity=slots, read="place", top_k=2,
                allocation="ama")
    with torch.no_grad():  # fill the memory
        _, state = mem(torch.randn(B, slots, 3), mem.initial_state(B), torch.zeros(B, slots, dtype=torch.bool))
    x, start = torch.randn(B, T, 3), torch.zeros(B, T, dtype=torch.bool)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        if backward:
            y, _ = mem(x, state, start, need_state=False)
            y.sum().backward()
        else:
            with torch.no_grad():
                mem(x, state, start)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    load_old()
    for slots in (51, 200):
        for label, B, T, backward, reps in (("training minibatch B=4 T=128 fwd+bwd", 4, 128, True, 5),
                                            ("rollout step B=32 T=1", 32, 1, False, 50)):
            old, new = (median_s(n, slots, B, T, backward, reps) for n in ("sat_old", "sat"))
            print(f"slots {slots:3d}, {label}: old {old * 1e3:8.1f} ms, new {new * 1e3:8.1f} ms, "
                  f"{old / new:5.1f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())
