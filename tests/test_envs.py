"""Environment tests: gymnasium API, T-Maze gym/torch equivalence, oracle, vector-env semantics."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs
from envs import TMazeEnv, TMazeVec, make_vec, registered_ids
from envs.popgym import POPGYM_CLASSES, PREV_ACTION_FAMILIES, needs_prev_action
from envs.tmaze import DOWN, UP, VARIANTS
from envs.vector import GymVecEnv

POPGYM_IDS = [f"rlmem/{name}-v0" for name in POPGYM_CLASSES]
TMAZE_CASES = [
    {"variant": "elmur"},
    {"variant": "passive", "corridor_length": 4},
    {"variant": "active", "corridor_length": 4},
    {"variant": "elmur", "corridor_length": 3, "prev_action": True, "prev_reward": True},
]


# -- helpers --------------------------------------------------------------------------------------


def to_np(obs: Any) -> Any:
    """Nested tensors -> nested numpy (for comparisons)."""
    if isinstance(obs, dict):
        return {k: to_np(v) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(to_np(v) for v in obs)
    return obs.cpu().numpy()


def row(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {k: row(v, i) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(row(v, i) for v in obs)
    return obs[i]


def assert_obs_equal(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_obs_equal(a[k], b[k])
    elif isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_obs_equal(x, y)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def assert_tensors_equal(a: Any, b: Any) -> None:
    assert_obs_equal(to_np(a), to_np(b))


def run_episode_gym(
    env: TMazeEnv, seed: int | None = None, clue: int | None = None
) -> tuple[float, bool, int]:
    options = None if clue is None else {"clue": clue}
    env.reset(seed=seed, options=options)
    total, steps = 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(env.oracle_action())
        total += reward
        steps += 1
        if terminated or truncated:
            return total, bool(info["success"]), steps


# -- gymnasium API --------------------------------------------------------------------------------


def test_registered_ids() -> None:
    ids = registered_ids()
    assert "rlmem/TMaze-v0" in ids
    assert len(POPGYM_IDS) == 42
    assert set(POPGYM_IDS) <= set(ids)
    assert ids == sorted(ids) and all(i.startswith("rlmem/") for i in ids)
    assert envs.TORCH_VEC_ENVS["rlmem/TMaze-v0"] is TMazeVec and envs.TORCH_VEC_ENVS["rlmem/Rooms-v0"] is envs.RoomsVec
    assert set(envs.TORCH_VEC_ENVS) == {"rlmem/TMaze-v0", "rlmem/Rooms-v0", *POPGYM_IDS}


def _check(env: gym.Env) -> None:
    with warnings.catch_warnings():
        # gym.make adds PassiveEnvChecker/OrderEnforcing, and some POPGym spaces are unbounded.
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        warnings.filterwarnings("ignore", message=".*infinity.*")
        warnings.filterwarnings("ignore", message=".*symmetric and normalized.*")
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("env_id", POPGYM_IDS)
def test_check_env_popgym(env_id: str) -> None:
    env = gym.make(env_id)
    _check(env)
    name = env_id.removeprefix("rlmem/").removesuffix("-v0")
    forced = any(name.startswith(f) for f in PREV_ACTION_FAMILIES)
    assert needs_prev_action(name) == forced
    if forced:  # POPGym requires the previous action for these families
        assert isinstance(env.observation_space, gym.spaces.Dict)
        assert "prev_action" in env.observation_space.spaces
    else:  # native observation space kept
        assert env.observation_space == POPGYM_CLASSES[name]().observation_space


@pytest.mark.parametrize("kwargs", TMAZE_CASES, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_check_env_tmaze(kwargs: dict[str, Any]) -> None:
    _check(gym.make("rlmem/TMaze-v0", **kwargs))


def test_popgym_prev_action_reward_kwargs() -> None:
    env = gym.make("rlmem/RepeatPreviousEasy-v0", prev_action=True, prev_reward=True)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict)
    assert list(space.spaces) == ["obs", "prev_action", "prev_reward"]
    assert space["prev_action"] == gym.spaces.Discrete(5)  # 4 actions + "none"
    obs, _ = env.reset(seed=0)
    assert obs["prev_action"] == 4 and obs["prev_reward"][0] == 0.0
    obs, reward, *_ = env.step(2)
    assert obs["prev_action"] == 2 and obs["prev_reward"][0] == np.float32(reward)
    # forced on for Battleship even when not asked; MultiDiscrete gets nvec + 1 and "none" = nvec
    env = gym.make("rlmem/BattleshipEasy-v0")
    assert env.observation_space["prev_action"] == gym.spaces.MultiDiscrete([9, 9])
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs["prev_action"], [8, 8])
    assert "prev_reward" not in obs


def test_prev_action_box_and_reset() -> None:
    env = gym.make("rlmem/PositionOnlyPendulumEasy-v0", prev_action=True)
    space = env.observation_space["prev_action"]
    assert isinstance(space, gym.spaces.Box) and space.shape == (1,)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs["prev_action"], [0.0])
    obs, *_ = env.step(np.array([1.5], dtype=np.float32))
    np.testing.assert_allclose(obs["prev_action"], [1.5])
    obs, *_ = env.step(np.array([9.0], dtype=np.float32))  # out of bounds: recorded clipped
    np.testing.assert_allclose(obs["prev_action"], [2.0])
    assert obs in env.observation_space
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs["prev_action"], [0.0])


def test_prev_reward_alone_with_box_actions() -> None:
    """Only the reward observed (no previous action) on a Box action space, gym and torch-batched wrappers."""
    from envs.wrappers import VecPrevActionReward

    env = gym.make("rlmem/PositionOnlyPendulumEasy-v0", prev_reward=True)
    assert "prev_action" not in env.observation_space.spaces
    env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([1.0], dtype=np.float32))
    np.testing.assert_allclose(obs["prev_reward"], [reward])
    vec = VecPrevActionReward(envs.make_vec("rlmem/PositionOnlyPendulumEasy-v0", 2), prev_action=False,
                              prev_reward=True)
    vec.reset(seed=0)
    obs, reward, *_ = vec.step(torch.ones(2, 1))
    torch.testing.assert_close(obs["prev_reward"][:, 0], reward)


# -- T-Maze dynamics ------------------------------------------------------------------------------


def test_tmaze_elmur_rules() -> None:
    env = TMazeEnv(corridor_length=3, variant="elmur")
    assert env.observation_space.shape == (4,) and env.episode_length == 5
    obs, _ = env.reset(seed=0, options={"clue": -1})
    assert obs[0] == 0 and obs[1] == -1 and obs[2] == 0 and obs[3] in (-1, 0, 1)
    obs, r, term, trunc, info = env.step(UP)  # wall: stays, clue gone
    assert (obs[0], obs[1], obs[2], r, term, trunc, info) == (0, 0, 0, 0.0, False, False, {})
    for _ in range(3):
        obs, r, term, trunc, _ = env.step(0)
    assert obs[2] == 1 and not (term or trunc)  # at the junction after 4 of the 5 steps
    obs, r, term, trunc, info = env.step(UP)  # wrong arm on the last step: terminated wins
    assert obs[0] == 1 and obs[2] == 1 and term and not trunc and r == 0.0 and info["success"] is False
    env.reset(seed=0, options={"clue": -1})
    for _ in range(4):
        obs, r, term, trunc, _ = env.step(0)  # the 4th hits the wall at the end: flag stays on
    assert obs[2] == 1 and not (term or trunc)
    obs, r, term, trunc, info = env.step(DOWN)
    assert obs[0] == -1 and term and r == 1.0 and info["success"] is True
    # timeout after L + 2 steps
    env.reset(seed=1)
    for _ in range(4):
        obs, r, term, trunc, info = env.step(2)
        assert not (term or trunc)
    obs, r, term, trunc, info = env.step(2)
    assert trunc and not term and r == 0.0 and info["success"] is False


@pytest.mark.parametrize("variant", ["passive", "active"])
def test_tmaze_ni_rules(variant: str) -> None:
    length = 4
    env = TMazeEnv(corridor_length=length, variant=variant)
    assert env.observation_space.shape == (2,)
    assert env.episode_length == (length + 1 if variant == "passive" else length + 3)
    obs, _ = env.reset(seed=0, options={"clue": 1})
    if variant == "passive":
        assert list(obs) == [0, 1]
    else:  # the oracle is one cell to the left of the start; its clue shows on the first visit only
        assert list(obs) == [0, 0]
        obs, r, *_ = env.step(2)
        assert list(obs) == [0, 1] and r == 0.0
        obs, r, *_ = env.step(0)
        obs, r, *_ = env.step(2)
        assert list(obs) == [0, 0] and r == pytest.approx(-1 / length)  # revisit, lagging
        env.reset(seed=0, options={"clue": 1})
    # lagging behind the optimal x costs -1/L per step; standing still from the start lags
    obs, r, term, _, _ = env.step(UP)
    assert not term and r == (pytest.approx(-1 / length) if variant == "passive" else 0.0)
    # goal cells do not end the episode; only the horizon does (terminated, not truncated)
    env.reset(seed=0, options={"clue": 1})
    steps, done = 0, False
    while not done:
        obs, r, term, trunc, info = env.step(env.oracle_action())
        steps += 1
        done = term or trunc
    assert term and not trunc and steps == env.episode_length and r == 1.0 and info["success"]
    assert list(obs) == [1, 1]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("length", [1, 5, 40])
def test_oracle_succeeds_and_blind_policy_does_not(variant: str, length: int) -> None:
    env = TMazeEnv(corridor_length=length, variant=variant)
    for seed in range(6):
        ret, success, steps = run_episode_gym(env, seed=seed)
        assert success and ret == 1.0
        assert steps == {"elmur": length + 1, "passive": length + 1, "active": length + 3}[variant]
    # an agent that ignores the clue (always up) fails exactly the down episodes
    for clue in (1, -1):
        env.reset(seed=0, options={"clue": clue})
        done = False
        while not done:
            action = env.oracle_action()
            action = UP if action == DOWN else action
            _, reward, term, trunc, info = env.step(action)
            done = term or trunc
        assert info["success"] == (clue == 1)

    venv = TMazeVec(8, corridor_length=length, variant=variant)
    venv.reset(seed=3)
    ended = torch.zeros(8, dtype=torch.bool)
    for _ in range(env.episode_length):
        _, _, term, trunc, info = venv.step(venv.oracle_action())
        done = term | trunc
        assert bool((info["success"][done] == 1).all())
        assert bool((info["episode_return"][done] == 1).all())
        ended |= done
    assert bool(ended.all())


def test_tmaze_vec_very_long_corridor() -> None:
    length, n = 100_000, 4
    venv = TMazeVec(n, corridor_length=length, variant="elmur")
    venv.reset(seed=11, options={"clue": torch.tensor([1, -1, 1, -1])})
    for _ in range(length + 1):  # L steps right, then the turn
        obs, reward, term, trunc, info = venv.step(venv.oracle_action())
    assert bool(term.all()) and not bool(trunc.any())
    assert reward.tolist() == [1.0] * n and info["success"].tolist() == [1.0] * n
    assert info["episode_length"].tolist() == [length + 1] * n
    np.testing.assert_array_equal(info["final_obs"][:, 0].numpy(), [1, -1, 1, -1])  # chosen arm
    assert bool((obs[:, 1].abs() == 1).all())  # autoreset: the new episodes show their clue
    # a 10**6 corridor costs no memory: state is a few integers per row
    big = TMazeVec(2, corridor_length=1_000_000, variant="active")
    big.reset(seed=0)
    for _ in range(3):
        obs, *_ = big.step(big.oracle_action())
    assert obs.shape == (2, 2)


def test_clue_and_noise_statistics() -> None:
    env = TMazeEnv(corridor_length=50, variant="elmur")
    clues = [env.reset(seed=s)[0][1] for s in range(1000)]
    assert set(clues) == {-1.0, 1.0} and abs(np.mean(clues)) < 0.1
    # successive episodes after one seed are not all the same clue either
    env.reset(seed=5)
    clues = [env.reset()[0][1] for _ in range(400)]
    assert abs(np.mean(clues)) < 0.15
    noise, flags = [], []
    env.reset(seed=0)
    for _ in range(20):
        env.reset()
        done = False
        while not done:
            obs, _, term, trunc, _ = env.step(env.oracle_action())
            assert obs[1] == 0  # the clue is shown at t = 0 only
            noise.append(obs[3])
            flags.append(obs[2])
            done = term or trunc
    counts = np.unique(noise, return_counts=True)
    assert list(counts[0]) == [-1, 0, 1] and counts[1].min() > 0.28 * len(noise)
    assert sum(flags) == 2 * 20  # junction and goal cell of each episode


def test_unseeded_reset_is_random_and_counts_episodes() -> None:
    env = TMazeEnv(corridor_length=5)
    first = [TMazeEnv(corridor_length=5).reset()[0] for _ in range(30)]
    assert len({tuple(o) for o in first}) > 1  # different keys drawn from np_random
    a, _ = env.reset(seed=9)
    b, _ = env.reset()
    c, _ = env.reset(seed=9)
    assert np.array_equal(a, c) and env._episode == 0
    d, _ = env.reset()
    assert np.array_equal(b, d)


# -- gym env vs torch-batched env -----------------------------------------------------------------


def _reference_rollout(kwargs: dict[str, Any], n: int, seed: int, actions: torch.Tensor) -> list[dict]:
    """Independent gym envs (env i reset with seed + i, then reset() after each episode)."""
    ref = [gym.make("rlmem/TMaze-v0", **kwargs) for _ in range(n)]
    obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(ref)]
    steps = [{"obs": obs}]
    for a in actions:
        out: dict[str, list] = {k: [] for k in ("obs", "reward", "term", "trunc", "final", "success")}
        for i, e in enumerate(ref):
            o, r, term, trunc, info = e.step(int(a[i]))
            out["final"].append(o)
            out["success"].append(float(info["success"]) if term or trunc else np.nan)
            if term or trunc:
                o, _ = e.reset()
            for k, v in (("obs", o), ("reward", r), ("term", term), ("trunc", trunc)):
                out[k].append(v)
        steps.append(out)
    return steps


def _stack(rows: list) -> Any:
    if isinstance(rows[0], dict):
        return {k: _stack([r[k] for r in rows]) for k in rows[0]}
    return np.stack([np.asarray(r) for r in rows])


@pytest.mark.parametrize("kwargs", TMAZE_CASES, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_tmaze_gym_and_torch_trajectories_identical(kwargs: dict[str, Any]) -> None:
    # short corridors so that random actions reach the junction, in time for the Ni variants
    kwargs = {**kwargs, "corridor_length": 2}
    n, seed, steps = 5, 123, 120
    gen = torch.Generator().manual_seed(0)
    # biased to the right so that episodes reach the junction and both arms get chosen
    actions = torch.multinomial(torch.tensor([0.45, 0.2, 0.15, 0.2]), n * steps, True, generator=gen)
    actions = actions.view(steps, n)
    ref = _reference_rollout(kwargs, n, seed, actions)

    torch_env = make_vec("rlmem/TMaze-v0", n, kwargs, backend="torch")
    accel_path = make_vec("rlmem/TMaze-v0", n, kwargs, backend="torch")  # masked autoreset always
    inner = accel_path.env if isinstance(accel_path, envs.VecPrevActionReward) else accel_path
    inner.skip_idle_autoreset = False
    gym_env = make_vec("rlmem/TMaze-v0", n, kwargs, backend="gym")
    assert isinstance(gym_env, GymVecEnv)
    assert gym_env.single_observation_space == torch_env.single_observation_space

    outcomes = {"term": 0, "trunc": 0, "success": 0, "fail": 0}
    for venv in (torch_env, accel_path, gym_env):
        obs, _ = venv.reset(seed=seed)
        assert_obs_equal(to_np(obs), _stack(ref[0]["obs"]))
        for t, a in enumerate(actions):
            obs, reward, term, trunc, info = venv.step(a)
            exp = ref[t + 1]
            assert_obs_equal(to_np(obs), _stack(exp["obs"]))
            np.testing.assert_array_equal(reward.numpy(), np.asarray(exp["reward"], dtype=np.float32))
            np.testing.assert_array_equal(term.numpy(), exp["term"])
            np.testing.assert_array_equal(trunc.numpy(), exp["trunc"])
            assert term.dtype == trunc.dtype == torch.bool
            done = (term | trunc).numpy()
            for i in np.flatnonzero(done):
                assert_obs_equal(row(to_np(info["final_obs"]), i), exp["final"][i])
            np.testing.assert_array_equal(info["success"].numpy(), np.asarray(exp["success"], np.float32))
            if venv is torch_env:
                outcomes["term"] += int(term.sum())
                outcomes["trunc"] += int(trunc.sum())
                outcomes["success"] += int((info["success"] == 1).sum())
                outcomes["fail"] += int((info["success"] == 0).sum())
    # the random actions exercised every kind of episode end
    if kwargs["variant"] == "elmur":
        assert min(outcomes.values()) > 0, outcomes
    else:
        assert outcomes["term"] > 0 and outcomes["success"] > 0 and outcomes["fail"] > 0, outcomes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", VARIANTS)
def test_tmaze_vec_cuda_matches_cpu(variant: str) -> None:
    cpu, cuda = (TMazeVec(6, corridor_length=2, variant=variant, device=d) for d in ("cpu", "cuda"))
    assert not cuda.skip_idle_autoreset
    actions = torch.randint(0, 4, (60, 6), generator=torch.Generator().manual_seed(2))
    assert_tensors_equal(cpu.reset(seed=5)[0], cuda.reset(seed=5)[0])
    for a in actions:
        for x, y in zip(cpu.step(a), cuda.step(a.cuda()), strict=True):
            assert_tensors_equal(x, y)


def test_episode_stats_match() -> None:
    kwargs = {"corridor_length": 2, "variant": "passive"}
    torch_env = make_vec("rlmem/TMaze-v0", 3, kwargs)
    gym_env = make_vec("rlmem/TMaze-v0", 3, kwargs, backend="gym")
    assert isinstance(torch_env, TMazeVec)
    gen = torch.Generator().manual_seed(1)
    actions = torch.randint(0, 4, (30, 3), generator=gen)
    results = []
    for venv in (torch_env, gym_env):
        venv.reset(seed=4)
        results.append([venv.step(a)[4] for a in actions])
    for a, b in zip(*results, strict=True):
        for key in ("episode_return", "episode_length", "success"):
            done = ~torch.isnan(a["success"])
            assert_tensors_equal(a[key][done], b[key][done])


def test_forced_clue() -> None:
    env = TMazeEnv(corridor_length=4)
    for clue in (1, -1, 1, -1):
        obs, _ = env.reset(options={"clue": clue})
        assert obs[1] == clue
    with pytest.raises(ValueError):
        env.reset(options={"clue": 0})

    venv = TMazeVec(4, corridor_length=4)
    clues = torch.tensor([1, -1, -1, 1])
    obs, _ = venv.reset(seed=0, options={"clue": clues})
    assert obs[:, 1].tolist() == clues.tolist()
    obs, _ = venv.reset(options={"clue": -1})
    assert obs[:, 1].tolist() == [-1] * 4
    with pytest.raises(ValueError):
        venv.reset(options={"clue": torch.tensor([1, 0, 1, 1])})
    # balanced evaluation: the oracle wins every forced episode; always-up wins only the up ones
    venv.reset(seed=0, options={"clue": clues})
    for _ in range(5):
        a = venv.oracle_action()
        _, _, term, _, info = venv.step(torch.where(a == DOWN, UP, a))
    assert bool(term.all()) and info["success"].tolist() == [1.0, 0.0, 0.0, 1.0]
    # only the first episode is forced: afterwards row i follows the gym env seeded with 0 + i
    venv.reset(seed=0, options={"clue": clues})
    for _ in range(5):
        obs, *_ = venv.step(venv.oracle_action())
    for i in range(4):
        ref = TMazeEnv(corridor_length=4)
        ref.reset(seed=i)
        assert obs[i, 1] == ref.reset()[0][1]


# -- vector envs over POPGym ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "steps", "ends_by"),
    [
        ("rlmem/RepeatPreviousEasy-v0", 110, "terminated"),
        ("rlmem/MultiarmedBanditEasy-v0", 205, "truncated"),  # Dict obs (forced prev_action)
        ("rlmem/AutoencodeEasy-v0", 110, "terminated"),  # Tuple obs
    ],
)
def test_gym_vec_env_final_obs_and_flags(env_id: str, steps: int, ends_by: str) -> None:
    n, seed = 3, 7
    venv = make_vec(env_id, n, backend="gym")
    assert isinstance(venv, GymVecEnv)
    ref = [gym.make(env_id) for _ in range(n)]
    ref_obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(ref)]
    obs, _ = venv.reset(seed=seed)
    for i in range(n):
        assert_obs_equal(row(to_np(obs), i), ref_obs[i])
    space = venv.single_action_space
    space.seed(0)
    counts = {"terminated": 0, "truncated": 0}
    for _ in range(steps):
        actions = [space.sample() for _ in range(n)]
        obs, reward, term, trunc, info = venv.step(torch.as_tensor(np.stack(actions)))
        for i, e in enumerate(ref):
            o, r, te, tr, _ = e.step(actions[i])
            assert bool(term[i]) == te and bool(trunc[i]) == tr
            assert reward[i].item() == pytest.approx(r)
            if te or tr:
                assert_obs_equal(row(to_np(info["final_obs"]), i), o)
                assert info["episode_length"][i] > 0
                o, _ = e.reset()
            assert_obs_equal(row(to_np(obs), i), o)
        counts["terminated"] += int(term.sum())
        counts["truncated"] += int(trunc.sum())
    other = "truncated" if ends_by == "terminated" else "terminated"
    assert counts[ends_by] >= n and counts[other] == 0, counts
    venv.close()


# -- make_vec -------------------------------------------------------------------------------------


def test_make_vec_backends_and_errors() -> None:
    assert isinstance(make_vec("rlmem/TMaze-v0", 2), TMazeVec)
    assert isinstance(make_vec("rlmem/TMaze-v0", 2, backend="gym"), GymVecEnv)
    assert type(make_vec("rlmem/RepeatFirstEasy-v0", 2)).__name__ == "RepeatFirstEasy"  # envs.popgym_torch
    assert isinstance(make_vec("rlmem/RepeatFirstEasy-v0", 2, backend="gym"), GymVecEnv)
    assert isinstance(make_vec("CartPole-v1", 2), GymVecEnv)
    wrapped = make_vec("rlmem/TMaze-v0", 2, {"prev_action": True}, backend="torch")
    assert isinstance(wrapped, envs.VecPrevActionReward)
    assert isinstance(wrapped.single_observation_space, gym.spaces.Dict)
    async_env = make_vec("rlmem/MultiarmedBanditEasy-v0", 2, backend="gym", asynchronous=True)
    obs, _ = async_env.reset(seed=0)
    assert obs["prev_action"].tolist() == [10, 10]  # "no previous action" of Discrete(10)
    obs, *_ = async_env.step(torch.tensor([3, 4]))
    assert obs["prev_action"].tolist() == [3, 4]
    async_env.close()

    with pytest.raises(gym.error.Error, match=r"rlmem/TMaze-v0"):  # close match suggested
        make_vec("rlmem/Tmaze-v0", 2)
    with pytest.raises(gym.error.Error, match=r"rlmem/RepeatPreviousEasy-v0"):
        make_vec("rlmem/RepeatPreviusEasy-v0", 2)
    with pytest.raises(ValueError, match=r"No torch-batched implementation of 'CartPole-v1'"):
        make_vec("CartPole-v1", 2, backend="torch")
    with pytest.raises(ValueError, match="backend"):
        make_vec("rlmem/TMaze-v0", 2, backend="jax")
    with pytest.raises(TypeError, match="corridor"):
        make_vec("rlmem/TMaze-v0", 2, {"corridor": 5}, backend="torch")
    with pytest.raises(ValueError, match="variant"):
        make_vec("rlmem/TMaze-v0", 2, {"variant": "hard"})
