"""GTrXL: Gated Transformer-XL (Parisotto et al. 2020, "Stabilizing Transformers for Reinforcement
Learning", ICML, arXiv:1910.06764), over a sliding cache of the episode's recent steps.

Each layer l keeps the inputs of its last W steps ``m_l [B, W, D]`` (Transformer-XL memory). Per layer (the
"identity map reordering": pre-norm, ReLU on the branch output, gating instead of the residual sum):

    (1) ȳ = RelMHA(LN([m_l, x]))           query i sees its W previous steps and itself (causal, this episode)
                                           a_ij = (q_i+u)·k_j + (q_i+v)·W_r R(i-j)   (Dai et al. 2019, eq. 4)
    (2) y  = g(x, ReLU(ȳ))
    (3) ē  = MLP(LN(y))
    (4) e  = g(y, ReLU(ē))                 the layer output, input of layer l+1
    GRU gate (paper eq. 8-11): r = σ(W_r y + U_r x), z = σ(W_z y + U_z x - b_g),
        ĥ = tanh(W_g y + U_g (r ⊙ x)), g(x, y) = (1 - z) ⊙ x + z ⊙ ĥ;  b_g = 2 so a block starts near the
        identity map.
    Output: LN of the last layer's output.

Deviation, for the memory contract: Transformer-XL attends over the previous *segment* plus the current one,
so the span depends on where the caller cuts the sequence. Here every step attends to exactly the previous W
steps of its episode (a sliding window, as CleanRL's ``ppo_trxl``), so step-wise rollouts and chunked training
compute the same function. The cache is not detached here (Transformer-XL's stop-gradient): like every
memory, it leaves that to the trainer (PPO's chunks start from stored states; the offline trainer's
``algo.detach``).

State (fixed size): ``m [B, N, W, D]`` (layer inputs of the last W steps, oldest first) and ``t [B]`` (int64, step
in episode; the last min(t, W) cached steps belong to the current episode).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlmem.memory.base import Memory, State, register
from rlmem.memory.window import sliding_window, steps_in_episode


class GRUGate(nn.Module):
    """g(x, y) of GTrXL (eqs. 8-11): the residual stream ``x`` gated by the branch output ``y``."""

    def __init__(self, d: int, bias: float = 2.0):
        super().__init__()
        self.wy = nn.Linear(d, 3 * d, bias=False)  # W_r, W_z, W_g
        self.ux = nn.Linear(d, 2 * d, bias=False)  # U_r, U_z
        self.ug = nn.Linear(d, d, bias=False)  # U_g
        self.bg = bias

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        wr, wz, wg = self.wy(y).chunk(3, -1)
        ur, uz = self.ux(x).chunk(2, -1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.bg)
        h = torch.tanh(wg + self.ug(r * x))
        return (1 - z) * x + z * h


class GTrXLLayer(nn.Module):
    def __init__(self, d: int, num_heads: int, ffn_mult: int, gate_bias: float, dropout: float):
        super().__init__()
        self.nh = num_heads
        self.norm_att = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.r_net = nn.Linear(d, d, bias=False)  # W_r of the relative positions
        self.o = nn.Linear(d, d, bias=False)
        self.gate_att = GRUGate(d, gate_bias)
        self.norm_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.ReLU(), nn.Linear(ffn_mult * d, d))
        self.gate_ffn = GRUGate(d, gate_bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mem: Tensor, pos: Tensor, dist: Tensor, visible: Tensor,
                u: Tensor, v: Tensor) -> Tensor:
        """``x [B, T, D]`` queries, ``mem [B, W, D]`` cached inputs; ``pos [W+1, D]`` sinusoids of distances
        0..W; ``dist [B, T, W+T]`` each key's distance (clamped), ``visible`` the same shape (bool)."""
        B, T, D = x.shape
        nh, hs = self.nh, D // self.nh
        W = mem.shape[1]
        cat = self.norm_att(torch.cat([mem, x], 1))  # (B, W+T, D) LN([m, x])
        q = F.linear(cat[:, W:], self.qkv.weight[:D]).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k, vv = F.linear(cat, self.qkv.weight[D:]).view(B, W + T, 2, nh, hs).permute(2, 0, 3, 1, 4)  # (B, nh, W+T, hs)
        r = self.r_net(pos).view(W + 1, nh, hs).permute(1, 2, 0)  # (nh, hs, W+1) W_r R(d)
        ac = (q + u) @ k.transpose(-1, -2)  # (B, nh, T, W+T) content
        bd = (q + v) @ r  # (B, nh, T, W+1) position, by distance
        bd = bd.gather(-1, dist[:, None].expand(B, nh, T, W + T))  # (B, nh, T, W+T) at each key's distance
        att = ((ac + bd) * hs**-0.5).masked_fill(~visible[:, None], float("-inf")).softmax(-1)
        a = (att @ vv).transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        y = self.gate_att(x, F.relu(self.drop(self.o(a))))  # (2)
        return self.gate_ffn(y, F.relu(self.drop(self.ffn(self.norm_ffn(y)))))  # (3), (4)


