"""The torch POPGym envs against popgym 1.0.7, the reference.

* Exact parity: the hidden quantities of an episode (deck, board, mines, arms, physical state) are drawn here and
  injected into both implementations -- into the torch env through ``reset(options=...)``, into popgym by replacing
  its ``np_random`` with a replay of the same draws -- then both take the same actions and must give the same
  observations, rewards, terminations and truncations, step by step until every row's episode has ended.
* Where popgym draws during the episode (observation noise, bandit payouts) and for our own samplers (ship
  placement), the return and length distributions of >= 2,000 episodes of a random and of a scripted policy must
  match: means within 3 standard errors, two-sample KS not rejected at 1%.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import popgym.envs as popgym_envs
import pytest
import torch
from scipy.stats import ks_2samp

import envs
from envs.popgym_torch import LEVELS, TORCH_POPGYM, PopgymVec, family_of
from envs.popgym_torch.bandit import MultiarmedBandit
from envs.popgym_torch.base import at
from envs.popgym_torch.boards import Battleship, MineSweeper
from envs.popgym_torch.cards import Autoencode, CountRecall, HigherLower, RepeatFirst, RepeatPrevious
from envs.popgym_torch.concentration import Concentration
from envs.popgym_torch.control import CartPole, Pendulum
from rlmem.syncs import SyncCounter

POPGYM = {cls.__name__: cls for cls in popgym_envs.ALL}
NOISY = [n for n in LEVELS if n.startswith("Noisy")]
EXACT = [n for n in LEVELS if n not in NOISY]
ROWS = 4


class Replay:
    """Stands in for a popgym env's ``np_random``: each method returns its scripted draws in order, then falls
    back to a real generator."""

    def __init__(self, seed: int = 0, **script: list[Any]):
        self._script = {k: list(v) for k, v in script.items()}
        self._rng = np.random.default_rng(seed)

    def shuffle(self, x: np.ndarray) -> None:
        if self._script.get("shuffle"):
            x[:] = self._script["shuffle"].pop(0)
        else:
            self._rng.shuffle(x)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        queue, fallback = self._script.get(name), getattr(self._rng, name)

        def draw(*args: Any, **kwargs: Any) -> Any:
            return queue.pop(0) if queue else fallback(*args, **kwargs)

        return draw


# -- hidden quantities, injected into both ---------------------------------------------------------------------


def _injection(env: PopgymVec, rng: np.random.Generator) -> tuple[dict[str, Any], list[Replay]]:
    """Options for the torch env's reset and, per row, popgym's replayed draws."""
    n = env.num_envs
    if isinstance(env, Concentration):  # a layout: popgym's deck.idx
        layout = np.stack([rng.permutation(env.num_cards) for _ in range(n)])
        return {"deck": layout}, [Replay(shuffle=[row]) for row in layout]
    if isinstance(env, CountRecall):
        values, queries = (np.stack([rng.permutation(env.num_cards) for _ in range(n)]) for _ in range(2))
        return {"deck": values, "query_deck": queries}, [
            Replay(shuffle=[v[::-1], q[::-1]]) for v, q in zip(values, queries, strict=True)]
    if isinstance(env, RepeatFirst | RepeatPrevious | Autoencode | HigherLower):  # dealing orders
        deck = np.stack([rng.permutation(env.num_cards) for _ in range(n)])
        return {"deck": deck}, [Replay(shuffle=[row[::-1]]) for row in deck]
    if isinstance(env, Battleship):  # placements drawn by the torch env itself, injected back
        env.reset(seed=int(rng.integers(1 << 30)))
        ships = env.state["ships"].numpy().copy()
        # popgym draws a start cell, then (axis, sign): the top-left cell with sign + gives the same ship
        return {"ships": ships}, [
            Replay(integers=[x for a, r, c in row for x in (np.array([r, c]), np.array([a, 0]))]) for row in ships]
    if isinstance(env, MineSweeper):
        mines = np.stack([rng.permutation(env.num_cells)[: env.num_mines] for _ in range(n)])
        return {"mines": mines}, [Replay(choice=[row]) for row in mines]
    if isinstance(env, MultiarmedBandit):  # arms that always or never pay: payouts need no shared draws
        arms = rng.integers(0, 2, size=(n, env.num_bandits)).astype(np.float32)
        return {"bandits": arms}, [Replay(random=[row]) for row in arms]
    if isinstance(env, CartPole):
        state = rng.uniform(-0.05, 0.05, size=(n, 4))
        return {"state": state}, [Replay(uniform=[row]) for row in state]
    if isinstance(env, Pendulum):
        state = rng.uniform(-1, 1, size=(n, 2)) * np.array([np.pi, 1.0])
        return {"state": state}, [Replay(uniform=[row]) for row in state]
    raise AssertionError(f"no injection for {type(env).__name__}")


# -- actions: random rows and scripted rows (that reach terminations popgym's rules define) -----------------------


def _actions(env: PopgymVec, t: int, rng: np.random.Generator, options: dict[str, Any]) -> np.ndarray:
    n, space = env.num_envs, env.single_action_space
    acts = np.stack([space.sample() for _ in range(n)])
    s = env.state
    if isinstance(env, Battleship):  # rows 0, 2: fire at every cell in order (sinks every ship)
        acts[0::2] = (t // env.board_size, t % env.board_size)
    elif isinstance(env, MineSweeper):  # row 0 clicks only free cells (clears the board), row 2 every cell in order
        free = [c for c in range(env.num_cells) if c not in set(options["mines"][0])]
        cell = free[min(t, len(free) - 1)]
        acts[0] = divmod(cell, env.dims[1])
        acts[2] = divmod(t % env.num_cells, env.dims[1])
    elif isinstance(env, Concentration):  # row 0 flips pairs in value order (all face up), row 1 one card forever
        order = np.argsort(s["values"][0].numpy(), kind="stable")
        acts[0] = order[t % env.num_cards]
        acts[1] = 0
    elif isinstance(env, CountRecall):  # rows 0, 2 answer right
        right = at(s["counts"], at(s["queries"], s["pos"] - 1)).numpy()
        acts[0::2] = right[0::2]
    elif isinstance(env, Autoencode | RepeatFirst):  # row 0 answers right when scored
        acts[0] = (at(s["suits"], s["pos"] - 1) if isinstance(env, Autoencode) else s["first"])[0].item()
    elif isinstance(env, CartPole):  # row 0 balances the pole (reaches the time limit)
        x = s["x"][0].numpy()
        acts[0] = int(x[2] + 0.3 * x[3] + 0.01 * x[0] + 0.1 * x[1] > 0)
    elif isinstance(env, Pendulum):  # torques beyond the bounds are clipped by both
        acts = rng.uniform(-3, 3, size=(n, 1)).astype(np.float32)
    return acts


def _row(obs: Any, i: int) -> Any:
    if isinstance(obs, tuple):
        return tuple(_row(o, i) for o in obs)
    return obs[i].numpy()


def _same_obs(ours: Any, ref: Any, box: bool) -> bool:
    if isinstance(ours, tuple):
        return all(_same_obs(o, r, box) for o, r in zip(ours, ref, strict=True))
    ref = np.asarray(ref)
    return bool(np.allclose(ours, ref, atol=1e-5, rtol=0)) if box else bool(np.array_equal(ours, ref))


@pytest.mark.parametrize("accelerator_path", [False, True], ids=["cpu-path", "accelerator-path"])
@pytest.mark.parametrize("name", EXACT)
def test_steps_like_popgym_from_the_same_hidden_state(name: str, accelerator_path: bool) -> None:
    rng = np.random.default_rng(0)
    env = TORCH_POPGYM[name](ROWS)
    env.skip_idle_autoreset = not accelerator_path
    env.single_action_space.seed(1)
    options, replays = _injection(env, rng)
    obs, _ = env.reset(seed=0, options=options)
    refs = [POPGYM[name]() for _ in range(ROWS)]
    box = isinstance(env.single_observation_space, gym.spaces.Box)
    returns = np.zeros(ROWS)
    for i, (ref, replay) in enumerate(zip(refs, replays, strict=True)):
        ref.np_random = replay  # type: ignore[assignment]
        ref_obs, _ = ref.reset()
        assert _same_obs(_row(obs, i), ref_obs, box), (i, _row(obs, i), ref_obs)
    alive = np.ones(ROWS, dtype=bool)
    for t in range(env.max_episode_length + 1):
        acts = _actions(env, t, rng, options)
        obs, reward, term, trunc, info = env.step(torch.as_tensor(acts))
        for i in np.flatnonzero(alive):
            a = acts[i] if acts.ndim > 1 else int(acts[i])
            ref_obs, ref_r, ref_term, ref_trunc, _ = refs[i].step(a)
            returns[i] += ref_r
            where = f"{name} row {i} step {t + 1}"
            assert (bool(term[i]), bool(trunc[i])) == (ref_term, ref_trunc), where
            assert reward[i].item() == pytest.approx(ref_r, abs=1e-6), where
            last = info["final_obs"] if ref_term or ref_trunc else obs
            assert _same_obs(_row(last, i), ref_obs, box), (where, _row(last, i), ref_obs)
            if ref_term or ref_trunc:
                alive[i] = False
                assert info["episode_length"][i].item() == t + 1, where
                assert info["episode_return"][i].item() == pytest.approx(returns[i], abs=1e-5), where
        if not alive.any():
            break
    assert not alive.any(), f"{name}: an episode outlived popgym's maximum length"


def test_each_scripted_row_reaches_what_it_was_written_for() -> None:
    """The scripted rows of the parity test end the way they were meant to (so the parity test covers sunk fleets,
    cleared boards, a finished Concentration and a balanced pole reaching the time limit)."""
    rng = np.random.default_rng(0)
    for name, want in [("BattleshipEasy", "term"), ("MineSweeperEasy", "term"), ("ConcentrationEasy", "term"),
                       ("PositionOnlyCartPoleEasy", "trunc")]:
        env = TORCH_POPGYM[name](ROWS)
        options, _ = _injection(env, rng)
        env.reset(seed=0, options=options)
        for t in range(env.max_episode_length):
            _, reward, term, trunc, _ = env.step(torch.as_tensor(_actions(env, t, rng, options)))
            if term[0] or trunc[0]:
                break
        assert bool((term if want == "term" else trunc)[0]), name
        if name == "MineSweeperEasy":
            assert reward[0].item() > 0  # cleared, not blown up


# -- distributions where draws cannot be shared -----------------------------------------------------------------

EPISODES = 2000


def _policy(name: str, kind: str) -> Callable[[np.ndarray, Any], np.ndarray]:
    """A policy over a batch of observations (``hidden``: privileged per-row quantities), random or scripted."""
    rng = np.random.default_rng(7)
    if "CartPole" in name:
        if kind == "random":
            return lambda obs, hidden: rng.integers(0, 2, size=len(obs))
        return lambda obs, hidden: (obs[:, 1] > 0).astype(np.int64)  # push toward the (noisy) lean
    if "Pendulum" in name:
        if kind == "random":
            return lambda obs, hidden: rng.uniform(-2, 2, size=(len(obs), 1)).astype(np.float32)
        return lambda obs, hidden: (-2.0 * obs[:, 1:2]).astype(np.float32)
    if "Bandit" in name:
        if kind == "random":
            return lambda obs, hidden: rng.integers(0, 10, size=len(obs))
        return lambda obs, hidden: hidden.argmax(axis=1)  # the best arm
    if "Battleship" in name:
        if kind == "random":
            return lambda obs, hidden: rng.integers(0, 8, size=(len(obs), 2))
        return lambda obs, hidden: np.stack([hidden // 8, hidden % 8], axis=1)  # sweep in order (hidden: t)
    raise AssertionError(name)


def _torch_episodes(name: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    env = TORCH_POPGYM[name](EPISODES)
    policy = _policy(name, kind)
    obs, _ = env.reset(seed=3)
    rets, lens = np.full(EPISODES, np.nan), np.zeros(EPISODES)
    for t in range(env.max_episode_length):
        hidden = env.state["bandits"].numpy() if "Bandit" in name else np.full(EPISODES, t)
        obs, _, term, trunc, info = env.step(torch.as_tensor(policy(obs.numpy(), hidden)))
        first = (term | trunc).numpy() & np.isnan(rets)
        rets[first], lens[first] = info["episode_return"].numpy()[first], info["episode_length"].numpy()[first]
    assert not np.isnan(rets).any()
    return rets, lens


def _popgym_episodes(name: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    env = POPGYM[name]()
    policy = _policy(name, kind)
    rets, lens = np.zeros(EPISODES), np.zeros(EPISODES)
    for ep in range(EPISODES):
        obs, _ = env.reset(seed=10_000 + ep)
        for t in range(10_000):
            hidden = env.bandits[None] if "Bandit" in name else np.array([t])
            act = policy(np.asarray(obs, dtype=np.float32).reshape(1, -1), hidden)[0]
            obs, r, term, trunc, _ = env.step(act if act.ndim else int(act))
            rets[ep] += r
            if term or trunc:
                lens[ep] = t + 1
                break
    return rets, lens


@pytest.mark.parametrize("kind", ["random", "scripted"])
@pytest.mark.parametrize("name", [
    "NoisyPositionOnlyCartPoleEasy", "MultiarmedBanditEasy", "BattleshipEasy",
    pytest.param("NoisyPositionOnlyPendulumEasy", marks=pytest.mark.slow),  # ~1 min: 800k popgym steps
])
def test_episode_distributions_match_popgym(name: str, kind: str) -> None:
    ours, theirs = _torch_episodes(name, kind), _popgym_episodes(name, kind)
    for what, a, b in zip(("return", "length"), ours, theirs, strict=True):
        a, b = a.round(5), b.round(5)  # float32 vs float64 sums: equal returns must tie for KS
        se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        assert abs(a.mean() - b.mean()) <= 3 * se + 1e-9, (name, kind, what, a.mean(), b.mean(), se)
        if a.std() > 0 or b.std() > 0:
            assert ks_2samp(a, b).pvalue > 0.01, (name, kind, what, ks_2samp(a, b))


# -- the vector-env interface ----------------------------------------------------------------------------------


def test_every_popgym_id_has_the_gym_backends_spaces() -> None:
    for name in LEVELS:
        env_id = f"rlmem/{name}-v0"
        ours, theirs = envs.make_vec(env_id, 2, backend="torch"), envs.make_vec(env_id, 1, backend="gym")
        assert ours.single_observation_space == theirs.single_observation_space, name
        assert ours.single_action_space == theirs.single_action_space, name
        assert type(envs.make_vec(env_id, 2)).__name__ != "GymVecEnv", f"auto should pick torch for {name}"
        theirs.close()


@pytest.mark.parametrize("name", list(LEVELS))
def test_stepping_makes_no_host_sync(name: str) -> None:
    env = envs.make_vec(f"rlmem/{name}-v0", 8, backend="torch")
    env.reset(seed=0)
    space = env.single_action_space
    acts = [torch.as_tensor(np.stack([space.sample() for _ in range(8)])) for _ in range(3)]
    with SyncCounter() as syncs:
        for a in acts:
            env.step(a)
    assert syncs.count == 0, (name, syncs.calls)


def test_observations_stay_valid_across_autoresets() -> None:
    """Random play past several episode ends: every observation lies in the space, returned observations are
    never changed by later steps, and episode lengths respect the maximum."""
    for name in [n for n in LEVELS if n.endswith("Easy")]:
        env = TORCH_POPGYM[name](16)
        space = env.single_observation_space
        obs, _ = env.reset(seed=0)
        env.single_action_space.seed(0)
        kept = [(obs, _clone(obs))]
        for _ in range(3 * env.max_episode_length if env.max_episode_length < 300 else 400):
            a = torch.as_tensor(np.stack([env.single_action_space.sample() for _ in range(16)]))
            obs, _, term, trunc, info = env.step(a)
            for i in range(16):
                assert space.contains(_np_row(obs, i)), (name, _np_row(obs, i))
            done = term | trunc
            assert (info["episode_length"][done] <= env.max_episode_length).all(), name
            kept.append((obs, _clone(obs)))
        for returned, copy in kept:
            assert _equal(returned, copy), f"{name}: a returned observation changed later"


def _clone(obs: Any) -> Any:
    return tuple(_clone(o) for o in obs) if isinstance(obs, tuple) else obs.clone()


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(torch.equal(a, b))


def _np_row(obs: Any, i: int) -> Any:
    if isinstance(obs, tuple):
        return tuple(_np_row(o, i) for o in obs)
    row = obs[i].numpy()
    return row.item() if row.ndim == 0 else row


def test_previous_action_where_popgym_needs_it() -> None:
    for name in LEVELS:
        obs_space = envs.make_vec(f"rlmem/{name}-v0", 1, backend="torch").single_observation_space
        needs = family_of(name).obs_requires_prev_action
        assert needs == POPGYM[name].obs_requires_prev_action, name
        assert isinstance(obs_space, gym.spaces.Dict) == needs, name


def test_bad_injections_fail_clearly() -> None:
    env = TORCH_POPGYM["RepeatFirstEasy"](2)
    with pytest.raises(ValueError, match="unknown options"):
        env.reset(options={"cards": 1})
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"deck": np.zeros((2, 10))})
    with pytest.raises(ValueError, match="permutation"):
        env.reset(options={"deck": np.zeros((2, 52))})
    with pytest.raises(gym.error.ResetNeeded):
        TORCH_POPGYM["RepeatFirstEasy"](2).step(torch.zeros(2))


def test_seeded_resets_repeat() -> None:
    a, b = TORCH_POPGYM["BattleshipEasy"](8), TORCH_POPGYM["BattleshipEasy"](8)
    a.reset(seed=5)
    b.reset(seed=5)
    assert torch.equal(a.state["board"], b.state["board"])
    b.reset(seed=6)
    assert not torch.equal(a.state["board"], b.state["board"])


def test_level_classes_are_importable_and_pickle() -> None:
    import pickle

    from envs.popgym_torch import RepeatPreviousEasy  # type: ignore[attr-defined]

    env = RepeatPreviousEasy(3)
    env.reset(seed=0)
    copy = pickle.loads(pickle.dumps(env))
    a = torch.tensor([0, 1, 2])
    assert _equal(env.step(a)[0], copy.step(a)[0])  # same state and generator: the same next observation
