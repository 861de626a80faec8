"""MuJoCo vision manipulation tasks: gymnasium compliance, task rules, oracles, vectorized stepping."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs
from envs.manipulation import TASKS

IDS = [f"rlmem/{t}-v0" for t in TASKS]


def run(env: gym.Env, policy, seed: int) -> tuple[dict, list[float], int]:
    """One episode; returns the last info, the rewards and the length."""
    env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        _, r, term, trunc, info = env.step(policy(env.unwrapped))
        rewards.append(r)
        done = term or trunc
    return info, rewards, len(rewards)


def goto(env, point: np.ndarray) -> np.ndarray:
    """A scripted action towards ``point`` (as the oracle moves)."""
    return np.clip((point - env.pos("ee")) / env.max_delta, -1, 1).astype(np.float32)


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_and_spaces(env_id):
    env = gym.make(env_id, reward_mode="dense")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].shape == (64, 64, 3) and obs["rgb"].dtype == np.uint8
    assert env.observation_space.contains(obs)
    small = gym.make(env_id, width=32, height=24, proprio=False, render_mode="rgb_array", render_size=96)
    obs, _ = small.reset(seed=0)
    assert set(obs) == {"rgb"} and obs["rgb"].shape == (24, 32, 3)
    assert small.render().shape == (96, 96, 3)


@pytest.mark.parametrize("env_id", IDS)
def test_oracle_always_succeeds(env_id):
    env = gym.make(env_id)
    for seed in range(4):
        info, rewards, n = run(env, lambda e: e.oracle_action(), seed)
        assert info["success"] and rewards[-1] == 1.0 and sum(rewards) == 1.0
        assert n < env.unwrapped.max_steps


def test_wrong_object_ends_the_episode_as_failure():
    env = gym.make("rlmem/RememberColor3-v0", reward_mode="dense")
    for seed in range(3):
        env.reset(seed=seed)
        u = env.unwrapped
        wrong = u.candidates[(u.target + 1) % 3]
        info, rewards, n = run(env, lambda e, w=wrong: goto(e, e.touch_point(w)) if e.t >= 10 else np.zeros(3), seed)
        assert not info["success"] and n < u.max_steps  # terminated early, as a failure
        assert all(0.0 <= r <= 0.5 for r in rewards)  # dense shaping never reaches a success's reward


def test_memoryless_choice_is_at_chance():
    """Always touching the object at the same slot succeeds about 1/3 of the time: the layout gives nothing away."""
    env = gym.make("rlmem/RememberColor3-v0")
    wins = []
    for seed in range(60):
        env.reset(seed=seed)
        u = env.unwrapped
        left = min(u.candidates, key=lambda c: u.pos(c)[0])
        info, _, _ = run(env, lambda e, c=left: goto(e, e.touch_point(c)) if e.t >= 10 else np.zeros(3), seed)
        wins.append(info["success"])
    assert 0.15 < np.mean(wins) < 0.55


def test_cue_only_in_the_cue_phase():
    """The table looks the same in the blank phase whatever the cue was; the cue differs at step 0."""
    frames = {}
    env = gym.make("rlmem/RememberColor3-v0")
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        first = obs["rgb"]
        for _ in range(6):
            obs, *_ = env.step(np.zeros(3, np.float32))
        frames.setdefault(env.unwrapped.target, (first, obs["rgb"]))
    assert len(frames) >= 2
    (a0, a5), (b0, b5) = list(frames.values())[:2]
    assert not np.array_equal(a0, b0)
    assert np.abs(a5.astype(int) - b5.astype(int)).max() <= 2  # blank table (the end-effector rests)


def test_shell_game_cups_hide_the_ball():
    env = gym.make("rlmem/ShellGameTouch-v0")
    env.reset(seed=1)
    u = env.unwrapped
    assert u.visible("ball") and not any(u.visible(c) for c in u.candidates)
    for _ in range(5):
        env.step(np.zeros(3, np.float32))
    assert not u.visible("ball") and all(u.visible(c) for c in u.candidates)
    np.testing.assert_allclose(u.pos("ball")[:2], u.pos(u.candidates[u.target])[:2])


def test_chain_needs_the_shown_order_seq_does_not():
    for name, want in (("SeqOfColors3", True), ("ChainOfColors3", False)):
        env = gym.make(f"rlmem/{name}-v0")
        env.reset(seed=2)
        u = env.unwrapped
        order = list(reversed(u.targets))

        def policy(e, order=order):
            if e.t < e.choice_start:
                return np.zeros(3, np.float32)
            nxt = next(i for i in order if i not in e.done)
            return goto(e, e.touch_point(e.candidates[nxt]))

        info, _, _ = run(env, policy, 2)
        assert info["success"] == want, name


def test_sparse_and_dense_rewards():
    sparse = gym.make("rlmem/ShellGameTouch-v0")
    dense = gym.make("rlmem/ShellGameTouch-v0", reward_mode="dense")
    _, rs, _ = run(sparse, lambda e: e.oracle_action(), 0)
    _, rd, _ = run(dense, lambda e: e.oracle_action(), 0)
    assert rs[-1] == rd[-1] == 1.0 and sum(rs[:-1]) == 0.0
    shaping = rd[5:-1]  # choice phase: the oracle closes in
    assert all(0.0 < r <= 0.5 for r in shaping) and shaping[-1] > shaping[0]
    with pytest.raises(ValueError, match="reward_mode"):
        gym.make("rlmem/ShellGameTouch-v0", reward_mode="shaped")


def test_bad_kwargs():
    from envs.manipulation.remember import RememberColorEnv

    with pytest.raises(ValueError, match="3, 5 or 9"):
        RememberColorEnv(n=4)
    with pytest.raises(ValueError, match="fixes"):
        envs.make_manipulation("RememberColor3", n=5)
    with pytest.raises(ValueError, match="unknown manipulation task"):
        envs.make_manipulation("RememberColour3")


@pytest.mark.parametrize("asynchronous", [False, True])
def test_vector_env_oracle(asynchronous):
    """Subprocess workers behind the vector-env layer; the oracle is called in each worker."""
    vec = envs.make_vec("rlmem/RememberColor3-v0", 2, {"prev_action": True}, backend="gym", asynchronous=asynchronous)
    obs, _ = vec.reset(seed=0)
    assert obs["obs"]["rgb"].shape == (2, 64, 64, 3) and obs["prev_action"].shape == (2, 3)
    successes = []
    for _ in range(60):
        obs, _, term, trunc, info = vec.step(vec.oracle_action())
        successes += info["success"][term | trunc].tolist()
    vec.close()
    assert len(successes) >= 4 and all(s == 1.0 for s in successes)
    assert obs["prev_action"].dtype == torch.float32


@pytest.mark.parametrize("memory", sorted(__import__("rlmem.memory", fromlist=["MEMORIES"]).MEMORIES))
def test_pixel_policy_with_every_memory(memory):
    """The policy builder's image encoder (CNN on ``rgb``, MLP on ``proprio``) feeds every memory; acting on a
    vector of manipulation envs gives in-bounds end-effector actions."""
    from rlmem.policy import Policy
    from tests.conftest import SMALL_SIZES

    kwargs = {k.split(".")[-1]: int(v) for k, v in (o.split("=") for o in SMALL_SIZES.get(
        memory, ["model.memory_kwargs.hidden_size=16"]))}
    vec = envs.make_vec("rlmem/ShellGameTouch-v0", 2, {"width": 32, "height": 32}, backend="gym")
    policy = Policy(vec.single_observation_space, vec.single_action_space, memory, kwargs, {"cnn_out": 32})
    obs, _ = vec.reset(seed=0)
    state, start = policy.initial_state(2), torch.ones(2, dtype=torch.bool)
    for _ in range(3):
        action, state = policy.act(obs, state, start)
        assert action.shape == (2, 3) and bool((action.abs() <= 1).all())
        obs, *_ = vec.step(action)
        start = torch.zeros(2, dtype=torch.bool)
    vec.close()


def test_offline_and_ppo_train_on_pixels_and_evaluation_records_video(cfg_factory, tmp_path):
    from rlmem.evaluate import main as evaluate_cli
    from rlmem.train import train
    from tests.conftest import small_model

    small = ["env.kwargs.width=32", "env.kwargs.height=32", "env.asynchronous=false", "env.eval_envs=2",
             "model.encoder.cnn_out=32"]
    cfg = cfg_factory("experiment=manipulation_bc", *small, *small_model("lstm"), "algo.collect.episodes=6",
                      "algo.collect.num_envs=2", "algo.updates=2", "algo.batch_size=4", "eval_episodes=2",
                      f"algo.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'bc'}")
    assert cfg.algo.dataset_id == "rlmem/RememberColor3-v0-32x32-oracle-v0"
    assert train(cfg)["episodes"] == 2
    video = tmp_path / "ep.gif"
    out = evaluate_cli([f"checkpoint={tmp_path / 'bc'}", "episodes=2", f"record={video}",
                        "record_episodes=2", "env.kwargs.render_size=48"])
    assert out["episodes"] == 2 and len(out["recording"]["returns"]) == 2
    import imageio.v2 as imageio

    frames = imageio.mimread(video)
    assert len(frames) == out["recording"]["frames"] > 10 and frames[0].shape[:2] == (48, 48)

    ppo = cfg_factory("env=manipulation", "env.id=rlmem/ShellGameTouch-v0", *small, *small_model("gru"),
                      "algo=ppo", "algo.num_envs=2", "algo.num_steps=16", "algo.seq_len=8", "algo.total_steps=64",
                      "eval_episodes=2", f"run_dir={tmp_path / 'ppo'}")
    assert train(ppo)["episodes"] == 2


def test_free_props_are_pushed_kinematic_ones_are_not():
    """The base scene for pushing tasks: a free cube slides when the finger runs into it, a kinematic one stays
    (the scene also holds a goal disc)."""
    from envs.manipulation.base import TableTopEnv
    from envs.manipulation.scene import box, disc

    class Push(TableTopEnv):
        max_steps = 40

        def _props(self):
            return [box("free", free=True, rgba=(1, 0, 0, 1)), box("fixed", rgba=(0, 0, 1, 1)),
                    disc("mark", rgba=(1, 1, 1, 1))]

        def _reset_task(self):
            self.set_pose("free", (-0.08, 0.0, 0.0))
            self.set_pose("fixed", (0.08, 0.0, 0.0))
            self.set_pose("mark", (-0.08, 0.06, 0.0))  # on the free cube's path

        def _status(self):
            return False, False, 0.0

        def _oracle_goal(self):
            return None

    env = Push()
    env.reset(seed=0)
    np.testing.assert_allclose(env.pos("free"), (-0.08, 0.0, 0.0), atol=1e-6)
    for name, x in (("free", -0.08), ("fixed", 0.08)):
        env.reset(seed=0)
        start = env.pos(name)
        for _ in range(12):  # down beside the cube, then through it along +y
            env.step(goto(env, np.array([x, -0.08, 0.02])))
        for _ in range(12):
            env.step(goto(env, np.array([x, 0.1, 0.02])))
        moved = np.linalg.norm(env.pos(name)[:2] - start[:2])
        assert (moved > 0.05) if name == "free" else (moved < 1e-9), (name, moved)


def test_take_it_back_needs_the_start():
    """Pushing the cube back to the middle lane instead of its start succeeds only about as often as the cube
    started there (lanes are 8 cm apart, the success radius 4 cm)."""
    from envs.manipulation.take_it_back import LANES

    env = gym.make("rlmem/TakeItBack-v0")
    wins = []
    for seed in range(30):
        env.reset(seed=seed)
        u = env.unwrapped
        real = u.start.copy()

        def guess(e, real=real):
            e.start = np.array([-0.1, LANES[1], 0.0]) if e.reached else real
            a = e.oracle_action()
            e.start = real
            return a

        info, _, _ = run(env, guess, seed)
        wins.append(info["success"])
        assert u.reached  # the first half of the task does not need memory
    assert 0.15 < np.mean(wins) < 0.6
