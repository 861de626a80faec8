"""Data-parallel scaling on CPU: 1 process x 1 thread vs 2 processes x 1 thread (torchrun, gloo).

* PPO: LSTM-PPO on the torch T-Maze (passive, corridor 10), 32 envs x 64 steps per rank; figure: env steps/s over
  all ranks.
* Offline: the ELMUR T-Maze experiment (``experiment=elmur_tmaze``: ELMUR, BPTT through 3 segments of 10), batch 128
  per rank; figures: batches/s (iterations) and trajectories/s over all ranks.

Each rank keeps its per-rank batch, so 2 processes do twice the work per iteration (weak scaling); scaling =
throughput(2) / throughput(1), target >= 1.7 (85% efficiency). The time of an iteration is what rank 0 logs
(``perf/collect_s + perf/update_s``: it waits for the other rank at every collective, so it is the pace of the
whole run); the median over the iterations after the first two is taken, so process start, imports and
construction do not count. Each configuration is run ``--repeats`` times, alternating; the scaling of each repeat
(its own 1- and 2-process runs, back to back) is reported, and their median. A third configuration runs 2
independent single-process trainings at the same time: the slower one's pace is the most the machine allows 2
processes (cores shared with the host, memory bandwidth), so the data-parallel run's own cost (communication,
waiting) is the gap between that ceiling and the torchrun figure.

    python experiments/bench_ddp.py [--iters-ppo 20] [--iters-offline 10] [--repeats 3] [--out bench_ddp]
    python experiments/bench_ddp.py --table-only   # redraw the table from the JSON

Writes experiments/results/<out>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
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


def _median_iteration(tb: Path) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    collect = [e.value for e in acc.Scalars("perf/collect_s")]
    update = [e.value for e in acc.Scalars("perf/update_s")]
    return statistics.median(c + u for c, u in list(zip(collect, update, strict=True))[2:])


def iteration_s(procs: int, overrides: list[str], independent: bool = False) -> float:
    """Median seconds per iteration of a training run with ``procs`` processes of one thread each: one torchrun
    job, or (``independent``) ``procs`` separate single-process runs at the same time, no communication between
    them (then the slowest one's time: the machine's ceiling for the data-parallel run)."""
    with tempfile.TemporaryDirectory() as d:
        if procs > 1 and not independent:
            cmds = [[sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                     f"--master_port={_port()}", "-m", "rlmem.train", f"run_dir={d}/0"]]
        else:
            cmds = [[sys.executable, "-m", "rlmem.train", f"run_dir={d}/{i}", f"seed={i + 1}"] for i in range(procs)]
        jobs = [subprocess.Popen([*c, *overrides, "torch_threads=1", "progress=false"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"}) for c in cmds]
        for c, job in zip(cmds, jobs, strict=True):
            _, err = job.communicate()
            if job.returncode != 0:
                raise RuntimeError(f"{' '.join(c)} failed:\n{err[-3000:]}")
        return max(_median_iteration(Path(d) / str(i) / "tb") for i in range(len(cmds)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters-ppo", type=int, default=20)
    ap.add_argument("--iters-offline", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench_ddp")
    ap.add_argument("--table-only", action="store_true", help="redraw the table from <out>.json")
    args = ap.parse_args()
    if args.table_only:
        table(json.loads((RESULTS / f"{args.out}.json").read_text())["rows"], RESULTS / f"{args.out}.md")
        return

    from rlmem.collection import ensure_dataset  # the offline experiment's dataset, once, outside the timing
    from rlmem.config import register_configs

    register_configs()
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*OFFLINE, "run_dir=unused"])
    ensure_dataset(cfg.env, cfg.algo.dataset_id, cfg.algo.data_dir, cfg.algo.collect)

    rows = []
    batch_ppo = 32 * 64
    configs = [(1, False), (2, False), (2, True)]  # 1 process, torchrun x 2, 2 independent processes
    for _ in range(args.repeats):
        for procs, indep in configs:
            s = iteration_s(procs, [*PPO, f"algo.total_steps={(2 + args.iters_ppo) * procs * batch_ppo}"], indep)
            rows.append({"trainer": "ppo", "procs": procs, "independent": indep, "s_per_iter": s,
                         "steps_per_s": procs * batch_ppo / s})
            print(rows[-1], flush=True)
    for _ in range(args.repeats):
        for procs, indep in configs:
            s = iteration_s(procs, [*OFFLINE, f"algo.updates={2 + args.iters_offline}"], indep)
            rows.append({"trainer": "offline", "procs": procs, "independent": indep, "s_per_iter": s,
                         "batches_per_s": 1 / s, "trajectories_per_s": procs * 128 / s})
            print(rows[-1], flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"cores": os.cpu_count(), "machine": platform.processor() or platform.machine(), "rows": rows}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(meta, indent=2))
    table(rows, RESULTS / f"{args.out}.md")


def table(rows: list[dict], out: Path) -> None:
    """Scaling per repeat (the 1-process and 2-process runs of one repeat ran back to back), then its median."""
    lines = ["| trainer | 1 process | 2 processes (torchrun) | scaling (target >= 1.7), per repeat -> median "
             "| 2 independent processes (ceiling), median |", "|---|---|---|---|---|"]
    for trainer, what in (("ppo", "LSTM-PPO, torch T-Maze, env steps/s"),
                          ("offline", "offline ELMUR T-Maze, trajectories/s")):
        mine = [r for r in rows if r["trainer"] == trainer]
        one, two, free = ([r["s_per_iter"] for r in mine if (r["procs"], r["independent"]) == c]
                          for c in ((1, False), (2, False), (2, True)))
        scale = [2 * a / b for a, b in zip(one, two, strict=True)]
        ceiling = [2 * a / b for a, b in zip(one, free, strict=True)]
        per = 32 * 64 if trainer == "ppo" else 128
        lines.append(f"| {what} | {per / statistics.median(one):,.0f} | {2 * per / statistics.median(two):,.0f} "
                     f"| {' / '.join(f'{x:.2f}' for x in scale)} -> {statistics.median(scale):.2f}x "
                     f"| {statistics.median(ceiling):.2f}x |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
