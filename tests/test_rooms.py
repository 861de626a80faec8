"""Rooms-v0: gymnasium API, gym/torch equivalence, the task's rules seen from the agent, the oracle."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from envs import RoomsEnv, RoomsVec, make_vec
from envs.vector import GymVecEnv

SMALL = {"rows": 2, "cols": 3, "colours": 3, "visits": 5, "dwell": 2}


def test_check_env() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        check_env(gym.make("rlmem/Rooms-v0", **SMALL), skip_render_check=True)
    check_env(RoomsEnv(**SMALL), skip_render_check=True)


def test_gym_and_torch_trajectories_identical() -> None:
    n, seed, steps = 4, 7, 40  # several episodes per row (11 steps each), with same-step autoresets
    actions = torch.randint(0, SMALL["colours"], (steps, n), generator=torch.Generator().manual_seed(0))
    torch_env = make_vec("rlmem/Rooms-v0", n, SMALL, backend="torch")
    gym_env = make_vec("rlmem/Rooms-v0", n, SMALL, backend="gym")
    assert isinstance(torch_env, RoomsVec) and isinstance(gym_env, GymVecEnv)
    assert gym_env.single_observation_space == torch_env.single_observation_space
    traj = []
    for venv in (torch_env, gym_env):
        obs, _ = venv.reset(seed=seed)
        rec = [obs]
        for a in actions:
            obs, reward, term, trunc, info = venv.step(a)
            rec.append((obs, reward, term, trunc, info["success"], info["final_obs"]))
        traj.append(rec)
    ref, other = traj
    for k in ("place", "view"):
        torch.testing.assert_close(ref[0][k], other[0][k])
    ends = 0
    for (o1, r1, t1, u1, s1, f1), (o2, r2, t2, u2, s2, f2) in zip(ref[1:], other[1:], strict=True):
        for k in ("place", "view"):
            torch.testing.assert_close(o1[k], o2[k])
            torch.testing.assert_close(f1[k][t1], f2[k][t1])
        assert torch.equal(r1, r2) and torch.equal(t1, t2) and torch.equal(u1, u2)
        torch.testing.assert_close(s1, s2, equal_nan=True)
        ends += int(t1.sum())
    assert ends >= n * 3


def play(venv: RoomsVec, policy: str, episodes_per_row: int = 3) -> tuple[float, int]:
    """Run ``policy`` ("oracle" or "memory": answer with the colour seen in the queried room, remembered from
    the observations alone) and check the rules from the agent's side. Returns the success rate and episodes."""
    n, rooms, colours = venv.num_envs, venv.rooms, venv.colours
    obs, info = venv.reset(seed=3)
    seen = torch.full((n, rooms), -1)  # colour seen in each room this episode
    wins = eps = 0
    while eps < n * episodes_per_row:
        view, place = obs["view"], obs["place"]
        asking = view[:, -1] > 0
        assert torch.equal(asking, place == rooms)  # the query is in no room
        colour = view[:, :colours].argmax(1)
        ar = torch.arange(n)
        seen[ar[~asking], place[~asking]] = colour[~asking]
        query = view[:, colours:colours + rooms].argmax(1)
        if policy == "oracle":
            action = venv.oracle_action()
        else:
            action = seen[ar, query].clamp(min=0)
        # the queried room was visited, and the oracle's answer is the colour the agent saw there
        assert bool((seen[ar, query][asking] >= 0).all())
        assert torch.equal(venv.oracle_action()[asking], seen[ar, query][asking])
        obs, reward, term, trunc, info = venv.step(action)
        assert torch.equal(info["place"], obs["place"]) and not trunc.any()
        # moves go to neighbouring rooms only
        prev, cur = place, obs["place"]
        walk = (prev < rooms) & (cur < rooms) & ~term
        dr = (prev // venv.cols - cur // venv.cols).abs() + (prev % venv.cols - cur % venv.cols).abs()
        assert bool((dr[walk] <= 1).all())
        wins += int(reward[term].sum())
        eps += int(term.sum())
        seen[term] = -1
    return wins / eps, eps


def test_oracle_succeeds_and_remembering_the_views_is_enough() -> None:
    venv = RoomsVec(16, **SMALL)
    assert play(venv, "oracle")[0] == 1.0
    assert play(venv, "memory")[0] == 1.0


def test_memoryless_answer_is_at_chance() -> None:
    # the query observation alone says nothing about the colour: the best fixed answer wins about 1/colours
    venv = RoomsVec(512, **SMALL)
    venv.reset(seed=0)
    answers = []
    for _ in range(SMALL["visits"] * SMALL["dwell"] + 1):
        answers.append(venv.oracle_action())
        venv.step(torch.zeros(512, dtype=torch.long))
    final = answers[-1]
    freq = torch.bincount(final, minlength=SMALL["colours"]).float() / 512
    assert float(freq.max()) < 1 / SMALL["colours"] + 0.08, freq


def test_capacity_variant_queries_rooms_beyond_recent_visits() -> None:
    # conf/env/rooms_capacity.yaml: the queried room is often not among the last 4 visits (a 16-step FIFO)
    venv = RoomsVec(256, rows=3, cols=3, colours=4, visits=16, dwell=4)
    obs, _ = venv.reset(seed=0)
    places = [obs["place"]]
    for _ in range(64):
        obs, *_ = venv.step(torch.zeros(256, dtype=torch.long))
        places.append(obs["place"])
    query = obs["view"][:, 4:13].argmax(1)
    recent = torch.stack(places[-17:-1], 1)  # the last 16 exploration steps
    forgotten = ~(recent == query[:, None]).any(1)
    assert 0.3 < float(forgotten.float().mean()) < 0.9


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2 rooms"):
        RoomsVec(1, rows=1, cols=1)
    with pytest.raises(ValueError, match="colours"):
        RoomsVec(1, colours=1)
    env = RoomsEnv()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="Invalid action"):
        env.step(7)
    assert np.isfinite(env.reset()[0]["view"]).all()


def test_wrapper_kwargs_on_both_backends():
    kw = {**SMALL, "prev_action": True, "prev_reward": True, "rtg_target": 1.0}
    env = gym.make("rlmem/Rooms-v0", **kw)
    assert list(env.observation_space.spaces) == ["obs", "rtg"]
    assert list(env.observation_space["obs"].spaces) == ["obs", "prev_action", "prev_reward"]
    gym_vec, torch_vec = (make_vec("rlmem/Rooms-v0", 2, kw, backend=b) for b in ("gym", "torch"))
    assert gym_vec.single_observation_space == torch_vec.single_observation_space == env.observation_space
