"""Observation encoders built from a gymnasium observation space.

``build_encoder(space)`` returns a module mapping a nested observation with leading dims ``[B, T]``
to features ``[B, T, output_size]``:

* Box vectors -> MLP (``mlp_sizes``, Tanh);
* Box uint8 images ``(H, W, C)`` -> CNN (pixels / 255), then a linear layer to ``cnn_out``;
* Discrete -> embedding; MultiDiscrete -> one embedding table with per-component offsets,
  concatenated; MultiBinary -> as floats;
* Tuple / Dict -> the concatenation of the encoders of their parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class EncoderConfig:
    """How observations are turned into the memory's input."""

    mlp_sizes: tuple[int, ...] = (64,)  # hidden widths of the MLP for Box vectors (() = raw floats)
    embed_dim: int = 16  # width of each Discrete/MultiDiscrete embedding
    cnn_out: int = 256  # feature width after the CNN for images


def is_image_space(space: gym.Space) -> TypeGuard[gym.spaces.Box]:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


class Encoder(nn.Module):
    output_size: int


class VectorEncoder(Encoder):
    def __init__(self, space: gym.spaces.Box | gym.spaces.MultiBinary, sizes: tuple[int, ...]):
        super().__init__()
        self.ndim = len(space.shape)
        width = int(np.prod(space.shape))
        layers: list[nn.Module] = []
        for h in sizes:
            layers += [nn.Linear(width, h), nn.Tanh()]
            width = h
        self.net = nn.Sequential(*layers)
        self.output_size = width

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs.flatten(obs.dim() - self.ndim).float())


class ImageEncoder(Encoder):
    """Nature-DQN-style CNN on HWC uint8 frames; smaller kernels for frames under 36 pixels."""

    def __init__(self, space: gym.spaces.Box, out: int):
        super().__init__()
        h, w, c = space.shape
        if min(h, w) >= 36:
            convs = [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
        else:
            convs = [(32, 3, 1), (64, 3, 2), (64, 3, 1)]
        layers: list[nn.Module] = []
        ch = c
        for out_ch, k, s in convs:
            layers += [nn.Conv2d(ch, out_ch, k, s), nn.ReLU()]
            ch = out_ch
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n = self.cnn(torch.zeros(1, c, h, w)).shape[1]
        self.fc = nn.Sequential(nn.Linear(n, out), nn.ReLU())
        self.output_size = out

    def forward(self, obs: Tensor) -> Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0  # (N, C, H, W)
        return self.fc(self.cnn(x)).view(*lead, -1)


class DiscreteEncoder(Encoder):
    offsets: Tensor  # buffers
    starts: Tensor

    def __init__(self, nvec: np.ndarray, starts: np.ndarray, embed_dim: int):
        super().__init__()
        nvec = np.asarray(nvec).reshape(-1)
        self.register_buffer("offsets", torch.as_tensor(np.concatenate([[0], np.cumsum(nvec)[:-1]])))
        self.register_buffer("starts", torch.as_tensor(np.asarray(starts).reshape(-1), dtype=torch.long))
        self.single = nvec.size == 1
        self.plain = self.single and not np.any(starts)  # Discrete(n) from 0: index the table directly
        self.embed = nn.Embedding(int(nvec.sum()), embed_dim)
        self.output_size = embed_dim * nvec.size

    def forward(self, obs: Tensor) -> Tensor:
        if self.plain:
            return self.embed(obs.long())
        idx = obs.long()
        if self.single:
            idx = idx.unsqueeze(-1)
        idx = idx - self.starts + self.offsets  # (..., k)
        return self.embed(idx).flatten(-2)


class CompositeEncoder(Encoder):
    def __init__(self, parts: dict[str, Encoder], is_tuple: bool):
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self.is_tuple = is_tuple
        self.output_size = sum(p.output_size for p in parts.values())

    def forward(self, obs: dict[str, Tensor] | tuple[Tensor, ...]) -> Tensor:
        if self.is_tuple:
            tup = cast("tuple[Tensor, ...]", obs)
            feats = [enc(tup[int(k)]) for k, enc in self.parts.items()]
        else:
            named = cast("dict[str, Tensor]", obs)
            feats = [enc(named[k]) for k, enc in self.parts.items()]
        return torch.cat(feats, -1)


def build_encoder(space: gym.Space, cfg: EncoderConfig | None = None) -> Encoder:
    """The encoder for ``space``; raises ``TypeError`` for a space it cannot encode."""
    cfg = cfg or EncoderConfig()
    if isinstance(space, gym.spaces.Dict):
        return CompositeEncoder({k: build_encoder(s, cfg) for k, s in space.spaces.items()}, False)
    if isinstance(space, gym.spaces.Tuple):
        return CompositeEncoder({str(i): build_encoder(s, cfg) for i, s in enumerate(space.spaces)}, True)
    if is_image_space(space):
        return ImageEncoder(space, cfg.cnn_out)
    if isinstance(space, gym.spaces.Box | gym.spaces.MultiBinary):
        return VectorEncoder(space, tuple(cfg.mlp_sizes))
    if isinstance(space, gym.spaces.Discrete):
        return DiscreteEncoder(np.array([space.n]), np.array([space.start]), cfg.embed_dim)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return DiscreteEncoder(space.nvec, getattr(space, "start", np.zeros_like(space.nvec)), cfg.embed_dim)
    raise TypeError(f"no encoder for observation space {space}")
