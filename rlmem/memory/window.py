"""Episode bookkeeping shared by the attention memories (GTrXL, HCAM, SAT) for calls that may contain resets.

A call sees ``R`` cached steps (the latest steps before the call, oldest first) followed by its own ``T``
steps: key index ``k`` in ``0..R+T-1``, with call step ``j`` at key ``R + j``. Keys are tagged with an
*episode id*: cached steps of the carried episode get 0 (cached steps from earlier episodes -1), call step
``j`` gets the number of episode starts at or before it. A query sees a key only if the ids match, so no
information crosses an episode boundary whatever the call pattern.
"""

from __future__ import annotations

import torch
from torch import Tensor


def steps_in_episode(t0: Tensor, episode_start: Tensor) -> Tensor:
    """Step in episode ``[B, T]`` of every call step, given the carried step ``t0 [B]`` (the step the next call
    starts at)."""
    T = episode_start.shape[1]
    ar = torch.arange(T, device=episode_start.device)
    last = torch.where(episode_start, ar, -1)  # (B, T) latest episode start, -1 none: a running max over T
    if T > 1:  # (one step needs none; the ONNX exporter has no cummax, and a deployed step is T=1)
        last = last.cummax(1).values
    return torch.where(last >= 0, ar - last, t0[:, None] + ar)


def key_episodes(cached_valid: Tensor, episode_start: Tensor) -> tuple[Tensor, Tensor]:
    """Episode ids of the keys ``[B, R+T]`` and of the queries ``[B, T]``; ``cached_valid [B, R]`` marks
    cached steps of the carried episode."""
    ep = episode_start.long().cumsum(1)  # (B, T)
    return torch.cat([torch.where(cached_valid, 0, -1), ep], 1), ep


def sliding_window(t0: Tensor, episode_start: Tensor, R: int, W: int) -> tuple[Tensor, Tensor]:
    """Which keys each query sees when every step attends to itself and its ``W`` previous steps (``W <= R``).

    Returns ``visible [B, T, R+T]`` (bool) and the query-key distance ``dist [T, R+T]`` clamped to ``[0, W]``.
    """
    B, T = episode_start.shape
    dev = episode_start.device
    n0 = torch.where(episode_start[:, 0], 0, t0).clamp(max=R)  # (B,) cached steps of the carried episode
    cached = torch.arange(R, device=dev) >= R - n0[:, None]  # (B, R)
    key_ep, ep = key_episodes(cached, episode_start)
    d = torch.arange(T, device=dev)[:, None] + R - torch.arange(R + T, device=dev)  # (T, R+T)
    visible = (d >= 0) & (d <= W) & (key_ep[:, None, :] == ep[:, :, None])  # (B, T, R+T)
    return visible, d.clamp(0, W)
