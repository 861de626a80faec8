"""Scripted reference policies on POPGym's Concentration (the torch envs): what a policy without memory can score.

* ``uniform``: flip any card at random;
* ``face-down``: flip a random face-down card (the observation shows which cards are face up or in play), which
  needs no memory; on Easy and Medium (pairs by colour) two face-down cards match about half the time.

Mean episode return over ``--episodes`` episodes per env and policy, ``--envs`` rows at a time:

    python experiments/concentration_baselines.py [--tasks ConcentrationEasy ConcentrationMedium]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch


def mean_return(task: str, policy: str, episodes: int, num_envs: int, seed: int = 0) -> float:
    import envs  # noqa: F401  (registers the ids)
    from envs import make_vec

    env = make_vec(f"rlmem/{task}-v0", num_envs)
    space = env.single_observation_space  # {"obs": MultiDiscrete (a value per card, D = face down), "prev_action"}
    assert isinstance(space, gym.spaces.Dict) and isinstance(space["obs"], gym.spaces.MultiDiscrete)
    face_down = int(space["obs"].nvec[0]) - 1
    gen = torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    ret = torch.zeros(num_envs)
    finished: list[float] = []
    while len(finished) < episodes:
        assert isinstance(obs, dict)
        cards = obs["obs"]
        assert isinstance(cards, torch.Tensor)
        weights = torch.ones_like(cards, dtype=torch.float) if policy == "uniform" else (cards == face_down).float()
        action = torch.multinomial(weights + 1e-9, 1, generator=gen).squeeze(1)
        obs, reward, terminated, truncated, _ = env.step(action)
        ret += reward
        done = terminated | truncated
        finished += ret[done].tolist()
        ret[done] = 0.0
    env.close()
    return sum(finished[:episodes]) / episodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["ConcentrationEasy", "ConcentrationMedium"])
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--envs", type=int, default=256)
    args = ap.parse_args()
    print("| task | uniform | face-down |\n|---|---|---|")
    for task in args.tasks:
        scores = [mean_return(task, p, args.episodes, args.envs) for p in ("uniform", "face-down")]
        print(f"| {task} | {scores[0]:.3f} | {scores[1]:.3f} |")


if __name__ == "__main__":
    main()
