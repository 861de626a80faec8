"""Rolling a policy out into a Minari dataset, and making sure a run's dataset exists (the data layer).

* :func:`collect_episodes`: episodes of a policy (or the env's privileged oracle) on a vector env;
* :func:`collect_dataset`: episodes over a grid of env kwargs, written as a Minari dataset (``rlmem.data``);
* :func:`ensure_dataset`: what the offline trainer's ``algo.collect`` asks for, run once before training when the
  dataset is missing (``python -m rlmem.collect`` is the same function behind a CLI).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmem.data import Episode, dataset_exists, dataset_lock, write_dataset
from rlmem.tree import tree_map

log = logging.getLogger("rlmem")


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


def collect_dataset(
    env_id: str,
    env_kwargs: dict[str, Any],
    dataset_id: str,
    episodes: int,
    policy: Any = None,
    *,
    grid: dict[str, list[Any]] | None = None,
    data_dir: str | Path = "data",
    backend: str = "auto",
    asynchronous: bool = False,
    num_envs: int = 64,
    seed: int = 0,
    deterministic: bool = False,
    device: str | torch.device = "cpu",
    algorithm_name: str | None = None,
    **write_kwargs: Any,
) -> Path:
    """Roll ``policy`` (None: the env's oracle) out for ``episodes`` episodes, split evenly over the combinations
    of ``grid`` (env kwargs to vary, e.g. ``{"corridor_length": [9, 29]}``), and write them as ``dataset_id``.
    ``write_kwargs`` go to :func:`rlmem.data.write_dataset` (``overwrite``, ``lossless``, author metadata)."""
    from envs import make_vec

    grid = dict(grid or {})
    keys = list(grid)
    combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(grid[k] for k in keys))] or [{}]
    out: list[Episode] = []
    for j, combo in enumerate(combos):
        kwargs = {**env_kwargs, **combo}
        share = (episodes + j) // len(combos)
        vec = make_vec(env_id, min(num_envs, share), kwargs, device=device, backend=backend,
                       asynchronous=asynchronous)
        try:
            if policy is not None:
                policy.check_spaces(vec.single_observation_space, vec.single_action_space)
            out += collect_episodes(vec, share, policy, seed=seed + 1000 * j, deterministic=deterministic)
        finally:
            vec.close()
        log.info("collected %d episodes with %s", share, kwargs or "default kwargs")
    env = gym.make(env_id, **{**env_kwargs, **combos[-1]})
    returns = np.array([ep.rewards.sum() for ep in out])
    path = write_dataset(dataset_id, out, env, data_dir, algorithm_name=algorithm_name or "oracle",
                         description=f"{len(out)} episodes of {env_id} {env_kwargs} grid {grid}", **write_kwargs)
    log.info("wrote %d episodes (%d steps, mean return %.3f) to %s", len(out), sum(len(e) for e in out),
             returns.mean(), path)
    return path


def resolve_policy(policy: str, checkpoint: str | None, device: str | torch.device = "cpu") -> Any:
    """The policy a collection spec names: None for the env's oracle, or the trained policy at ``checkpoint``
    (a checkpoint implies ``policy=checkpoint``)."""
    if checkpoint or policy == "checkpoint":
        if not checkpoint:
            raise ValueError("policy=checkpoint needs checkpoint=PATH")
        from rlmem.checkpoint import load_policy

        return load_policy(checkpoint, device)
    if policy != "oracle":
        raise ValueError(f"policy must be 'oracle' or 'checkpoint', got {policy!r}")
    return None


def ensure_dataset(env: Any, dataset_id: str, data_dir: str, spec: Any, device: str = "cpu") -> None:
    """Collect dataset ``dataset_id`` as ``spec`` (``rlmem.config.CollectSpec``) says, when it is missing and a
    spec is given; ``env`` is the run's ``EnvConfig``."""
    if dataset_exists(dataset_id, data_dir) or spec is None:
        return
    with dataset_lock(dataset_id, data_dir):  # runs started together collect it once; the others wait for it
        if dataset_exists(dataset_id, data_dir):
            return
        policy = resolve_policy(spec.policy, spec.checkpoint, device)
        log.info("dataset %s is missing: collecting %d episodes with %s", dataset_id, spec.episodes, spec.policy)
        collect_dataset(env.id, dict(env.kwargs), dataset_id, spec.episodes, policy, grid=dict(spec.grid),
                        data_dir=data_dir, backend=env.backend, asynchronous=env.asynchronous,
                        num_envs=spec.num_envs, seed=spec.seed, device=device,
                        algorithm_name=None if policy is None else f"rlmem:{spec.checkpoint}")
