"""One vector-env layer for every environment: batched tensors in and out on one device.

Two implementations share the :class:`VecEnv` interface:

* :class:`GymVecEnv` wraps gymnasium's ``SyncVectorEnv`` / ``AsyncVectorEnv`` for any CPU env
  (POPGym, CartPole, ...), converting numpy batches to tensors on ``device``;
* torch-batched envs (``envs.tmaze.TMazeVec``) step all rows as tensors on any device.

Conventions, identical for both:

* **Same-step autoreset.** When row ``i`` ends at a step (``terminated | truncated``), the observation
  returned for it is already the first observation of its next episode and the caller must pass
  ``episode_start[i] = True`` with it. The last observation of the finished episode is in
  ``info["final_obs"]`` (valid on done rows) so a truncated episode can be bootstrapped. Gymnasium's
  default (next-step) autoreset inserts a fake transition instead; we never rely on the default
  (gymnasium >= 1.1 lets us choose, see ``AutoresetMode``).
* ``terminated`` and ``truncated`` are separate bool tensors all the way to the advantage estimate.
* Observations are nested like the observation space: Box -> its dtype (uint8 images stay uint8,
  floats become float32), Discrete -> int64 ``[N]``, MultiDiscrete -> int64 ``[N, k]``,
  MultiBinary -> float32, Tuple -> tuple, Dict -> dict. Actions: Discrete -> int64 ``[N]``,
  MultiDiscrete -> int64 ``[N, k]``, Box -> float32 ``[N, *shape]``.
* ``info`` always holds ``episode_return`` (float32 ``[N]``) and ``episode_length`` (int64 ``[N]``),
  valid on done rows, and ``success`` (float32 ``[N]``, NaN where the env reports none).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

Obs = Tensor | dict[str, "Obs"] | tuple["Obs", ...]


class VecEnv(abc.ABC):
    """Batched environments on a torch device with same-step autoreset (see module docstring)."""

    num_envs: int
    single_observation_space: gym.Space
    single_action_space: gym.Space
    device: torch.device

    @abc.abstractmethod
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """Reset every row; row ``i`` is seeded with ``seed + i`` when ``seed`` is given."""

    @abc.abstractmethod
    def step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor, dict[str, Any]]:
        """Returns ``obs, reward[N] f32, terminated[N] bool, truncated[N] bool, info``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers or other resources."""


class VecEnvWrapper(VecEnv):
    """Base of tensor-env wrappers: spaces, device and any other attribute (``oracle_action``,
    ``balanced_reset_options``, ...) come from the wrapped env unless the wrapper overrides them."""

    def __init__(self, env: VecEnv):
        self.env = env
        self.num_envs = env.num_envs
        self.device = env.device
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.env, name)

    def close(self) -> None:
        self.env.close()


class EpisodeStats:
    """Running episode return/length per row, as tensors (shared by every VecEnv)."""

    def __init__(self, num_envs: int, device: torch.device):
        self.returns = torch.zeros(num_envs, dtype=torch.float32, device=device)
        self.lengths = torch.zeros(num_envs, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.returns.zero_()
        self.lengths.zero_()

    def update(self, reward: Tensor, done: Tensor) -> tuple[Tensor, Tensor]:
        """Adds a step; returns (episode_return, episode_length) valid where ``done``."""
        ep_ret, ep_len = self.returns + reward, self.lengths + 1  # new tensors: callers keep them
        self.returns, self.lengths = ep_ret.masked_fill(done, 0.0), ep_len.masked_fill(done, 0)
        return ep_ret, ep_len


def obs_to_tensor(obs: Any, space: gym.Space, device: torch.device) -> Obs:
    """Batched numpy observation (as gymnasium's vector envs stack it) -> nested tensors."""
    if isinstance(space, gym.spaces.Dict):
        return {k: obs_to_tensor(obs[k], s, device) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(obs_to_tensor(o, s, device) for o, s in zip(obs, space.spaces, strict=True))
    arr = np.asarray(obs)
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        arr = arr.astype(np.int64, copy=False)
    elif isinstance(space, gym.spaces.Box) and space.dtype == np.uint8:
        pass
    else:
        arr = arr.astype(np.float32, copy=False)
    return torch.as_tensor(arr).to(device, non_blocking=True)


def action_to_numpy(action: Tensor, space: gym.Space) -> np.ndarray:
    """Batched action tensor -> numpy batch in the dtype the space expects."""
    arr = action.detach().cpu().numpy()
    if isinstance(space, gym.spaces.Box):
        return arr.astype(space.dtype, copy=False)
    return arr.astype(np.int64, copy=False)


def select_rows(mask: Tensor, new: Obs, old: Obs) -> Obs:
    """``where(mask, new, old)`` applied through a nested observation (mask is ``[N]``)."""
    if isinstance(new, dict):
        old_d = cast("dict[str, Obs]", old)  # old has new's structure
        return {k: select_rows(mask, new[k], old_d[k]) for k in new}
    if isinstance(new, tuple):
        return tuple(select_rows(mask, n, o) for n, o in zip(new, cast("tuple[Obs, ...]", old), strict=True))
    m = mask.view(-1, *([1] * (new.dim() - 1)))
    return torch.where(m, new, cast(Tensor, old))


class GymVecEnv(VecEnv):
    """gymnasium ``SyncVectorEnv``/``AsyncVectorEnv`` behind the tensor interface.

    Args:
        env_fns: one constructor per row.
        device: where observations, rewards and flags are returned.
        asynchronous: one subprocess per env (``AsyncVectorEnv``) instead of stepping in-process.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        device: torch.device | str = "cpu",
        asynchronous: bool = False,
    ):
        mode = gym.vector.AutoresetMode.SAME_STEP
        self.env: gym.vector.SyncVectorEnv | gym.vector.AsyncVectorEnv
        if asynchronous:
            # Workers start from a fresh server process, not a fork of this one: a forked child inherits this
            # process's OpenMP pool and any EGL context (MuJoCo rendering) in a state it cannot use, and hangs.
            self.env = gym.vector.AsyncVectorEnv(list(env_fns), autoreset_mode=mode, context="forkserver")
        else:
            self.env = gym.vector.SyncVectorEnv(list(env_fns), autoreset_mode=mode)
        self.num_envs = self.env.num_envs
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.device = torch.device(device)
        self._ret = np.zeros(self.num_envs, dtype=np.float32)  # running episode return per row
        self._len = np.zeros(self.num_envs, dtype=np.float32)  # running episode length per row
        self._no_success = torch.full((self.num_envs,), float("nan"), device=self.device)

    def _obs(self, obs: Any) -> Obs:
        return obs_to_tensor(obs, self.single_observation_space, self.device)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        obs, _ = self.env.reset(seed=seed, options=options)
        self._ret[:] = 0.0
        self._len[:] = 0
        return self._obs(obs), {}

    def step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor, dict[str, Any]]:
        obs, rew, term, trunc, info = self.env.step(action_to_numpy(action, self.single_action_space))
        obs_t = self._obs(obs)
        # Per-row scalars and episode statistics are computed in numpy (a numpy op on 8 floats costs
        # ~1 us, a torch op ~4 us) and cross to the device in one transfer.
        rew = np.asarray(rew, dtype=np.float32)
        done_np = np.logical_or(term, trunc)
        self._ret += rew
        self._len += 1
        packed = np.stack([rew, term, trunc, self._ret, self._len]).astype(np.float32, copy=False)
        self._ret[done_np] = 0.0
        self._len[done_np] = 0
        flags = torch.from_numpy(packed).to(self.device)
        reward, terminated, truncated = flags[0], flags[1].bool(), flags[2].bool()
        ep_ret, ep_len = flags[3], flags[4].long()
        success, final_obs = self._no_success, obs_t
        if done_np.any():
            mask = np.asarray(info.get("_final_obs", done_np), dtype=bool)
            # final_obs is an object array of per-row observations: stack the rows that ended and keep
            # the current observation elsewhere (only done rows are meaningful).
            rows = [info["final_obs"][i] if mask[i] else None for i in range(self.num_envs)]
            final_obs = self._obs(_stack_rows(rows, obs, self.single_observation_space))
            final_info = info.get("final_info", {})
            if "success" in final_info:
                s_mask = np.asarray(final_info.get("_success", mask), dtype=bool)
                s = np.where(s_mask, np.asarray(final_info["success"], dtype=np.float32), np.nan)
                success = torch.from_numpy(s.astype(np.float32)).to(self.device)
        out_info: dict[str, Any] = {
            "final_obs": final_obs,
            "episode_return": ep_ret,
            "episode_length": ep_len,
            "success": success,
        }
        return obs_t, reward, terminated, truncated, out_info

    def oracle_action(self) -> Tensor:
        """Every row's privileged oracle action (the envs' ``oracle_action()``, through their wrappers and, when
        asynchronous, in their workers), as an action batch on ``device``."""
        try:
            acts = self.env.call("oracle_action")
        except AttributeError as e:
            raise AttributeError(f"{self.env.spec.id if self.env.spec else 'this env'} has no oracle_action(): "
                                 "collect with checkpoint=PATH instead") from e
        arr = np.stack([np.asarray(a) for a in acts])
        space = self.single_action_space
        arr = arr.astype(space.dtype if isinstance(space, gym.spaces.Box) else np.int64, copy=False)
        return torch.from_numpy(arr).to(self.device)

    def close(self) -> None:
        self.env.close()


def _stack_rows(rows: list[Any], batch: Any, space: gym.Space) -> Any:
    """Batch per-row final observations, filling rows that did not end from ``batch``."""
    if isinstance(space, gym.spaces.Dict):
        return {
            k: _stack_rows([None if r is None else r[k] for r in rows], batch[k], s)
            for k, s in space.spaces.items()
        }
    if isinstance(space, gym.spaces.Tuple):
        return tuple(
            _stack_rows([None if r is None else r[j] for r in rows], batch[j], s)
            for j, s in enumerate(space.spaces)
        )
    batch = np.asarray(batch)
    return np.stack([batch[i] if r is None else np.asarray(r, dtype=batch.dtype) for i, r in enumerate(rows)])


def space_signature(space: gym.Space) -> Mapping[str, Any] | str:
    """A comparable, human-readable description of a space (used to check checkpoints)."""
    return repr(space)
