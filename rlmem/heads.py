"""Action heads built from a gymnasium action space, with light distributions.

The distributions skip ``torch.distributions``' argument validation and object overhead: the rollout
calls them once per environment step, where that overhead is a measurable share of the time.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn


def _layer_init(layer: nn.Linear, std: float) -> nn.Linear:
    # Orthogonal init with a small gain on the policy output (Andrychowicz et al. 2021, "What matters").
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class Dist(ABC):
    @abstractmethod
    def sample(self) -> Tensor: ...
    @abstractmethod
    def mode(self) -> Tensor: ...
    @abstractmethod
    def log_prob(self, action: Tensor) -> Tensor: ...
    @abstractmethod
    def entropy(self) -> Tensor: ...


class MultiCategorical(Dist):
    """Independent categoricals over the last-but-one dim; logits ``[..., k, n]`` (padded with -inf)."""

    def __init__(self, logits: Tensor, starts: Tensor | None, squeeze: bool):
        self.logp = torch.log_softmax(logits, -1)
        self.starts, self.squeeze = starts, squeeze  # starts: first action value per component (or None)

    def _out(self, a: Tensor) -> Tensor:
        if self.starts is not None:
            a = a + self.starts
        return a.squeeze(-1) if self.squeeze else a

    def sample(self) -> Tensor:
        u = torch.rand_like(self.logp).clamp_(1e-20, 1.0)
        return self._out(torch.argmax(self.logp - torch.log(-torch.log(u)), -1))  # Gumbel-max

    def mode(self) -> Tensor:
        return self._out(torch.argmax(self.logp, -1))

    def log_prob(self, action: Tensor) -> Tensor:
        a = action.long().unsqueeze(-1) if self.squeeze else action.long()
        if self.starts is not None:
            a = a - self.starts
        return self.logp.gather(-1, a.unsqueeze(-1)).squeeze(-1).sum(-1)

    def entropy(self) -> Tensor:
        p = self.logp.exp()
        return -(p * self.logp.masked_fill(p == 0, 0.0)).sum((-1, -2))


class DiagGaussian(Dist):
    def __init__(self, mean: Tensor, log_std: Tensor, event_dims: int):
        self.mean, self.log_std = mean, log_std.expand_as(mean)
        self.dims = tuple(range(-event_dims, 0))

    def sample(self) -> Tensor:
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def mode(self) -> Tensor:
        return self.mean

    def log_prob(self, action: Tensor) -> Tensor:
        z = (action - self.mean) / self.log_std.exp()
        return (-0.5 * z.square() - self.log_std - 0.5 * math.log(2 * math.pi)).sum(self.dims)

    def entropy(self) -> Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum(self.dims)


class CategoricalHead(nn.Module):
    """Discrete and MultiDiscrete actions (components padded to the largest ``n``)."""

    pad: Tensor  # buffers
    starts: Tensor

    def __init__(self, in_size: int, nvec: np.ndarray, starts: np.ndarray, single: bool):
        super().__init__()
        nvec = np.asarray(nvec).reshape(-1)
        self.k, self.n, self.single = nvec.size, int(nvec.max()), single
        self.fc = _layer_init(nn.Linear(in_size, self.k * self.n), 0.01)
        mask = torch.arange(self.n)[None, :] >= torch.as_tensor(nvec)[:, None]  # (k, n) padding
        self.register_buffer("pad", mask)
        self.register_buffer("starts", torch.as_tensor(np.asarray(starts).reshape(-1), dtype=torch.long))
        # Skip no-op ops on the per-step path (plain Discrete: no padding, actions start at 0).
        self.has_pad, self.has_starts = bool(mask.any()), bool(np.any(starts))

    def forward(self, h: Tensor) -> MultiCategorical:
        logits = self.fc(h).view(*h.shape[:-1], self.k, self.n)
        if self.has_pad:
            logits = logits.masked_fill(self.pad, float("-inf"))
        return MultiCategorical(logits, self.starts if self.has_starts else None, self.single)


class GaussianHead(nn.Module):
    """Box actions: state-independent log-std, as in PPO's original continuous-control setting."""

    def __init__(self, in_size: int, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape
        self.fc = _layer_init(nn.Linear(in_size, int(np.prod(shape))), 0.01)
        self.log_std = nn.Parameter(torch.zeros(shape))

    def forward(self, h: Tensor) -> DiagGaussian:
        mean = self.fc(h).view(*h.shape[:-1], *self.shape)
        return DiagGaussian(mean, self.log_std, len(self.shape))


def build_head(space: gym.Space, in_size: int) -> nn.Module:
    """The action head for ``space``; raises ``TypeError`` for unsupported spaces."""
    if isinstance(space, gym.spaces.Discrete):
        return CategoricalHead(in_size, np.array([space.n]), np.array([space.start]), single=True)
    if isinstance(space, gym.spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise TypeError(f"only 1-D MultiDiscrete action spaces are supported, got {space}")
        return CategoricalHead(in_size, space.nvec, getattr(space, "start", np.zeros_like(space.nvec)), False)
    if isinstance(space, gym.spaces.Box):
        return GaussianHead(in_size, tuple(space.shape))
    raise TypeError(f"no action head for action space {space}")
