"""Frames per second of the MuJoCo manipulation tasks: per core (render + physics, one process) and vectorized
(subprocess workers behind ``envs.make_vec``) on every core of this machine.

Random actions, ``--steps`` control steps per measurement after a warm-up. One control step = 10 physics steps
of 5 ms + one ``--size`` x ``--size`` RGB frame. Per core, the physics-only and render-only shares are also
timed. Episodes reset as they end (same-step autoreset), so reset costs are included.

    python experiments/bench_manipulation_fps.py [--tasks RememberColor3 ShellGameTouch] [--envs 2 4 8]

Writes experiments/results/bench_manipulation_fps.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco's first import (it picks its GL backend then)


def per_core(task: str, size: int, steps: int) -> dict[str, float]:
    import gymnasium as gym
    import mujoco

    import envs  # noqa: F401  (registers the ids)

    env = gym.make(f"rlmem/{task}-v0", width=size, height=size)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(20):
        env.step(rng.uniform(-1, 1, 3).astype(np.float32))
    t = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 3).astype(np.float32))
        if term or trunc:
            env.reset()
    full = steps / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(u.model, u.data, nstep=u.frame_skip)
    physics = steps / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(steps):
        u._frame(size, size)
    render = steps / (time.perf_counter() - t)
    env.close()
    return {"steps_per_s": full, "physics_steps_per_s": physics, "frames_per_s": render}


def vectorized(task: str, size: int, num_envs: int, steps: int) -> float:
    import torch

    import envs

    vec = envs.make_vec(f"rlmem/{task}-v0", num_envs, {"width": size, "height": size}, backend="gym",
                        asynchronous=True)
    vec.reset(seed=0)
    act = lambda: torch.rand(num_envs, 3) * 2 - 1  # noqa: E731
    for _ in range(20):
        vec.step(act())
    n = max(1, steps // num_envs)
    t = time.perf_counter()
    for _ in range(n):
        vec.step(act())
    fps = n * num_envs / (time.perf_counter() - t)
    vec.close()
    return fps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["RememberColor3", "ShellGameTouch", "SeqOfColors3"])
    ap.add_argument("--envs", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    rows = []
    for task in args.tasks:
        row = {"task": task, "size": args.size, **per_core(task, args.size, args.steps)}
        row["vectorized"] = {n: vectorized(task, args.size, n, args.steps) for n in args.envs}
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS"), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_manipulation_fps.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    head = ("| task | steps/s, 1 process | physics only | render only | "
            + " | ".join(f"{n} envs, subprocesses" for n in args.envs) + " |")
    lines = [head, "|---" * (4 + len(args.envs)) + "|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['steps_per_s']:.0f} | {r['physics_steps_per_s']:.0f} | "
                     f"{r['frames_per_s']:.0f} | " + " | ".join(f"{r['vectorized'][n]:.0f}" for n in args.envs) + " |")
    text = (f"Manipulation env throughput at {args.size}x{args.size} (control steps per second: 10 physics steps "
            f"+ 1 frame), {meta['cores']} cores, MUJOCO_GL={meta['MUJOCO_GL']} "
            "(experiments/bench_manipulation_fps.py).\n\n" + "\n".join(lines) + "\n")
    (RESULTS / "bench_manipulation_fps.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
