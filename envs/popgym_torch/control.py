"""POPGym's classic-control families (popgym 1.0.7) as batched torch envs: CartPole and Pendulum with parts of
the state hidden, optionally with Gaussian observation noise.

The dynamics are gymnasium 1.x's ``CartPoleEnv`` (Euler) and ``PendulumEnv``, computed in float64 as gymnasium
does, so a row follows popgym step for step from the same state; observations are float32.
Injection: ``reset(options={"state": Tensor[N, 4 | 2]})``, the physical state (CartPole ``x, x_dot, theta,
theta_dot``; Pendulum ``theta, theta_dot``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from envs.popgym_torch.base import PopgymVec, State
from envs.vector import Obs

F64 = torch.float64


class CartPole(PopgymVec):
    """CartPole showing only positions (``x, theta``, popgym ``PositionOnlyCartPole``) or only velocities
    (``x_dot, theta_dot``, ``VelocityOnlyCartPole``), with observation noise ``noise_sigma`` (``Noisy...``, clipped
    to the observation space). Action ``Discrete(2)``. Reward ``1/L`` per step (the pole falling terminates the
    episode); truncated after ``L`` steps.

    As in popgym, the first observation of ``VelocityOnlyCartPole`` holds the positions, not the velocities.
    """

    reset_options = ("state",)
    GRAVITY, MASSCART, MASSPOLE, LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    X_THRESHOLD, THETA_THRESHOLD = 2.4, 12 * 2 * math.pi / 360

    def __init__(self, num_envs: int, observe: str = "position", noise_sigma: float = 0.0,
                 max_episode_length: int = 200, device: torch.device | str = "cpu"):
        super().__init__(num_envs, device)
        if observe not in ("position", "velocity"):
            raise ValueError(f"observe must be position or velocity, got {observe!r}")
        self.observe, self.noise_sigma = observe, float(noise_sigma)
        self.max_episode_length = int(max_episode_length)
        high = (np.array([self.X_THRESHOLD * 2, self.THETA_THRESHOLD * 2], dtype=np.float32)
                if observe == "position" else np.array([np.inf, np.inf], dtype=np.float32))
        self.single_observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self._high = torch.as_tensor(high, device=self.device)
        self._shown = [0, 2] if observe == "position" else [1, 3]
        # every step pays 1/L (gymnasium pays 1 on the falling step too); never written, shared by every step
        self._reward = torch.full((self.num_envs,), 1.0 / self.max_episode_length, device=self.device)

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        if "state" in options:
            x = self._option(options, "state", (n, 4), F64)
        else:
            x = self._rand(n, 4, dtype=F64) * 0.1 - 0.05  # U(-0.05, 0.05)
        t = torch.zeros(n, dtype=torch.int64, device=self.device)
        return {"x": x, "t": t}, self._noisy(x[:, [0, 2]].float())  # positions first, as popgym

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        x, x_dot, theta, theta_dot = s["x"].unbind(1)
        total_mass, polemass_length = self.MASSCART + self.MASSPOLE, self.MASSPOLE * self.LENGTH
        force = torch.where(action == 1, self.FORCE, -self.FORCE)
        cos, sin = torch.cos(theta), torch.sin(theta)
        temp = (force + polemass_length * theta_dot.square() * sin) / total_mass
        theta_acc = (self.GRAVITY * sin - cos * temp) / (
            self.LENGTH * (4.0 / 3.0 - self.MASSPOLE * cos.square() / total_mass))
        x_acc = temp - polemass_length * theta_acc * cos / total_mass
        new = torch.stack((x + self.TAU * x_dot, x_dot + self.TAU * x_acc,
                           theta + self.TAU * theta_dot, theta_dot + self.TAU * theta_acc), dim=1)
        s["x"], s["t"] = new, s["t"] + 1
        terminated = (new[:, 0].abs() > self.X_THRESHOLD) | (new[:, 2].abs() > self.THETA_THRESHOLD)
        truncated = s["t"] >= self.max_episode_length
        return self._noisy(new[:, self._shown].float()), self._reward, terminated, truncated

    def _noisy(self, obs: Tensor) -> Tensor:
        if not self.noise_sigma:
            return obs
        noisy = obs + self._randn(*obs.shape) * self.noise_sigma
        return torch.maximum(torch.minimum(noisy, self._high), -self._high)


class Pendulum(PopgymVec):
    """Pendulum showing ``cos theta, sin theta`` but not the angular velocity (popgym ``PositionOnlyPendulum``),
    with observation noise ``noise_sigma`` (``NoisyPositionOnlyPendulum``, clipped to [-1, 1]). Action
    ``Box(-2, 2, (1,))``: the torque. Reward: gymnasium's ``r = -cost`` in [-16.27, 0] rescaled as popgym does,
    ``(r + 8.137) / 8.137 / L`` in [-1/L, 1/L]; truncated after ``L`` steps.
    """

    reset_options = ("state",)
    MAX_SPEED, MAX_TORQUE, DT, G, M, L = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0
    HALF_RANGE = 16.2736044 / 2  # popgym's reward_transform: rewards span [-16.27, 0]

    def __init__(self, num_envs: int, noise_sigma: float = 0.0, max_episode_length: int = 200,
                 device: torch.device | str = "cpu"):
        super().__init__(num_envs, device)
        self.noise_sigma, self.max_episode_length = float(noise_sigma), int(max_episode_length)
        self.single_observation_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.single_action_space = spaces.Box(-self.MAX_TORQUE, self.MAX_TORQUE, (1,), dtype=np.float32)
        self._high = torch.tensor([math.pi, 1.0], dtype=F64, device=self.device)

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        if "state" in options:
            x = self._option(options, "state", (n, 2), F64)
        else:
            x = (self._rand(n, 2, dtype=F64) * 2 - 1) * self._high  # U(-high, high)
        return {"x": x, "t": torch.zeros(n, dtype=torch.int64, device=self.device)}, self._obs(x[:, 0])

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        th, thdot = s["x"].unbind(1)
        u = action[:, 0].clamp(-self.MAX_TORQUE, self.MAX_TORQUE).double()
        normalized = (th + math.pi) % (2 * math.pi) - math.pi
        cost = normalized.square() + 0.1 * thdot.square() + 0.001 * u.square()
        new_thdot = thdot + (3 * self.G / (2 * self.L) * torch.sin(th) + 3.0 / (self.M * self.L ** 2) * u) * self.DT
        new_thdot = new_thdot.clamp(-self.MAX_SPEED, self.MAX_SPEED)
        new_th = th + new_thdot * self.DT
        s["x"], s["t"] = torch.stack((new_th, new_thdot), dim=1), s["t"] + 1
        reward = ((self.HALF_RANGE - cost) / self.HALF_RANGE / self.max_episode_length).float()
        truncated = s["t"] >= self.max_episode_length
        return self._obs(new_th), reward, torch.zeros_like(truncated), truncated

    def _obs(self, th: Tensor) -> Tensor:
        obs = torch.stack((torch.cos(th), torch.sin(th)), dim=1).float()
        if not self.noise_sigma:
            return obs
        return (obs + self._randn(*obs.shape) * self.noise_sigma).clamp(-1.0, 1.0)
