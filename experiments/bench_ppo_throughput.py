"""PPO throughput: rlmem's LSTM-PPO vs sb3-contrib's RecurrentPPO, same settings, same process.

POPGym RepeatPreviousEasy, rollouts of num_envs x 128 steps, 4 epochs, 4 minibatches, LSTM 128 shared
by actor and critic, CPU. Both trainers run ``--updates`` updates after one warm-up update; the figure
is env-steps per second of wall time (rollout + training). rlmem trains on chunks of the whole rollout
(seq_len 128), the same gradient horizon as sb3-contrib, which pads whole episode sequences.
rlmem runs twice: on the torch POPGym env (``env.backend=torch``, ``envs.popgym_torch``) and on popgym itself
through gymnasium's vector env (``env.backend=gym``); sb3-contrib always steps popgym.

    python experiments/bench_ppo_throughput.py [--envs 8 64] [--updates 8] [--backends torch gym] [--repeats 3]

Writes experiments/results/bench_ppo_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

ENV_ID = "rlmem/RepeatPreviousEasy-v0"
STEPS, EPOCHS, MINIBATCHES, HIDDEN = 128, 4, 4, 128


def bench_rlmem(num_envs: int, updates: int, backend: str) -> float:
    from hydra import compose, initialize_config_dir

    from rlmem.config import register_configs
    from rlmem.train import train

    register_configs()
    conf = str(Path(__file__).resolve().parent.parent / "conf")

    def run(n_updates: int) -> float:
        with tempfile.TemporaryDirectory() as d, initialize_config_dir(config_dir=conf, version_base="1.3"):
            cfg = compose("config", overrides=[
                "env=popgym", f"env.id={ENV_ID}", f"env.backend={backend}", "model=lstm",
                f"model.memory_kwargs.hidden_size={HIDDEN}",
                f"algo.num_envs={num_envs}", f"algo.num_steps={STEPS}", f"algo.seq_len={STEPS}",
                f"algo.update_epochs={EPOCHS}", f"algo.num_minibatches={MINIBATCHES}",
                f"algo.total_steps={n_updates * num_envs * STEPS}", "algo.checkpoint_every=1000000",
                "eval_episodes=0", "progress=false", f"run_dir={d}"])
            t = time.perf_counter()
            train(cfg)
            return time.perf_counter() - t

    run(1)  # imports, allocator and thread-pool warm-up
    warm = run(1)  # fixed per-run cost (env and policy construction, first update), subtracted
    total = run(updates + 1)
    return updates * num_envs * STEPS / (total - warm)


def bench_sb3(num_envs: int, updates: int) -> float:
    import gymnasium as gym
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    import envs  # noqa: F401

    vec = DummyVecEnv([lambda: gym.make(ENV_ID) for _ in range(num_envs)])
    model = RecurrentPPO(
        "MlpLstmPolicy", vec, n_steps=STEPS, batch_size=num_envs * STEPS // MINIBATCHES, n_epochs=EPOCHS,
        policy_kwargs={"lstm_hidden_size": HIDDEN, "n_lstm_layers": 1, "shared_lstm": True,
                       "enable_critic_lstm": False},
        device="cpu", verbose=0, seed=0)
    model.learn(num_envs * STEPS)  # warm-up update
    t = time.perf_counter()
    model.learn(updates * num_envs * STEPS, reset_num_timesteps=False)
    return updates * num_envs * STEPS / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--updates", type=int, default=8)
    ap.add_argument("--backends", nargs="+", default=["torch", "gym"], choices=["torch", "gym"])
    ap.add_argument("--repeats", type=int, default=1,
                    help="alternate the trainers this many times per env count; ratios per repeat, then medians")
    args = ap.parse_args()
    rows = []
    head = "".join(f" {'rlmem ' + b + ' steps/s':>20}" for b in args.backends)
    print(f"{'envs':>5} {'rep':>3}{head} {'sb3-contrib steps/s':>20}"
          + "".join(f" {b + ' ratio':>12}" for b in args.backends))
    for n in args.envs:
        for rep in range(args.repeats):
            ours = {b: bench_rlmem(n, args.updates, b) for b in args.backends}
            theirs = bench_sb3(n, args.updates)
            row = {"num_envs": n, "repeat": rep, "sb3_contrib_sps": theirs}
            for b, sps in ours.items():
                row |= {f"rlmem_{b}_sps": sps, f"ratio_{b}": sps / theirs}
            rows.append(row)
            print(f"{n:>5} {rep:>3}" + "".join(f" {ours[b]:>20,.0f}" for b in args.backends) + f" {theirs:>20,.0f}"
                  + "".join(f" {ours[b] / theirs:>11.1f}x" for b in args.backends), flush=True)
    medians = []
    for n in args.envs:
        mine = [r for r in rows if r["num_envs"] == n]
        med = {"num_envs": n} | {k: statistics.median(r[k] for r in mine) for k in mine[0] if k not in
                                 ("num_envs", "repeat")}
        medians.append(med)
        print(f"{n:>5} med" + "".join(f" {med[f'rlmem_{b}_sps']:>20,.0f}" for b in args.backends)
              + f" {med['sb3_contrib_sps']:>20,.0f}" + "".join(f" {med[f'ratio_{b}']:>11.1f}x" for b in args.backends))
    out = Path(__file__).resolve().parent / "results" / "bench_ppo_throughput.json"
    out.write_text(json.dumps({"env": ENV_ID, "num_steps": STEPS, "epochs": EPOCHS, "minibatches": MINIBATCHES,
                               "lstm_hidden": HIDDEN, "updates": args.updates, "torch": torch.__version__,
                               "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(), "rows": rows,
                               "medians": medians}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
