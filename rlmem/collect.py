"""``python -m rlmem.collect env=... policy=oracle|checkpoint=PATH episodes=N dataset_id=ID``.

Rolls a policy out on the vectorized env and writes a Minari dataset (see ``rlmem.data``):

* ``policy=oracle``: the env's privileged oracle (``VecEnv.oracle_action``, e.g. T-Maze's);
* ``checkpoint=PATH``: a trained rlmem policy (run dir or checkpoint file), sampled or greedy.

``grid.<kwarg>=[v1,v2,...]`` splits the episodes evenly over env kwargs, e.g. T-Maze corridor lengths
(the ELMUR/RATE oracle data mixes lengths up to 30 steps).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from rlmem.config import EnvConfig, register_configs
from rlmem.data import Episode
from rlmem.tree import tree_map

log = logging.getLogger("rlmem")


@dataclass
class CollectConfig:
    env: EnvConfig = MISSING
    policy: str = "oracle"  # oracle | checkpoint
    checkpoint: str | None = None  # run dir or checkpoint file (sets policy=checkpoint)
    deterministic: bool = False  # greedy actions for checkpoint policies
    episodes: int = 1000  # episodes to write (split evenly over the grid)
    dataset_id: str = MISSING  # Minari id, e.g. tmaze/elmur-oracle-v0
    data_dir: str = "data"  # Minari root
    grid: dict[str, list[Any]] = field(default_factory=dict)  # env kwargs to vary: {corridor_length: [8, 18]}
    num_envs: int = 64  # parallel envs while collecting
    seed: int = 0
    overwrite: bool = False  # replace an existing dataset
    lossless: bool = True  # False lets Minari JPEG-encode image observations
    device: str = "cpu"
    author: str | None = None  # optional Minari metadata
    author_email: str | None = None
    code_permalink: str | None = None


@torch.no_grad()
def collect_episodes(vec: Any, episodes: int, policy: Any = None, seed: int = 0,
                     deterministic: bool = False) -> list[Episode]:
    """Roll out ``episodes`` episodes (row i runs ``(episodes + i) // num_envs`` of them).

    ``policy=None`` uses ``vec.oracle_action()``. Steps are recorded as batches on the env's device, moved to
    numpy and split into episodes once at the end.
    """
    n = vec.num_envs
    if policy is None and not hasattr(vec, "oracle_action"):
        raise ValueError(f"{type(vec).__name__} has no oracle policy; pass checkpoint=PATH")
    target = np.array([(episodes + i) // n for i in range(n)])
    target_t = torch.as_tensor(target, device=vec.device)
    count = torch.zeros(n, dtype=torch.long, device=vec.device)
    obs, _ = vec.reset(seed=seed)
    state = policy.initial_state(n) if policy is not None else None
    start = torch.ones(n, dtype=torch.bool, device=vec.device)
    steps: list[tuple[Any, ...]] = []
    while bool((count < target_t).any()):
        if policy is None:
            action = vec.oracle_action()
        else:
            action, state = policy.act(obs, state, start, deterministic)
        nxt, reward, term, trunc, info = vec.step(action)
        done = term | trunc
        steps.append(tree_map(lambda t: t.detach().clone(), (obs, action, reward, term, trunc, info["final_obs"])))
        count += done
        obs, start = nxt, done
    # each (steps, N, ...), one transfer to the host
    o, a, r, te, tr, fo = tree_map(lambda *xs: torch.stack(xs).cpu().numpy(), *steps)
    out: list[Episode] = []
    for row in range(n):  # post-processing once per dataset, not per step
        ends = np.nonzero(te[:, row] | tr[:, row])[0][: target[row]]
        begin = 0
        for end in ends:
            sl = slice(begin, end + 1)
            last = (end, row)  # the episode's steps, then its final observation
            out.append(Episode(
                observations=tree_map(lambda x, f, i=(sl, row), j=last: np.concatenate([x[i], f[j][None]]), o, fo),
                actions=a[sl, row], rewards=r[sl, row], terminations=te[sl, row], truncations=tr[sl, row]))
            begin = end + 1
    return out


def collect(cfg: Any) -> Path:
    """Collect and write the dataset described by a ``CollectConfig`` (or a mapping of its fields, missing
    ones taking their defaults); returns its path."""
    import gymnasium as gym

    from envs import make_vec
    from rlmem.checkpoint import load_policy
    from rlmem.data import write_dataset

    cfg = OmegaConf.merge(OmegaConf.structured(CollectConfig), cfg)  # defaults and type checks
    policy = None
    if cfg.checkpoint or cfg.policy == "checkpoint":
        if not cfg.checkpoint:
            raise ValueError("policy=checkpoint needs checkpoint=PATH")
        policy = load_policy(cfg.checkpoint, cfg.device)
    elif cfg.policy != "oracle":
        raise ValueError(f"policy must be 'oracle' or 'checkpoint', got {cfg.policy!r}")
    base = dict(cfg.env.kwargs)
    keys = list(cfg.grid)
    combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(cfg.grid[k] for k in keys))]
    combos = combos or [{}]
    episodes: list[Episode] = []
    for j, combo in enumerate(combos):
        kwargs = {**base, **combo}
        share = (cfg.episodes + j) // len(combos)
        vec = make_vec(cfg.env.id, min(cfg.num_envs, share), kwargs, device=cfg.device, backend=cfg.env.backend,
                       asynchronous=cfg.env.asynchronous)
        if policy is not None:
            policy.check_spaces(vec.single_observation_space, vec.single_action_space)
        episodes += collect_episodes(vec, share, policy, seed=cfg.seed + 1000 * j, deterministic=cfg.deterministic)
        vec.close()
        log.info("collected %d episodes with %s", share, kwargs or "default kwargs")
    env = gym.make(cfg.env.id, **{**base, **combos[-1]})
    returns = np.array([ep.rewards.sum() for ep in episodes])
    path = write_dataset(cfg.dataset_id, episodes, env, cfg.data_dir,
                         algorithm_name="oracle" if policy is None else f"rlmem:{cfg.checkpoint}",
                         description=f"{len(episodes)} episodes of {cfg.env.id} {base} grid {dict(cfg.grid)}",
                         overwrite=cfg.overwrite, lossless=cfg.lossless, author=cfg.author,
                         author_email=cfg.author_email, code_permalink=cfg.code_permalink)
    log.info("wrote %d episodes (%d steps, mean return %.3f) to %s", len(episodes),
             sum(len(e) for e in episodes), returns.mean(), path)
    return path


register_configs()
ConfigStore.instance().store(name="collect_schema", node=CollectConfig)


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent.parent / "conf"),
            config_name="collect")
def main(cfg: DictConfig) -> None:
    collect(cfg)


if __name__ == "__main__":
    main()
