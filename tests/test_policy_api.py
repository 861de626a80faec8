"""The public API other RL code uses: load_policy, act, predict (sb3 signature), env rebuild."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlmem
from rlmem.evaluate import main as evaluate_cli
from rlmem.evaluation import evaluate_env
from rlmem.train import train

TMAZE = ["env=tmaze", "env.kwargs.variant=passive", "env.kwargs.corridor_length=5", "env.backend=gym",
         "model=lstm", "model.memory_kwargs.hidden_size=16", "algo.total_steps=1024", "algo.num_envs=4",
         "algo.num_steps=32", "algo.seq_len=8", "algo.num_minibatches=2", "eval_episodes=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tests.conftest import make_cfg

    d = tmp_path_factory.mktemp("run")
    train(make_cfg(*TMAZE, f"run_dir={d}"))
    return d


def test_load_policy_from_dir_and_file(run_dir):
    p1 = rlmem.load_policy(run_dir)
    p2 = rlmem.load_policy(run_dir / "checkpoints" / "latest.pt")
    for k, v in p1.state_dict().items():
        assert torch.equal(v, p2.state_dict()[k])
    assert p1.env_id == "rlmem/TMaze-v0"
    assert p1.env_kwargs == {"corridor_length": 5, "variant": "passive"}
    env = p1.make_env()  # foreign code: gymnasium.make(policy.env_id, **policy.env_kwargs)
    assert env.observation_space == p1.observation_space


def test_checkpoint_without_weights_is_the_same_architecture_untrained(run_dir):
    from rlmem.checkpoint import load_checkpoint, policy_from_checkpoint

    ckpt = load_checkpoint(run_dir)
    trained, fresh = policy_from_checkpoint(ckpt), policy_from_checkpoint(ckpt, weights=False)
    assert fresh.arch == trained.arch and not fresh.training
    shapes = {k: v.shape for k, v in trained.state_dict().items()}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == shapes
    assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in trained.state_dict().items())


def test_act_and_predict_agree_step_by_step(run_dir):
    policy = rlmem.load_policy(run_dir)
    env = gym.make(policy.env_id, **policy.env_kwargs)
    obs, _ = env.reset(seed=3)
    state_a = policy.initial_state(1)
    state_p, start = None, np.ones(1, dtype=bool)
    done = False
    while not done:
        a_act, state_a = policy.act(torch.as_tensor(obs)[None], state_a, torch.as_tensor(start), deterministic=True)
        a_pred, state_p = policy.predict(obs, state=state_p, episode_start=start, deterministic=True)
        assert np.ndim(a_pred) == 0 and int(a_pred) == int(a_act[0])
        obs, _, term, trunc, _ = env.step(int(a_pred))
        done, start = term or trunc, np.zeros(1, dtype=bool)
        for k in state_a:
            assert torch.allclose(state_a[k], state_p[k])


def test_sb3_evaluate_policy_agrees_with_rlmem_evaluate(run_dir):
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    policy = rlmem.load_policy(run_dir)
    vec = DummyVecEnv([policy.make_env for _ in range(4)])
    vec.seed(123)
    sb3_returns, sb3_lengths = evaluate_policy(policy, vec, n_eval_episodes=12, deterministic=True,
                                               return_episode_rewards=True, warn=False)
    ours, _ = evaluate_env(policy, policy.env_id, policy.env_kwargs, 12, backend="gym", num_envs=4,
                           balanced=False, seed=123)
    assert sorted(np.round(sb3_returns, 5)) == sorted(np.round(ours.returns, 5))
    assert np.mean(sb3_lengths) == pytest.approx(ours.mean_length)


def test_space_mismatch_names_both_spaces(run_dir):
    policy = rlmem.load_policy(run_dir)
    with pytest.raises(ValueError, match=r"observation space mismatch: the policy was trained on Box.*\(2,\).*"
                                         r"but the environment has Box.*\(4,\)"):
        evaluate_env(policy, "rlmem/TMaze-v0", {"corridor_length": 5, "variant": "elmur"}, 2)


def test_evaluate_cli_table_json_and_env_override(run_dir, capsys):
    out = evaluate_cli([f"checkpoint={run_dir}", "episodes=6", "env.kwargs.corridor_length=9", "env.backend=torch",
                        f"output={run_dir / 'e.json'}"])
    printed = capsys.readouterr().out
    assert "mean return" in printed and "success" in printed
    assert out["episodes"] == 6 and out["env_kwargs"]["corridor_length"] == 9 and out["balanced"]
    assert (run_dir / "e.json").is_file()
    with pytest.raises(SystemExit, match="episodez"):
        evaluate_cli([f"checkpoint={run_dir}", "episodez=3"])


def test_missing_and_corrupt_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        rlmem.load_policy(tmp_path)
    bad = tmp_path / "checkpoints" / "latest.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        rlmem.load_policy(tmp_path)


def test_act_accepts_numpy_as_other_rl_code_passes_it(run_dir):
    policy = rlmem.load_policy(run_dir)
    envs = gym.make_vec("rlmem/TMaze-v0", 3, corridor_length=5, variant="passive")
    obs, _ = envs.reset(seed=0)
    state = policy.initial_state(3)
    a_np, s_np = policy.act(obs, state, np.ones(3, dtype=bool), deterministic=True)
    a_t, s_t = policy.act(torch.as_tensor(obs), state, torch.ones(3, dtype=torch.bool), deterministic=True)
    assert torch.equal(a_np, a_t) and all(torch.equal(s_np[k], s_t[k]) for k in s_t)
