"""POPGym's MultiarmedBandit (popgym 1.0.7) as a batched torch env."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor

from envs.popgym_torch.base import PopgymVec, State, at
from envs.vector import Obs


class MultiarmedBandit(PopgymVec):
    """Episodic bandit: arm ``j`` pays with probability ``p_j ~ U(0, 1)``, drawn per episode.

    Obs ``Discrete(2)``: 1 if the pulled arm paid (0 at reset). Action ``Discrete(arms)``. Reward ``+-1/L``;
    truncated after ``L`` steps. POPGym gives the previous action.
    Injection: ``reset(options={"bandits": FloatTensor[N, arms]})``, the payout probabilities.
    """

    obs_requires_prev_action = True
    reset_options = ("bandits",)

    def __init__(self, num_envs: int, num_bandits: int = 10, episode_length: int = 200,
                 device: torch.device | str = "cpu"):
        super().__init__(num_envs, device)
        self.num_bandits, self.max_episode_length = int(num_bandits), int(episode_length)
        self.single_observation_space = spaces.Discrete(2)
        self.single_action_space = spaces.Discrete(self.num_bandits)
        self._scale = 1.0 / self.max_episode_length

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        if "bandits" in options:
            bandits = self._option(options, "bandits", (n, self.num_bandits), torch.float32)
        else:
            bandits = self._rand(n, self.num_bandits)
        zeros = torch.zeros(n, dtype=torch.int64, device=self.device)
        return {"bandits": bandits, "t": zeros}, zeros.clone()

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        paid = self._rand(self.num_envs) < at(s["bandits"], action)
        reward = torch.where(paid, self._scale, -self._scale)
        truncated = s["t"] >= self.max_episode_length - 1
        s["t"] = s["t"] + 1
        return paid.long(), reward, torch.zeros_like(truncated), truncated
