"""Data-parallel scaling on CPU: 1 process x 1 thread vs 2 processes x 1 thread (torchrun, gloo).

* PPO: LSTM-PPO on the torch T-Maze (passive, corridor 10), 32 envs x 64 steps per rank; figure: env steps/s over
  all ranks.
* Offline: the ELMUR T-Maze experiment (``experiment=elmur_tmaze``: ELMUR, BPTT through 3 segments of 10), batch 128
  per rank; figures: batches/s (iterations) and trajectories/s over all ranks.

Each rank keeps its per-rank batch, so 2 processes do twice the work per iteration (weak scaling); scaling =
throughput(2) / throughput(1), target >= 1.7 (85% efficiency). Every configuration runs twice, with 1 and with
``1 + --iters`` iterations, and the difference is timed, so process start, imports and env/policy construction cancel.

    python experiments/bench_ddp.py [--iters-ppo 12] [--iters-offline 6] [--out bench_ddp]

Writes experiments/results/<out>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"

PPO = ["experiment=tmaze_lstm", "algo.num_envs=32", "algo.num_steps=64", "algo.seq_len=16",
       "algo.checkpoint_every=100000", "eval_episodes=0"]
OFFLINE = ["experiment=elmur_tmaze", "algo.batch_size=128", "algo.eval_every=0", "algo.checkpoint_every=100000",
           "eval_episodes=0"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(procs: int, overrides: list[str]) -> float:
    """Wall seconds of one training command with ``procs`` processes of one thread each."""
    with tempfile.TemporaryDirectory() as d:
        launcher = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                     f"--master_port={_port()}"] if procs > 1 else [sys.executable])
        cmd = [*launcher, "-m", "rlmem.train", *overrides, "torch_threads=1", "progress=false", f"run_dir={d}"]
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
        return wall


def per_iteration(procs: int, overrides: list[str], iters: int, length: Callable[[int], str]) -> float:
    """Seconds per iteration: (time of 1 + iters) - (time of 1), over iters; ``length(n)``: the override for n
    iterations."""
    one = timed(procs, [*overrides, length(1)])
    many = timed(procs, [*overrides, length(1 + iters)])
    return (many - one) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters-ppo", type=int, default=12)
    ap.add_argument("--iters-offline", type=int, default=6)
    ap.add_argument("--out", default="bench_ddp")
    args = ap.parse_args()

    from rlmem.collection import ensure_dataset  # the offline experiment's dataset, once, outside the timing
    from rlmem.config import register_configs

    register_configs()
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*OFFLINE, "run_dir=unused"])
    ensure_dataset(cfg.env, cfg.algo.dataset_id, cfg.algo.data_dir, cfg.algo.collect)

    rows = []
    batch_ppo = 32 * 64
    for procs in (1, 2):
        s = per_iteration(procs, PPO, args.iters_ppo, lambda n, p=procs: f"algo.total_steps={n * p * batch_ppo}")
        rows.append({"trainer": "ppo", "procs": procs, "s_per_iter": s, "steps_per_s": procs * batch_ppo / s})
        print(rows[-1], flush=True)
    for procs in (1, 2):
        s = per_iteration(procs, OFFLINE, args.iters_offline, lambda n: f"algo.updates={n}")
        rows.append({"trainer": "offline", "procs": procs, "s_per_iter": s, "batches_per_s": 1 / s,
                     "trajectories_per_s": procs * 128 / s})
        print(rows[-1], flush=True)
    ppo = {r["procs"]: r["steps_per_s"] for r in rows if r["trainer"] == "ppo"}
    off = {r["procs"]: r["trajectories_per_s"] for r in rows if r["trainer"] == "offline"}
    scaling = {"ppo": ppo[2] / ppo[1], "offline": off[2] / off[1]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"cores": os.cpu_count(), "machine": platform.processor() or platform.machine(), "rows": rows,
            "scaling": scaling}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(meta, indent=2))
    lines = ["| trainer | 1 process | 2 processes | scaling (target >= 1.7) |", "|---|---|---|---|",
             f"| LSTM-PPO, torch T-Maze, env steps/s | {ppo[1]:,.0f} | {ppo[2]:,.0f} | {scaling['ppo']:.2f}x |",
             f"| offline ELMUR T-Maze, trajectories/s | {off[1]:,.0f} | {off[2]:,.0f} | {scaling['offline']:.2f}x |",
             f"| offline ELMUR T-Maze, batches/s (128 per rank) | {off[1] / 128:.2f} | {off[2] / 256:.2f} | |"]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
