"""The shared part of the torch POPGym envs: seeding, same-step autoreset, episode statistics, action casts.

A family implements two hooks on batched tensors (no loop over rows, no host sync):

* ``_fresh(n, options)`` draws ``n`` new episodes: their state tensors (first dim ``n``) and first observations;
* ``_step(action)`` advances every row from ``self.state`` and returns ``obs, reward, terminated, truncated``.

Rows that end are restarted in the same step (``envs.vector``'s convention). On CPU the restart draws episodes for
the rows that ended only, on steps where one did (``rlmem.syncs.cpu_fast_path``); on an accelerator it draws for
every row and selects with ``torch.where`` (what JAX envs do), so a step never waits on the host.

Randomness comes from one ``torch.Generator`` on the env's device: ``reset(seed=s)`` reseeds it, so a run is
reproducible for a given seed, device and batch size. It cannot reproduce popgym's numpy streams; the parity tests
inject the hidden quantities (``reset(options=...)``, see each family) into both implementations instead.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import gymnasium as gym
import torch
from gymnasium import spaces
from torch import Tensor

from envs.vector import EpisodeStats, Obs, VecEnv, select_rows
from rlmem.syncs import cpu_fast_path

State = dict[str, Tensor]


class PopgymVec(VecEnv):
    """Base of the batched POPGym families (module docstring). Subclasses set the spaces in ``__init__``."""

    #: popgym's flag: the optimal policy needs the previous action in the observation (``make_vec`` adds it)
    obs_requires_prev_action: ClassVar[bool] = False
    #: keys ``reset(options=...)`` accepts, to inject the hidden quantities of the first episode of every row
    reset_options: ClassVar[tuple[str, ...]] = ()
    #: the longest episode (popgym's ``max_episode_length``)
    max_episode_length: int

    def __init__(self, num_envs: int, device: torch.device | str = "cpu"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device)
        self.state: State = {}
        self.stats = EpisodeStats(self.num_envs, self.device)
        self._seeded = False
        self._no_success = torch.full((self.num_envs,), float("nan"), device=self.device)
        # see the module docstring; tests turn it off to run the accelerator path on CPU
        self.skip_idle_autoreset = self.device.type == "cpu"

    # -- family hooks -----------------------------------------------------------------------------

    @abc.abstractmethod
    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        """``n`` new episodes: state tensors with first dim ``n`` and their first observations."""

    @abc.abstractmethod
    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        """Advance every row of ``self.state``: ``obs, reward (f32), terminated, truncated``. The observation
        must not share memory with ``self.state`` (callers keep observations)."""

    # -- VecEnv API -------------------------------------------------------------------------------

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Start a new episode in every row. ``seed`` reseeds the env's generator (the first reset without one
        seeds it from the OS); ``options`` inject hidden quantities (``reset_options``) into these episodes."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.reset_options))
        if unknown:
            raise ValueError(f"{type(self).__name__}.reset: unknown options {unknown}; accepted: "
                             f"{list(self.reset_options)}")
        if seed is not None:
            self.gen.manual_seed(int(seed))
        elif not self._seeded:
            self.gen.seed()
        self._seeded = True
        self.state, obs = self._fresh(self.num_envs, options)
        self.stats.reset()
        return obs, {}

    def step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor, dict[str, Any]]:
        if not self.state:
            raise gym.error.ResetNeeded("Call reset() before step().")
        obs, reward, terminated, truncated = self._step(self._action(action))
        done = terminated | truncated
        ep_ret, ep_len = self.stats.update(reward, done)
        final_obs = obs
        if self.skip_idle_autoreset and cpu_fast_path(self.device):
            if bool(done.any()):
                rows = done.nonzero().squeeze(1)
                fresh, first = self._fresh(len(rows), {})
                for k, v in fresh.items():
                    self.state[k].index_copy_(0, rows, v)
                obs = _put_rows(obs, rows, first)
        else:
            fresh, first = self._fresh(self.num_envs, {})
            self.state = {k: _where_rows(done, fresh[k], v) for k, v in self.state.items()}
            obs = select_rows(done, first, obs)
        info = {"final_obs": final_obs, "episode_return": ep_ret, "episode_length": ep_len,
                "success": self._no_success}
        return obs, reward, terminated, truncated, info

    # -- helpers ----------------------------------------------------------------------------------

    def _action(self, action: Any) -> Tensor:
        space = self.single_action_space
        if not isinstance(action, Tensor) or action.device != self.device:
            action = torch.as_tensor(action, device=self.device)
        if isinstance(space, spaces.Box):
            return action.float().view(self.num_envs, *space.shape)
        if isinstance(space, spaces.MultiDiscrete):
            return action.long().view(self.num_envs, *space.shape)
        return action.long().view(self.num_envs)

    def _option(self, options: Mapping[str, Any], key: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """An injected quantity as a tensor on the device (a copy: the env writes into its state), checked against
        its expected shape."""
        value = torch.as_tensor(options[key]).to(self.device, dtype, copy=True)
        if tuple(value.shape) != shape:
            raise ValueError(f"{type(self).__name__}.reset: options[{key!r}] has shape {tuple(value.shape)}, "
                             f"expected {shape}")
        return value

    def _rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.rand(shape, generator=self.gen, device=self.device, dtype=dtype)

    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.gen, device=self.device)


def at(values: Tensor, pos: Tensor) -> Tensor:
    """``values[i, pos[i]]`` for every row: ``[N, C], [N] -> [N]``."""
    return values.gather(1, pos.unsqueeze(1)).squeeze(1)


def _where_rows(rows: Tensor, new: Tensor, old: Tensor) -> Tensor:
    return torch.where(rows.view(-1, *([1] * (old.dim() - 1))), new, old)


def _put_rows(obs: Obs, rows: Tensor, new: Obs) -> Obs:
    """``obs`` with ``rows`` replaced by ``new`` (out of place: ``obs`` is also the step's ``final_obs``)."""
    if isinstance(obs, tuple):
        return tuple(_put_rows(o, rows, n) for o, n in zip(obs, cast("tuple[Obs, ...]", new), strict=True))
    if isinstance(obs, dict):
        new_d = cast("dict[str, Obs]", new)  # new has obs's structure
        return {k: _put_rows(obs[k], rows, new_d[k]) for k in obs}
    return obs.index_copy(0, rows, cast(Tensor, new))