@register("gtrxl")
class GTrXLMemory(Memory):
    """Args:
    input_size: width of the per-step input.
    d_model: model width (and output width).
    num_layers: transformer layers N.
    num_heads: attention heads.
    window: W, previous steps each step attends to (the cache length).
    ffn_mult: FFN hidden width = ffn_mult * d_model.
    gate_bias: b_g of the GRU gates (2 in the paper: blocks start near the identity).
    dropout: dropout on the branch outputs (training only).
    """

    def __init__(self, input_size: int, d_model: int = 128, num_layers: int = 2, num_heads: int = 2,
                 window: int = 64, ffn_mult: int = 4, gate_bias: float = 2.0, dropout: float = 0.0):
        super().__init__()
        if d_model % num_heads or d_model % 2:
            raise ValueError(f"d_model={d_model} must be even and divisible by num_heads={num_heads}")
        if window < 1:
            raise ValueError(f"window={window} must be >= 1")
        self.d_model, self.num_layers, self.window = d_model, num_layers, window
        self.output_size = d_model
        self.in_proj = nn.Linear(input_size, d_model)
        self.layers = nn.ModuleList(GTrXLLayer(d_model, num_heads, ffn_mult, gate_bias, dropout)
                                    for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(d_model)
        hs = d_model // num_heads
        self.u = nn.Parameter(0.02 * torch.randn(num_heads, 1, hs))  # Transformer-XL content bias
        self.v = nn.Parameter(0.02 * torch.randn(num_heads, 1, hs))  # Transformer-XL position bias
        inv = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        ang = torch.arange(window + 1, dtype=torch.float64)[:, None] * inv  # (W+1, D/2) distances 0..W
        self.register_buffer("pos", torch.cat([ang.sin(), ang.cos()], -1).float(), persistent=False)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        f = self._factory(device)
        return {"m": torch.zeros(batch_size, self.num_layers, self.window, self.d_model, **f),
                "t": torch.zeros(batch_size, dtype=torch.long, device=f["device"])}

    def forward(self, x: Tensor, state: State, episode_start: Tensor, *, need_state: bool = True
                ) -> tuple[Tensor, State | None]:
        B, T, _ = x.shape
        W = self.window
        h = self.in_proj(x)  # (B, T, D)
        mem = state["m"].to(h.dtype)  # (B, N, W, D)
        t0 = state["t"].long()
        visible, dist = sliding_window(t0, episode_start, W, W)  # (B, T, W+T), (T, W+T)
        pos = self.pos.to(h.dtype)
        new_mem = []
        for i, layer in enumerate(self.layers):
            m = mem[:, i]
            if need_state:
                new_mem.append(torch.cat([m, h], 1)[:, -W:])  # (B, W, D) this layer's inputs, latest W
            h = layer(h, m, pos, dist.expand(B, T, W + T), visible, self.u, self.v)
        y = self.norm_out(h)
        if not need_state:
            return y, None
        t = steps_in_episode(t0, episode_start)[:, -1] + 1  # (B,) step the next call starts at
        return y, {"m": torch.stack(new_mem, 1), "t": t}
