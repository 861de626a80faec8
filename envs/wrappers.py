"""Observation wrappers shared by every environment, for gym envs and for tensor ``VecEnv``s.

``PrevActionReward`` (gym) and ``VecPrevActionReward`` (tensors) build the same observation::

    Dict({"obs": original, "prev_action": ..., "prev_reward": Box(-inf, inf, (1,))})

with the ``prev_*`` keys present only when enabled. At an episode start the previous action is a
dedicated "no action" value: ``n`` for ``Discrete(n)`` (space ``Discrete(n + 1)``), ``nvec`` per
component for ``MultiDiscrete(nvec)`` (space ``MultiDiscrete(nvec + 1)``), zeros for ``Box`` (space
widened to contain 0); the previous reward is 0.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from envs.vector import Obs, VecEnv, VecEnvWrapper

OBS, PREV_ACTION, PREV_REWARD, RTG, PLACE = "obs", "prev_action", "prev_reward", "rtg", "place"


def prev_action_space(action_space: gym.Space) -> gym.Space:
    """Space of the previous action, with room for the "no previous action" value."""
    if isinstance(action_space, spaces.Discrete):
        return spaces.Discrete(int(action_space.n) + 1, start=int(action_space.start))
    if isinstance(action_space, spaces.MultiDiscrete):
        return spaces.MultiDiscrete(action_space.nvec + 1, start=action_space.start)
    if isinstance(action_space, spaces.Box):
        low = np.minimum(action_space.low, 0).astype(np.float32)
        high = np.maximum(action_space.high, 0).astype(np.float32)
        return spaces.Box(low=low, high=high, dtype=np.float32)
    raise TypeError(f"Previous action of {action_space} is not supported (Discrete, MultiDiscrete, Box).")


def null_action(action_space: gym.Space) -> np.ndarray:
    """The "no previous action" value used at episode starts."""
    if isinstance(action_space, spaces.Discrete):
        return np.int64(action_space.start + action_space.n)  # type: ignore[return-value]
    if isinstance(action_space, spaces.MultiDiscrete):
        return (action_space.start + action_space.nvec).astype(np.int64)
    if isinstance(action_space, spaces.Box):
        return np.zeros(action_space.shape, dtype=np.float32)
    raise TypeError(f"Previous action of {action_space} is not supported (Discrete, MultiDiscrete, Box).")


def _obs_space(
    observation_space: gym.Space, action_space: gym.Space, prev_action: bool, prev_reward: bool
) -> spaces.Dict:
    if not (prev_action or prev_reward):
        raise ValueError("Enable prev_action and/or prev_reward (otherwise the wrapper is not needed).")
    entries: dict[str, gym.Space] = {OBS: observation_space}
    if prev_action:
        entries[PREV_ACTION] = prev_action_space(action_space)
    if prev_reward:
        entries[PREV_REWARD] = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
    return spaces.Dict(entries)


class PrevActionReward(gym.Wrapper):
    """Add the previous action and/or reward to a gym env's observation (see module docstring).

    Box actions are recorded clipped to the (widened) action bounds so the observation stays in its
    space.
    """

    def __init__(self, env: gym.Env, prev_action: bool = True, prev_reward: bool = False):
        super().__init__(env)
        self.prev_action, self.prev_reward = prev_action, prev_reward
        self.observation_space = _obs_space(env.observation_space, env.action_space, prev_action, prev_reward)
        self._null = null_action(env.action_space)
        self._recorded = prev_action_space(env.action_space)  # (also when only the reward is observed)

    def _wrap(self, obs: Any, action: np.ndarray, reward: float) -> dict[str, Any]:
        out: dict[str, Any] = {OBS: obs}
        if self.prev_action:
            out[PREV_ACTION] = action
        if self.prev_reward:
            out[PREV_REWARD] = np.array([reward], dtype=np.float32)
        return out

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._wrap(obs, copy.copy(self._null), 0.0), info

    def step(self, action: Any) -> tuple[dict[str, Any], Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._wrap(obs, self._record(action), float(reward)), reward, terminated, truncated, info

    def _record(self, action: Any) -> np.ndarray:
        space = self.env.action_space
        if isinstance(space, spaces.Discrete):
            return np.int64(np.asarray(action).item())  # type: ignore[return-value]
        if isinstance(space, spaces.MultiDiscrete):
            return np.array(action, dtype=np.int64).reshape(space.shape)
        box = cast(spaces.Box, self._recorded)  # Box actions: a Box (prev_action_space)
        return np.clip(np.asarray(action, dtype=np.float32).reshape(space.shape), box.low, box.high)


def add_observation_wrappers(
    env: gym.Env, prev_action: bool = False, prev_reward: bool = False, rtg_target: float | None = None
) -> gym.Env:
    """``env`` with the optional observation wrappers every rlmem entry point takes: previous action/reward
    (:class:`PrevActionReward`), then return-to-go conditioning (:class:`ReturnToGo`)."""
    if prev_action or prev_reward:
        env = PrevActionReward(env, prev_action=prev_action, prev_reward=prev_reward)
    if rtg_target is not None:
        env = ReturnToGo(env, rtg_target)
    return env


class CopyInfo(gym.Wrapper):
    """Return a deep copy of every ``info`` dict.

    POPGym's CountRecall returns an array it keeps mutating in ``info`` and MultiarmedBandit returns
    the same dict from ``reset`` and shallow copies of it from ``step``: a caller keeping an info
    would see it change (gymnasium's ``check_env`` rejects both).
    """

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, copy.deepcopy(info)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, copy.deepcopy(info)


class VecPrevActionReward(VecEnvWrapper):
    """``PrevActionReward`` for a tensor ``VecEnv`` (same spaces, same values, same-step autoreset).

    On a row that ends, ``info["final_obs"]`` carries the action and reward of that last step while
    the returned observation (the next episode's first) carries the "no action" value and reward 0.
    """

    single_observation_space: spaces.Dict

    def __init__(self, env: VecEnv, prev_action: bool = True, prev_reward: bool = False):
        super().__init__(env)
        self.prev_action, self.prev_reward = prev_action, prev_reward
        self.single_observation_space = _obs_space(
            env.single_observation_space, env.single_action_space, prev_action, prev_reward
        )
        space = env.single_action_space
        null = torch.as_tensor(null_action(space), device=self.device)
        self._null = null.expand(self.num_envs, *null.shape)
        self._discrete = isinstance(space, spaces.Discrete | spaces.MultiDiscrete)
        if not self._discrete:
            box = cast(spaces.Box, prev_action_space(space))  # Box actions: a Box (also without prev_action)
            self._low = torch.as_tensor(box.low, device=self.device)
            self._high = torch.as_tensor(box.high, device=self.device)

    def _wrap(self, obs: Obs, action: Tensor, reward: Tensor) -> dict[str, Obs]:
        out: dict[str, Obs] = {OBS: obs}
        if self.prev_action:
            out[PREV_ACTION] = action
        if self.prev_reward:
            out[PREV_REWARD] = reward.view(self.num_envs, 1)
        return out

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        zeros = torch.zeros(self.num_envs, dtype=torch.float32, device=self.device)
        return self._wrap(obs, self._null.clone(), zeros), info

    def step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        action = torch.as_tensor(action, device=self.device)
        if self._discrete:
            action = action.long().view(self._null.shape)
        else:
            action = torch.clamp(action.float().view(self._null.shape), self._low, self._high)
        done = terminated | truncated
        mask = done.view(-1, *([1] * (action.dim() - 1)))
        info = dict(info)
        info["final_obs"] = self._wrap(info["final_obs"], action, reward)
        next_action = torch.where(mask, self._null, action)
        next_reward = torch.where(done, 0.0, reward)
        return self._wrap(obs, next_action, next_reward), reward, terminated, truncated, info

    def close(self) -> None:
        self.env.close()


def _rtg_space(space: gym.Space) -> spaces.Dict:
    return spaces.Dict({OBS: space, RTG: spaces.Box(-np.inf, np.inf, (1,), np.float32)})


class ReturnToGo(gym.Wrapper):
    """Return-to-go conditioning (Decision-Transformer style): ``obs -> {"obs": obs, "rtg": [g]}`` where
    ``g`` starts at ``target`` and decreases by every reward received. Offline training feeds the
    dataset's true returns-to-go in the same place (``rlmem.algos.offline``)."""

    def __init__(self, env: gym.Env, target: float):
        super().__init__(env)
        self.target = float(target)
        self.observation_space = _rtg_space(env.observation_space)
        self._g = self.target

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._g = self.target
        return {OBS: obs, RTG: np.array([self._g], np.float32)}, info

    def step(self, action: Any) -> tuple[dict[str, Any], Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._g -= float(reward)
        return {OBS: obs, RTG: np.array([self._g], np.float32)}, reward, terminated, truncated, info


class VecReturnToGo(VecEnvWrapper):
    """``ReturnToGo`` for a tensor ``VecEnv``: the return-to-go of row i is reset to ``target`` with
    its next episode; ``info["final_obs"]`` carries the value after the last reward."""

    def __init__(self, env: VecEnv, target: float):
        super().__init__(env)
        self.target = float(target)
        self.single_observation_space = _rtg_space(env.single_observation_space)
        self._g = torch.full((self.num_envs,), self.target, device=self.device)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._g = torch.full((self.num_envs,), self.target, device=self.device)
        return {OBS: obs, RTG: self._g[:, None]}, info

    def step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        g = self._g - reward
        info = dict(info)
        info["final_obs"] = {OBS: info["final_obs"], RTG: g[:, None]}
        self._g = torch.where(terminated | truncated, self.target, g)
        return {OBS: obs, RTG: self._g[:, None]}, reward, terminated, truncated, info


class PlaceFromInfo(gym.Wrapper):
    """Move the place an env reports in ``info["place"]`` into the observation, for place-aware memories:
    ``obs -> {"obs": obs, "place": place}`` with space ``Discrete(num_places)`` (``env.place_key=place``)."""

    def __init__(self, env: gym.Env, num_places: int):
        super().__init__(env)
        if num_places < 1:
            raise ValueError(f"place_from_info needs the number of places (>= 1), got {num_places}")
        self.num_places = int(num_places)
        self.observation_space = spaces.Dict({OBS: env.observation_space, PLACE: spaces.Discrete(self.num_places)})

    def _place(self, info: dict[str, Any]) -> np.int64:
        if PLACE not in info:
            raise KeyError(f"place_from_info: {self.env.spec.id if self.env.spec else self.env} reports no "
                           "info['place']")
        place = int(np.asarray(info[PLACE]).item())
        if not 0 <= place < self.num_places:
            raise ValueError(f"info['place']={place} is outside place_from_info={self.num_places} places")
        return np.int64(place)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return {OBS: obs, PLACE: self._place(info)}, info

    def step(self, action: Any) -> tuple[dict[str, Any], Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return {OBS: obs, PLACE: self._place(info)}, reward, terminated, truncated, info
