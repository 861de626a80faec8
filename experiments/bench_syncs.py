"""Host synchronisations per PPO rollout step and per training forward, for every registered memory.

    python experiments/bench_syncs.py [--out bench_syncs]

A rollout step is what ``rlmem.algos.ppo.RolloutCollector.step`` does: ``policy.step`` + the torch T-Maze's step +
the truncation bootstrap, counted with ``rlmem.syncs.SyncCounter`` (which makes every CPU-only fast path take its
accelerator path). A training forward is one 16-step ``policy(...)`` call on 16 rows with episode starts inside
(the PPO update's and the offline trainer's forward), without and with gradients. Writes
``experiments/results/<out>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from rlmem.config import register_configs
from rlmem.memory import MEMORIES
from rlmem.syncs import SyncCounter

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"


def count(memory: str, steps: int = 24) -> dict:
    from rlmem.algos.ppo import RolloutCollector
    from rlmem.loop import build_policy

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={memory}", "env=tmaze", "env.kwargs.corridor_length=4",
                                           "algo.num_envs=16", f"algo.num_steps={steps}", "algo.seq_len=8",
                                           "run_dir=unused", "progress=false"])
    torch.manual_seed(0)
    collector = RolloutCollector(cfg)
    policy = build_policy(cfg, collector.observation_space, collector.action_space, collector.env_kwargs)
    collector.start(policy, seed=0)
    for _ in range(steps // 2):  # warm up: fill caches and memories, end some episodes
        collector.step(policy)
    with SyncCounter() as roll:
        for _ in range(steps // 2):
            collector.step(policy)
    collector.close()

    B, T = 16, 16
    start = torch.rand(B, T, generator=torch.Generator().manual_seed(0)) < 0.1
    start[:, 0] = True
    x_obs = torch.randn(B, T, *collector.observation_space.shape)
    state = policy.initial_state(B)
    out = {"rollout_per_step": roll.count / (steps // 2), "rollout_calls": dict(roll.calls)}
    policy.train()
    for name, grad in (("forward_no_grad", False), ("forward_grad", True)):
        with torch.set_grad_enabled(grad), SyncCounter() as fwd:
            policy(x_obs, state, start, need_state=not grad)
        out[name] = fwd.count
        out[name + "_calls"] = dict(fwd.calls)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=None, help="conf/model names (default: every registered memory)")
    ap.add_argument("--out", default="bench_syncs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = args.models or sorted(MEMORIES)
    rows = {m: count(m) for m in models}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(rows, indent=2))
    # counts of the code before the sync-free rollouts (commit 7be7b6d, same probe; the trainer's own
    # `bool(trunc.any())` included in the rollout column), kept for comparison
    before_file = RESULTS / "bench_syncs_before.json"
    before = json.loads(before_file.read_text()) if before_file.is_file() else {}

    def was(m: str, key: str) -> str:
        return f"{before[m][key]:g} -> " if m in before else ""

    lines = ["| memory | syncs per rollout step | 16-step forward, no grad | with grad | what syncs in the forward |",
             "|---|---|---|---|---|"]
    for m, r in rows.items():
        what = ", ".join(f"{k} x{v}" for k, v in sorted(r["forward_grad_calls"].items())) or "-"
        lines.append(f"| {m} | {was(m, 'rollout')}{r['rollout_per_step']:g} | {was(m, 'nograd')}{r['forward_no_grad']} "
                     f"| {was(m, 'grad')}{r['forward_grad']} | {what} |")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
