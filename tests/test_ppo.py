"""PPO: advantage maths, truncation handling, smoke runs of every memory, checkpoints and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlmem.algos.ppo import check_config, gae
from rlmem.checkpoint import load_checkpoint
from rlmem.memory import MEMORIES
from rlmem.train import train
from tests.conftest import small_model


def test_gae_matches_hand_computation():
    # One env, 3 steps; the episode ends after step 1, so step 1 does not bootstrap from step 2.
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[0.5, 1.0, 1.5]])
    d = torch.tensor([[False, True, False]])
    nv = torch.tensor([2.0])
    g, lam = 0.9, 0.8
    d2 = 3 + g * 2.0 - 1.5
    d1 = 2 - 1.0
    d0 = 1 + g * 1.0 - 0.5
    a2, a1 = d2, d1
    a0 = d0 + g * lam * a1
    adv, ret = gae(r, v, d, nv, g, lam)
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2]]))
    assert torch.allclose(ret, adv + v)


def test_config_errors_are_clear(cfg_factory):
    with pytest.raises(ValueError, match="must divide"):
        check_config(cfg_factory("algo.num_steps=10", "algo.seq_len=4").algo)
    with pytest.raises(ValueError, match="exceeds"):
        check_config(cfg_factory("algo.num_envs=1", "algo.num_steps=8", "algo.seq_len=8",
                                 "algo.num_minibatches=2").algo)


TINY = ["algo.total_steps=512", "algo.num_envs=4", "algo.num_steps=32", "algo.seq_len=8",
        "algo.num_minibatches=2", "algo.update_epochs=2", "eval_episodes=4", "algo.checkpoint_every=1"]
SMOKE_ENVS = {
    "tmaze": ["env=tmaze", "env.kwargs.corridor_length=4"],
    # torch POPGym (env.backend=auto): Dict observation (previous action), MultiDiscrete actions
    "popgym": ["env=popgym", "env.id=rlmem/BattleshipEasy-v0"],
    "popgym-gym": ["env=popgym", "env.id=rlmem/CountRecallEasy-v0", "env.backend=gym"],  # popgym itself
    "cartpole": ["env=gym", "env.id=CartPole-v1"],
}


@pytest.mark.parametrize("memory", sorted(MEMORIES))
@pytest.mark.parametrize("env", sorted(SMOKE_ENVS))
def test_smoke_every_memory_on_every_env_kind(cfg_factory, tmp_path, memory, env):
    cfg = cfg_factory(*small_model(memory), *SMOKE_ENVS[env], *TINY, f"run_dir={tmp_path}")
    result = train(cfg)
    assert result["episodes"] == 4
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["trainer"]["global_step"] == 512 and ckpt["config"]["model"]["memory"] == memory
    assert json.loads((tmp_path / "eval.json").read_text())["episodes"] == 4
    assert (tmp_path / "config.yaml").is_file() and any((tmp_path / "tb").iterdir())


def test_truncation_bootstraps_instead_of_terminating(cfg_factory, tmp_path):
    # Constant reward 1, truncated every 5 steps: with gamma=0.9 the true value is 10, while
    # treating truncation as termination would give at most 1 + 0.9 + ... + 0.9^4 = 4.1.
    cfg = cfg_factory("env=gym", "env.id=rlmem-test/ConstantReward-v0", "model=mlp",
                      "algo.total_steps=24576", "algo.num_envs=8", "algo.num_steps=64", "algo.seq_len=8",
                      "algo.gamma=0.9", "algo.lr=3e-3", "algo.anneal_lr=false", "algo.clip_vloss=false",
                      "algo.update_epochs=8", "eval_episodes=0", f"run_dir={tmp_path}")
    train(cfg)
    from rlmem import load_policy

    policy = load_policy(tmp_path)
    obs = torch.zeros(4, 2)
    v = policy.value(obs, policy.initial_state(4), torch.ones(4, dtype=torch.bool))
    assert torch.all((v > 8.0) & (v < 12.0)), f"value {v.tolist()} should approach 1/(1-0.9) = 10"


def test_resume_continues_from_checkpoint(cfg_factory, tmp_path):
    base = ["env=tmaze", "env.kwargs.corridor_length=4", "model=gru", "model.memory_kwargs.hidden_size=16",
            "algo.num_envs=4", "algo.num_steps=16", "algo.seq_len=8", "algo.num_minibatches=2",
            "algo.checkpoint_every=1", "eval_episodes=0", f"run_dir={tmp_path}"]
    train(cfg_factory(*base, "algo.total_steps=256"))
    first = load_checkpoint(tmp_path)
    assert first["trainer"]["iteration"] == 4
    train(cfg_factory(*base, "algo.total_steps=512", "resume=true"))
    second = load_checkpoint(tmp_path)
    assert second["trainer"]["iteration"] == 8 and second["trainer"]["global_step"] == 512
    # Weights moved on from the first run's (training continued rather than restarted).
    changed = any(not torch.equal(first["policy"][k], second["policy"][k]) for k in first["policy"])
    assert changed
    with pytest.raises(ValueError, match="config changed"):
        train(cfg_factory(*base, "algo.total_steps=512", "algo.lr=0.1", "resume=true"))


def test_interrupted_run_saves_and_resumes(cfg_factory, tmp_path, monkeypatch):
    import rlmem.algos.ppo as ppo

    base = ["env=tmaze", "env.kwargs.corridor_length=4", "model=lstm", "model.memory_kwargs.hidden_size=8",
            "algo.num_envs=4", "algo.num_steps=16", "algo.seq_len=8", "algo.num_minibatches=2",
            "algo.checkpoint_every=100", "algo.total_steps=384", "eval_episodes=0", f"run_dir={tmp_path}"]
    calls = {"n": 0}
    real_gae = ppo.gae

    def crashing_gae(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third update
        return real_gae(*args, **kwargs)

    monkeypatch.setattr(ppo, "gae", crashing_gae)
    with pytest.raises(KeyboardInterrupt):
        train(cfg_factory(*base))
    saved = load_checkpoint(tmp_path)["trainer"]
    assert saved["iteration"] == 2 and saved["global_step"] == 128  # the two finished updates are kept
    monkeypatch.setattr(ppo, "gae", real_gae)
    train(cfg_factory(*base, "resume=true"))
    assert load_checkpoint(tmp_path)["trainer"]["global_step"] == 384


@pytest.mark.parametrize("action", ["box", "discrete", "multidiscrete"])
def test_every_space_kind_trains_and_predicts(cfg_factory, tmp_path, action):
    import gymnasium as gym

    from rlmem import load_policy

    cfg = cfg_factory("env=gym", "env.id=rlmem-test/AllSpaces-v0", f"+env.kwargs.action={action}",
                      *small_model("gru"), *TINY, f"run_dir={tmp_path}")
    result = train(cfg)
    assert result["episodes"] == 4 and result["success_rate"] is not None
    policy = load_policy(tmp_path)
    env = gym.make("rlmem-test/AllSpaces-v0", action=action)
    obs, _ = env.reset(seed=0)
    a, state = policy.predict(obs)
    assert env.action_space.contains(np.asarray(a, dtype=env.action_space.dtype))
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    a2, _ = policy.predict(batch, state=None)
    assert a2.shape == (2, *env.action_space.shape)


def test_time_budget_stops_after_the_update_in_progress(cfg_factory, tmp_path):
    # 512 steps = 4 updates of 4 x 32; with no time left the first update is the last one, saved and evaluated.
    cfg = cfg_factory("model=mlp", *SMOKE_ENVS["tmaze"], *TINY, "algo.checkpoint_every=100", "time_budget_s=0",
                      f"run_dir={tmp_path}")
    assert train(cfg)["episodes"] == 4
    assert load_checkpoint(tmp_path)["trainer"]["global_step"] == 128
