"""T-Maze memory benchmarks: a Gymnasium env and a torch-batched twin with identical dynamics.

Layout (``J`` is the junction column)::

                                 (J, +1)  goal "up"
    oracle (0,0) -- corridor -- (J, 0)    junction
                                 (J, -1)  goal "down"

The agent walks a 1-D corridor ``y = 0, 0 <= x <= J``; the two goal cells hang off the junction.
The clue ``+1`` (up) or ``-1`` (down) is shown once, at the oracle cell; the agent must remember it
for the whole corridor. Actions ``0 right, 1 up, 2 left, 3 down``; a move into a wall leaves the
agent where it is (same cell map as Ni et al. and RATE).

Variants (``L`` = ``corridor_length``):

* ``"elmur"`` -- the T-Maze of RATE (Cherepanov et al. 2024) and ELMUR (Cherepanov et al. 2025).
  Start on the oracle cell ``x = 0``; junction ``J = L``. Observation ``[y, clue, flag, noise]``:
  ``clue`` is shown in the first observation only (``0`` afterwards); ``flag = 1`` while the agent
  stands in the junction column ``x = J`` (junction or a goal cell); ``noise`` is uniform on
  ``{-1, 0, 1}``, drawn afresh for every observation. Entering a goal cell ends the episode
  (``terminated``); otherwise it ends after ``L + 2`` steps (``truncated``, reward 0). Reward 1 on the
  final step if the chosen arm matches the clue, else 0; no per-step penalty.
  Sources: CognitiveAISystems/RATE ``src/envs/tmaze/tmaze.py`` (``TMazeClassicPassive`` with
  ``ambiguous_position=False``, ``penalty=0``, goal cells terminal, ``corridor_length = timeout - 2``)
  and ``src/validation/val_tmaze.py`` (the evaluation loop used for ELMUR: obs ``[x, y, hint]`` with
  ``x`` dropped, ``flag = 1`` whenever ``x == corridor_length``, noise ``randint(-1, 2)`` per
  observation). The older RATE evaluation (``TMaze_new/.../val_tmaze.py``) raised the flag only on the
  first arrival at the junction, and its data generator on the ``L``-th step; we follow the ELMUR-era
  code, which coincides with both along the oracle path.
* ``"passive"`` / ``"active"`` -- Ni et al. 2023, "When do transformers shine in RL?"
  (twni2016/Memory-RL ``envs/tmaze.py``, ``configs/envs/tmaze_{passive,active}.py``). Observation
  ``[at_junction, value]`` with ``ambiguous_position=True``: on the oracle cell ``[0, clue]`` the first
  time it is visited (``[0, 0]`` on later visits), inside the corridor ``[0, 0]``, in the junction
  column ``[1, y]``. Passive: start on the oracle cell, ``J = L``, horizon ``T = L + 1``. Active: start
  one cell right of the oracle (``x = 1``), ``J = L + 1``, ``T = L + 3``. Goal cells do not end the
  episode; it always ends after exactly ``T`` steps and that end is a true termination
  (``terminated=True``; Ni et al. use ``finite_horizon_terminal``). Reward on the final step: 1 if
  ``y == clue`` else 0; on every other step ``-1/L`` if the agent lags behind the optimal schedule
  (``x < t - o`` with ``o = 1`` for active, ``0`` for passive), else 0.

Randomness is counter-based so that the batched env reproduces the gym env row by row: the clue and
every noise value are integer hashes of ``(seed key, episode index, step)`` computed with the same
int64 arithmetic in numpy and torch (see :mod:`envs.hashrng`). The seed key is the ``seed`` passed to
``reset`` (or one drawn from ``np_random`` if the env was never seeded); the episode index counts the
resets since seeding.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from envs.hashrng import ArrayT
from envs.hashrng import P as _P
from envs.hashrng import draw as _draw
from envs.hashrng import episode_base as _episode_base
from envs.vector import EpisodeStats, VecEnv
from rlmem.syncs import cpu_fast_path

Variant = Literal["elmur", "passive", "active"]
VARIANTS: tuple[str, ...] = ("elmur", "passive", "active")

RIGHT, UP, LEFT, DOWN = 0, 1, 2, 3
_MOVES = ((1, 0), (0, 1), (-1, 0), (0, -1))  # (dx, dy) per action

_CLUE_COUNTER = _P - 1  # counter reserved for the clue; steps never reach it
MAX_CORRIDOR_LENGTH = 2**30


def _clue_of(base: ArrayT) -> ArrayT:
    """+1 (up) or -1 (down)."""
    return ((_draw(base, _CLUE_COUNTER) >> 10) & 1) * 2 - 1


def _noise_of(base: ArrayT, step: ArrayT | int) -> ArrayT:
    """Uniform on {-1, 0, 1} for the observation at ``step`` of the episode."""
    return _draw(base, step) % 3 - 1


class _Geometry:
    """Constants of one variant and corridor length (shared by the gym and the batched env)."""

    def __init__(self, corridor_length: int, variant: str):
        if variant not in VARIANTS:
            raise ValueError(f"Unknown T-Maze variant {variant!r}; expected one of {VARIANTS}.")
        if not 1 <= int(corridor_length) <= MAX_CORRIDOR_LENGTH:
            raise ValueError(f"corridor_length must be in [1, {MAX_CORRIDOR_LENGTH}], got {corridor_length}.")
        length = int(corridor_length)
        self.variant = variant
        self.length = length
        self.elmur = variant == "elmur"
        self.start_x = 1 if variant == "active" else 0  # oracle_length of Ni et al.
        self.junction = length + self.start_x
        self.horizon = {"elmur": length + 2, "passive": length + 1, "active": length + 3}[variant]
        # Ni et al.: penalty = -1/L per step behind the optimal x (their config's default).
        self.penalty = 0.0 if self.elmur else -1.0 / length

    def observation_space(self) -> spaces.Box:
        dim = 4 if self.elmur else 2
        return spaces.Box(low=-1.0, high=1.0, shape=(dim,), dtype=np.float32)


class TMazeEnv(gym.Env[np.ndarray, np.int64]):
    """T-Maze: remember a clue seen at the start, choose the matching arm at the far end.

    ## Description

    A corridor of ``corridor_length`` cells ends in a T-junction with two goal cells, up and down.
    The clue (+1 = up, -1 = down) is visible only at the start (see the module docstring for the
    exact rules of each variant and their sources). The oracle policy goes right until the junction,
    then up iff the clue is +1 (the active variant first steps left onto the oracle cell).

    ## Action Space

    ``Discrete(4)``: 0 right, 1 up, 2 left, 3 down. Moves into walls leave the agent in place.

    ## Observation Space

    * ``"elmur"``: ``Box(-1, 1, (4,), float32)`` = ``[y, clue, at-junction flag, noise]``.
    * ``"passive"``, ``"active"``: ``Box(-1, 1, (2,), float32)`` = ``[at_junction, clue or y]``.

    ## Rewards

    1 on the final step if the agent is in the goal cell matching the clue, else 0. Passive/active
    add ``-1/corridor_length`` on each non-final step where the agent lags behind the optimal x.

    ## Starting State

    ``y = 0``; ``x = 0`` (on the oracle), or ``x = 1`` for ``"active"``. The clue is drawn from the
    counter-based hash of (seed, episode index), or forced by ``reset(options={"clue": +1 | -1})``.

    ## Episode End

    ``"elmur"``: terminated on entering a goal cell; truncated after ``corridor_length + 2`` steps.
    ``"passive"`` / ``"active"``: terminated after exactly ``corridor_length + 1`` / ``+ 3`` steps.
    ``info["success"]`` (bool) is set on the final step.

    ## Arguments

    * ``corridor_length``: cells between the oracle cell and the junction (1 .. 2**30).
    * ``variant``: ``"elmur"`` (RATE/ELMUR), ``"passive"`` or ``"active"`` (Ni et al. 2023).

    ## Version History

    * v0: initial version.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, corridor_length: int = 10, variant: Variant = "elmur"):
        super().__init__()
        self._geo = _Geometry(corridor_length, variant)
        self.corridor_length = self._geo.length
        self.variant = variant
        self.episode_length = self._geo.horizon
        self.observation_space = self._geo.observation_space()
        self.action_space = spaces.Discrete(4)
        self._key: int | None = None  # seed key, reduced mod P
        self._episode = -1
        self._base = np.int64(0)
        self._x = self._y = self._t = 0
        self._clue = 1
        self._visited = False  # the clue has been shown this episode
        self._show = False  # the current observation shows the clue

    # -- gymnasium API --------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._key, self._episode = int(seed) % _P, 0
        elif self._key is None:
            self._key, self._episode = int(self.np_random.integers(_P)), 0
        else:
            self._episode += 1
        self._base = _episode_base(np.int64(self._key), np.int64(self._episode))
        clue = int(_clue_of(self._base))
        if options and options.get("clue") is not None:
            clue = _check_clue(int(options["clue"]))
        self._clue = clue
        self._x, self._y, self._t = self._geo.start_x, 0, 0
        self._visited = self._show = self._x == 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._key is None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        a = int(action)
        if not 0 <= a < 4:
            raise ValueError(f"Invalid action {action!r}; expected 0..3.")
        geo = self._geo
        dx, dy = _MOVES[a]
        if self._y == 0:
            self._x = min(max(self._x + dx, 0), geo.junction)
        if self._x == geo.junction:
            self._y = min(max(self._y + dy, -1), 1)
        self._t += 1
        self._show = self._x == 0 and not self._visited
        self._visited = self._visited or self._x == 0

        correct = self._y == self._clue
        if geo.elmur:
            terminated = self._y != 0
            truncated = self._t >= geo.horizon and not terminated
            reward = float(correct)
        else:
            terminated, truncated = self._t >= geo.horizon, False
            lagging = self._x < self._t - geo.start_x
            reward = float(correct) if terminated else (geo.penalty if lagging else 0.0)
        info: dict[str, Any] = {"success": bool(correct)} if terminated or truncated else {}
        return self._obs(), reward, terminated, truncated, info

    # -- helpers ----------------------------------------------------------------------------------

    def _obs(self) -> np.ndarray:
        geo = self._geo
        clue = self._clue if self._show else 0
        at_junction = float(self._x == geo.junction)
        if geo.elmur:
            noise = float(_noise_of(self._base, np.int64(self._t)))
            return np.array([self._y, clue, at_junction, noise], dtype=np.float32)
        return np.array([at_junction, self._y + clue], dtype=np.float32)

    def oracle_action(self) -> int:
        """The optimal action from the privileged state (position, clue, whether the clue was seen)."""
        if not self._visited:
            return LEFT
        if self._x < self._geo.junction:
            return RIGHT
        return UP if self._clue > 0 else DOWN


