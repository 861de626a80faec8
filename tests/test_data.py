"""Minari datasets: collect, round-trip, and clear failures for missing / corrupt / mismatched data."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from envs import make_vec
from rlmem.collect import collect
from rlmem.collection import collect_episodes
from rlmem.data import load_trajectories


def collect_cfg(tmp_path, **over):
    cfg = {"env": {"id": "rlmem/TMaze-v0", "kwargs": {"corridor_length": 4, "variant": "elmur"}, "backend": "torch",
                   "asynchronous": False},
           "policy": "oracle", "checkpoint": None, "deterministic": False, "episodes": 20,
           "dataset_id": "test/tmaze-v0", "data_dir": str(tmp_path), "grid": {}, "num_envs": 8, "seed": 0,
           "overwrite": False, "lossless": True, "device": "cpu"}
    cfg.update(over)
    return OmegaConf.create(cfg)


def test_oracle_collection_round_trips_through_minari(tmp_path):
    collect(collect_cfg(tmp_path, grid={"corridor_length": [2, 5]}))
    env = gym.make("rlmem/TMaze-v0", corridor_length=5, variant="elmur")
    data = load_trajectories("test/tmaze-v0", tmp_path, env.observation_space, env.action_space)
    assert data.num_episodes == 20
    assert sorted(set(data.lengths.tolist())) == [3, 6]  # oracle: L rights + one turn
    assert torch.all(data.rewards.sum(1) == 1.0)  # every oracle episode succeeds
    first = data.obs[:, 0]
    assert torch.all(first[:, 1].abs() == 1)  # the clue is in the first observation...
    assert torch.all(data.obs[:, 1:, 1] == 0)  # ...and nowhere else
    # the oracle's turn matches the clue: up (1) for +1, down (3) for -1
    last = data.actions[torch.arange(20), data.lengths - 1]
    assert torch.all(last == torch.where(first[:, 1] > 0, 1, 3))


def test_collected_steps_match_a_replay_of_the_env(tmp_path):
    vec = make_vec("rlmem/TMaze-v0", 3, {"corridor_length": 3}, backend="torch")
    episodes = collect_episodes(vec, 6, seed=11)
    assert len(episodes) == 6
    for ep in episodes:
        assert len(ep.observations) == len(ep.actions) + 1 and ep.terminations[-1] and not ep.terminations[:-1].any()
    # replay row 0's first episode with the gym env and the same seed
    env = gym.make("rlmem/TMaze-v0", corridor_length=3)
    obs, _ = env.reset(seed=11)
    ep = episodes[0]
    np.testing.assert_allclose(ep.observations[0], obs)
    for t, a in enumerate(ep.actions):
        obs, r, *_ = env.step(int(a))
        np.testing.assert_allclose(ep.observations[t + 1], obs)
        assert r == ep.rewards[t]


def test_missing_corrupt_and_mismatched_datasets_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset 'test/none-v0'.*rlmem.collect"):
        load_trajectories("test/none-v0", tmp_path)
    collect(collect_cfg(tmp_path))
    passive = gym.make("rlmem/TMaze-v0", variant="passive")
    with pytest.raises(ValueError, match=r"observation space Box.*\(4,\).*environment has Box.*\(2,\)"):
        load_trajectories("test/tmaze-v0", tmp_path, passive.observation_space, passive.action_space)
    with pytest.raises(FileExistsError, match="overwrite"):
        collect(collect_cfg(tmp_path))
    for f in (tmp_path / "test" / "tmaze-v0" / "data").iterdir():
        if f.suffix in (".hdf5", ".h5"):
            f.write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        load_trajectories("test/tmaze-v0", tmp_path)
    collect(collect_cfg(tmp_path, overwrite=True, episodes=10))  # overwrite replaces the corrupt dataset
    assert load_trajectories("test/tmaze-v0", tmp_path).num_episodes == 10


def test_checkpoint_policy_collects_popgym_data(cfg_factory, tmp_path):
    from rlmem.train import train

    train(cfg_factory("env=popgym", "env.id=rlmem/RepeatPreviousEasy-v0", "model=gru",
                      "model.memory_kwargs.hidden_size=8", "algo.total_steps=256", "algo.num_envs=4",
                      "algo.num_steps=16", "algo.seq_len=8", "algo.num_minibatches=2", "eval_episodes=0",
                      f"run_dir={tmp_path / 'run'}"))
    cfg = collect_cfg(tmp_path, env={"id": "rlmem/RepeatPreviousEasy-v0", "kwargs": {}, "backend": "gym",
                                     "asynchronous": False},
                      policy="checkpoint", checkpoint=str(tmp_path / "run"), episodes=4, num_envs=2,
                      dataset_id="test/popgym-v0")
    collect(cfg)
    env = gym.make("rlmem/RepeatPreviousEasy-v0")
    data = load_trajectories("test/popgym-v0", tmp_path, env.observation_space, env.action_space)
    assert data.num_episodes == 4 and data.obs.dtype == torch.int64


ENSURE = """
import sys
from omegaconf import OmegaConf
from rlmem.collection import ensure_dataset
env = OmegaConf.create({"id": "rlmem/TMaze-v0", "kwargs": {"corridor_length": 40}, "backend": "torch",
                        "asynchronous": False})
spec = OmegaConf.create({"policy": "oracle", "checkpoint": None, "episodes": 400, "grid": {}, "num_envs": 8,
                         "seed": 0})
ensure_dataset(env, "test/race-v0", sys.argv[1], spec)
"""


def test_runs_started_together_collect_a_missing_dataset_once(tmp_path):
    """Two processes that both find the dataset missing: one collects it, the other waits and uses it (no
    'already exists' error, no half-written dataset seen), and nothing is left staged."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", ENSURE, str(tmp_path)], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    env = gym.make("rlmem/TMaze-v0", corridor_length=40)
    data = load_trajectories("test/race-v0", tmp_path, env.observation_space, env.action_space)
    assert data.num_episodes == 400
    assert not list(tmp_path.glob(".staging-*"))
