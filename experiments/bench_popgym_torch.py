"""Env-only throughput: the torch POPGym envs (``envs.popgym_torch``) vs popgym 1.0.7 through gymnasium's
``SyncVectorEnv`` (same-step autoreset), every family's Easy level, random actions.

Both sides step raw envs (no previous-action wrapper, no tensor conversion on the popgym side); actions are drawn
beforehand (a pool of 8 batches, reused) so that only ``step`` is timed. Each cell steps for at least ``--seconds``
after a warm-up. Torch runs on ``--threads`` threads (default 1, like popgym) on ``--device``.

    python experiments/bench_popgym_torch.py [--rows 64 1024 16384] [--seconds 1.0] [--threads 1] [--device cpu]

Writes experiments/results/bench_popgym_torch.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import popgym.envs as popgym_envs
import torch

from envs.popgym_torch import TORCH_POPGYM

POPGYM = {cls.__name__: cls for cls in popgym_envs.ALL}
FAMILIES = sorted({name.removesuffix("Easy") for name in TORCH_POPGYM if name.endswith("Easy")})
OUT = Path(__file__).resolve().parent / "results"


def _timed(step, actions: list, seconds: float, min_steps: int, sync) -> float:
    """Steps per second of ``step(action)`` over at least ``seconds`` and ``min_steps`` calls."""
    for a in actions[:2]:
        step(a)  # warm-up
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        step(actions[n % len(actions)])
        n += 1
        if n >= min_steps:
            sync()
            if time.perf_counter() - t0 >= seconds:
                return n / (time.perf_counter() - t0)


def bench_torch(name: str, rows: int, seconds: float, device: str) -> float:
    env = TORCH_POPGYM[name](rows, device=device)
    env.reset(seed=0)
    space = env.single_action_space
    actions = [torch.as_tensor(np.stack([space.sample() for _ in range(rows)]), device=device) for _ in range(8)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    return rows * _timed(env.step, actions, seconds, 10, sync)


def bench_popgym(name: str, rows: int, seconds: float) -> float:
    vec = gym.vector.SyncVectorEnv([POPGYM[name] for _ in range(rows)],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    vec.reset(seed=0)
    actions = [vec.action_space.sample() for _ in range(8)]
    sps = rows * _timed(vec.step, actions, seconds, 3, lambda: None)
    vec.close()
    return sps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[64, 1024, 16384])
    ap.add_argument("--families", nargs="+", default=FAMILIES)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-popgym", action="store_true", help="torch only (e.g. on a GPU machine)")
    ap.add_argument("--out", default=str(OUT / "bench_popgym_torch"), help="output path without extension")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows_out = []
    print(f"{'family':<28} {'rows':>6} {'torch steps/s':>15} {'popgym steps/s':>15} {'ratio':>8}", flush=True)
    for family in args.families:
        name = f"{family}Easy"
        for rows in args.rows:
            ours = bench_torch(name, rows, args.seconds, args.device)
            theirs = None if args.no_popgym else bench_popgym(name, rows, args.seconds)
            ratio = ours / theirs if theirs else None
            rows_out.append({"env": name, "rows": rows, "torch_sps": ours, "popgym_sps": theirs, "ratio": ratio})
            print(f"{family:<28} {rows:>6} {ours:>15,.0f} {theirs or float('nan'):>15,.0f} "
                  f"{ratio or float('nan'):>7.1f}x", flush=True)
    meta = {"device": args.device, "threads": args.threads, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "seconds": args.seconds}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows_out}, indent=2))
    sizes = sorted({r["rows"] for r in rows_out})
    lines = [f"Env-only steps/s, torch ({args.device}, {args.threads} thread(s)) vs popgym SyncVectorEnv; "
             "ratio torch / popgym.", "",
             "| env | " + " | ".join(f"{n:,} rows: torch / popgym / ratio" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for family in args.families:
        cells = []
        for n in sizes:
            r = next(x for x in rows_out if x["env"] == f"{family}Easy" and x["rows"] == n)
            theirs = f"{r['popgym_sps']:,.0f} / {r['ratio']:.0f}x" if r["popgym_sps"] else "- / -"
            cells.append(f"{r['torch_sps']:,.0f} / {theirs}")
        lines.append(f"| {family}Easy | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.json and .md")


if __name__ == "__main__":
    main()