def _check_clue(clue: int) -> int:
    if clue not in (-1, 1):
        raise ValueError(f"clue must be +1 (up) or -1 (down), got {clue}.")
    return clue


class TMazeVec(VecEnv):
    """``num_envs`` T-Mazes stepped as int64 tensors on ``device`` (no loop over rows).

    Row ``i`` after ``reset(seed=s)`` reproduces ``TMazeEnv(...).reset(seed=s + i)`` exactly, including
    across same-step autoresets (each autoreset is ``reset()`` of the gym env: next episode index).
    ``reset(seed=None)`` starts the next episode of every row (or seeds randomly the first time).
    ``reset(options={"clue": Tensor[N] | int})`` forces the clue of the first episode of each row.

    State is a handful of integers per row, so corridors of 10**6 cells cost nothing extra.
    """

    def __init__(
        self,
        num_envs: int,
        corridor_length: int = 10,
        variant: Variant = "elmur",
        device: torch.device | str = "cpu",
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
        self._geo = _Geometry(corridor_length, variant)
        self.num_envs = int(num_envs)
        self.corridor_length = self._geo.length
        self.variant = variant
        self.episode_length = self._geo.horizon
        self.device = torch.device(device)
        self.single_observation_space = self._geo.observation_space()
        self.single_action_space = spaces.Discrete(4)
        self.stats = EpisodeStats(self.num_envs, self.device)
        n, dev, i64 = self.num_envs, self.device, torch.int64
        self._moves = torch.tensor(_MOVES, dtype=i64, device=dev)  # (4, 2)
        self._key: Tensor | None = None
        self._episode = torch.zeros(n, dtype=i64, device=dev)
        self._base = torch.zeros(n, dtype=i64, device=dev)
        self._x = torch.zeros(n, dtype=i64, device=dev)
        self._y = torch.zeros(n, dtype=i64, device=dev)
        self._t = torch.zeros(n, dtype=i64, device=dev)
        self._clue = torch.ones(n, dtype=i64, device=dev)
        self._visited = torch.zeros(n, dtype=torch.bool, device=dev)
        self._show = torch.zeros(n, dtype=torch.bool, device=dev)
        self._no_clue = torch.zeros(n, dtype=torch.bool, device=dev)  # never modified in place
        # On CPU, checking ``done.any()`` is free and skips the autoreset ops on most steps; on an
        # accelerator it would synchronise every step, so there the masked autoreset always runs
        # (a no-op on rows that did not end). ``rlmem.syncs.cpu_fast_path`` also turns it off while syncs are
        # counted.
        self.skip_idle_autoreset = self.device.type == "cpu"

    # -- VecEnv API -------------------------------------------------------------------------------

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        n, dev = self.num_envs, self.device
        if seed is not None or self._key is None:
            if seed is None:
                seed = int(np.random.default_rng().integers(_P))
            rows = torch.arange(n, dtype=torch.int64, device=dev)
            self._key = (rows + int(seed) % _P) % _P  # == (seed + i) % P, as TMazeEnv computes it
            self._episode.zero_()
        else:
            self._episode += 1
        all_rows = torch.ones(n, dtype=torch.bool, device=dev)
        self._begin_episodes(all_rows)
        if options and options.get("clue") is not None:
            clue = torch.as_tensor(options["clue"], dtype=torch.int64, device=dev).expand(n).clone()
            if not bool(((clue == 1) | (clue == -1)).all()):
                raise ValueError("options['clue'] must hold +1 (up) or -1 (down) per row.")
            self._clue = clue
        self.stats.reset()
        return self._obs(), {}

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        # Written for few tensor ops: on small batches their dispatch cost is the whole step time.
        if self._key is None:
            raise RuntimeError("Call reset() before step().")
        geo = self._geo
        if not (isinstance(action, Tensor) and action.dtype == torch.int64 and action.device == self.device):
            action = torch.as_tensor(action, device=self.device).long()
        dx, dy = self._moves[action.view(self.num_envs)].unbind(1)  # (N,), (N,)
        self._t += 1
        if geo.elmur:
            # Goal cells end elmur episodes, so y == 0 before every step: no up/down walls to check.
            x = (self._x + dx).clamp_(0, geo.junction)
            at_junction = x == geo.junction
            y = dy * at_junction
            terminated = y != 0
            truncated = (self._t >= geo.horizon) > terminated  # timeout and not terminated
            reward = (y == self._clue).float()  # y == clue only in a goal cell, i.e. on the final step
            correct = reward
            self._show = self._no_clue  # the clue is shown by reset only
        else:
            x = (self._x + dx * (self._y == 0)).clamp_(0, geo.junction)
            at_junction = x == geo.junction
            y = (self._y + dy * at_junction).clamp_(-1, 1)
            terminated = self._t >= geo.horizon
            truncated = torch.zeros_like(terminated)
            correct = (y == self._clue).float()
            penalty = torch.where(x < self._t - geo.start_x, geo.penalty, 0.0)
            reward = torch.where(terminated, correct, penalty)
            if geo.variant == "active":
                at_oracle = x == 0
                self._show = at_oracle & ~self._visited
                self._visited = self._visited | at_oracle
            else:  # the clue was shown by reset and is never shown again
                self._show = self._no_clue
        self._x, self._y = x, y
        done = terminated | truncated
        ep_ret, ep_len = self.stats.update(reward, done)
        success = torch.where(done, correct, torch.nan)

        final_obs = self._obs(at_junction)
        obs = final_obs
        if not (self.skip_idle_autoreset and cpu_fast_path(self.device)) or bool(done.any()):
            self._episode += done
            self._begin_episodes(done)
            obs = self._obs()
        info = {
            "final_obs": final_obs,
            "episode_return": ep_ret,
            "episode_length": ep_len,
            "success": success,
        }
        return obs, reward, terminated, truncated, info

    # -- helpers ----------------------------------------------------------------------------------

    def _begin_episodes(self, rows: Tensor) -> None:
        """Reset the state of ``rows`` (bool ``[N]``) to the start of their current episode index."""
        assert self._key is not None
        geo = self._geo
        base = _episode_base(self._key, self._episode)
        self._base = torch.where(rows, base, self._base)
        self._clue = torch.where(rows, _clue_of(base), self._clue)
        self._x = self._x.masked_fill(rows, geo.start_x)
        self._y = self._y.masked_fill(rows, 0)
        self._t = self._t.masked_fill(rows, 0)
        starts_on_oracle = geo.start_x == 0
        self._visited = self._visited.masked_fill(rows, starts_on_oracle)
        self._show = self._show.masked_fill(rows, starts_on_oracle)

    def _obs(self, at_junction: Tensor | None = None) -> Tensor:
        if at_junction is None:
            at_junction = self._x == self._geo.junction
        if self._geo.elmur:
            noise = _noise_of(self._base, self._t)
            clue = self._clue * self._show
            return torch.stack((self._y, clue, at_junction, noise), dim=1).float()  # (N, 4)
        return torch.stack((at_junction, self._y + self._clue * self._show), dim=1).float()  # (N, 2)

    def balanced_reset_options(self) -> dict[str, Tensor]:
        """Reset options giving row ``i`` clue +1 (up) if ``i`` is even, else -1: with one episode per
        row, an evaluation is exactly balanced (half up, half down), as ELMUR/RATE evaluate."""
        clue = 1 - 2 * (torch.arange(self.num_envs, device=self.device) % 2)
        return {"clue": clue}

    def oracle_action(self) -> Tensor:
        """Optimal action per row from the privileged state, int64 ``[N]``."""
        turn = 2 - self._clue  # UP (1) for clue +1, DOWN (3) for clue -1
        go = torch.where(self._x < self._geo.junction, RIGHT, turn)
        if self._geo.variant != "active":  # the clue is seen at reset
            return go
        return torch.where(self._visited, go, LEFT)
