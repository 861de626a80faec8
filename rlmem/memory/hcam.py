"""HCAM: Hierarchical Chunk Attention Memory (Lampinen, Chan, Banino & Hill 2021, "Towards mental time travel:
a hierarchical memory for reinforcement learning agents", NeurIPS, arXiv:2105.14039).

A pre-norm transformer of ``num_layers`` layers. Layer l stores its own inputs, chunk by chunk: the steps of an
episode are cut into chunks of C steps counted from the episode start; a completed chunk enters the layer's
memory with its summary key = the mean of its C steps; at most ``num_chunks`` chunks are kept (oldest dropped,
so the state is fixed-size). Per layer, on input x_t:

    (1) h = x + LocalAttn(LN(x))                     the step and its W previous steps (learned relative bias)
    (2) h = h + HCAM(LN(h), memory)                  the hierarchical read, below
    (3) h = h + FFN(LN(h))
    HCAM read, query q = LN(h_t), chunks c = 1..n completed before t in this episode (the latest ``num_chunks``):
      relevance  ρ_c = (W_q q) · (W_s s̄_c) / √D        s̄_c = mean of chunk c's steps (LN-ed)
      top-k      w = softmax over the k most relevant chunks of ρ (0 elsewhere)
      attention  o_c = MHA(q, keys/values = chunk c's steps + E_pos(0..C-1))    within each chosen chunk
      output     Σ_c w_c o_c
    Output: LN of the last layer's output.

Choices (DESIGN.md leaves them open):
- Gradients flow through the memory read (the SAT authors' port); DeepMind's code reads it under stop-gradient.
  Where gradients stop is the trainer's business (PPO chunks, the offline trainer's ``algo.detach``).
- The chunk in progress is not in memory; the local attention covers the recent steps (W >= C - 1 by default).
- A query's chunks are those completed strictly before it, so an output never depends on how the caller cuts
  the sequence: a call forms the chunks completed inside it from its own layer inputs, layer by layer, and masks
  each query to the chunks it may see (episode, completion time, the ``num_chunks`` latest). No step loop.

State (fixed size): ``recent [B, N, R, D]`` (layer inputs of the last R = max(W, C-1) steps, oldest first),
``chunks [B, N, Nc, C, D]`` (newest last, right-aligned), ``num [B]`` (valid chunks, <= Nc) and ``t [B]`` (int64
step in episode).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlmem.memory.base import Memory, State, register
from rlmem.memory.window import key_episodes, sliding_window, steps_in_episode


class HCAMLayer(nn.Module):
    def __init__(self, d: int, num_heads: int, window: int, chunk_len: int, top_k: int, ffn_mult: int,
                 dropout: float):
        super().__init__()
        self.nh, self.top_k = num_heads, top_k
        # (1) local attention with a learned bias per head and distance 0..W
        self.norm_local = nn.LayerNorm(d)
        self.local_qkv = nn.Linear(d, 3 * d)
        self.local_o = nn.Linear(d, d)
        self.local_bias = nn.Parameter(torch.zeros(num_heads, window + 1))
        # (2) hierarchical chunk read
        self.norm_read = nn.LayerNorm(d)
        self.norm_mem = nn.LayerNorm(d)  # applied to stored steps before they are summarised or attended
        self.rel_q = nn.Linear(d, d, bias=False)  # W_q of the relevance
        self.rel_k = nn.Linear(d, d, bias=False)  # W_s of the relevance
        self.read_q = nn.Linear(d, d)
        self.read_kv = nn.Linear(d, 2 * d)
        self.read_o = nn.Linear(d, d)
        self.chunk_pos = nn.Parameter(0.02 * torch.randn(chunk_len, d))  # E_pos, position inside a chunk
        # (3) FFN
        self.norm_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Linear(ffn_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def local(self, x: Tensor, recent: Tensor, visible: Tensor, dist: Tensor) -> Tensor:
        """(1): ``x [B, T, D]``, ``recent [B, R, D]``; ``visible [B, T, R+T]``, ``dist [T, R+T]``."""
        B, T, D = x.shape
        nh, hs = self.nh, D // self.nh
        hist = self.norm_local(torch.cat([recent, x], 1))  # (B, R+T, D)
        R = recent.shape[1]
        q = F.linear(hist[:, R:], self.local_qkv.weight[:D], self.local_qkv.bias[:D])  # (B, T, D)
        kv = F.linear(hist, self.local_qkv.weight[D:], self.local_qkv.bias[D:])  # (B, R+T, 2D)
        k, v = kv.view(B, R + T, 2, nh, hs).permute(2, 0, 3, 1, 4)  # (B, nh, R+T, hs) each
        bias = self.local_bias[:, dist].masked_fill(~visible[:, None], float("-inf"))  # (B, nh, T, R+T)
        a = F.scaled_dot_product_attention(q.view(B, T, nh, hs).transpose(1, 2), k, v, attn_mask=bias)
        return x + self.drop(self.local_o(a.transpose(1, 2).reshape(B, T, D)))

    def read(self, h: Tensor, chunks: Tensor, sees: Tensor) -> Tensor:
        """(2): ``h [B, T, D]`` reads ``chunks [B, P, C, D]``; ``sees [B, T, P]`` (bool) the chunks each query may
        read."""
        B, T, D = h.shape
        P, C = chunks.shape[1], chunks.shape[2]
        nh, hs = self.nh, D // self.nh
        q = self.norm_read(h)  # (B, T, D)
        mem = self.norm_mem(chunks)  # (B, P, C, D)
        rho = self.rel_q(q) @ self.rel_k(mem.mean(2)).transpose(1, 2) / math.sqrt(D)  # (B, T, P) relevance
        # unreadable chunks get the lowest finite score, not -inf: a top k with fewer readable chunks (or none)
        # then has no NaN in its softmax or its gradient; their weights are zeroed below
        rho = rho.masked_fill(~sees, torch.finfo(rho.dtype).min)
        top, idx = rho.topk(min(self.top_k, P), -1)  # (B, T, k)
        w = torch.zeros_like(rho).scatter(-1, idx, top.softmax(-1))  # (B, T, P) softmax over the top k, else 0
        w = w * sees  # nothing read from unreadable chunks (e.g. before the first chunk completes)
        kv = self.read_kv(mem + self.chunk_pos)  # (B, P, C, 2D)
        k, v = kv.view(B, P * C, 2, nh, hs).permute(2, 0, 3, 1, 4)  # (B, nh, P*C, hs) each
        qh = self.read_q(q).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        s = (qh @ k.transpose(-1, -2) / math.sqrt(hs)).view(B, nh, T, P, C)
        p = s.softmax(-1) * w[:, None, :, :, None]  # (B, nh, T, P, C) within-chunk attention x chunk weight
        o = p.view(B, nh, T, P * C) @ v  # (B, nh, T, hs) Σ_c w_c o_c
        return h + self.drop(self.read_o(o.transpose(1, 2).reshape(B, T, D)))

    def ffn_block(self, h: Tensor) -> Tensor:
        return h + self.drop(self.ffn(self.norm_ffn(h)))  # (3)


@register("hcam")
class HCAMMemory(Memory):
    """Args:
    input_size: width of the per-step input.
    d_model: model width (and output width).
    num_layers: layers N, each with its own chunk memory.
    num_heads: attention heads (local attention and the within-chunk read).
    chunk_len: C, steps per chunk, counted from the episode start.
    num_chunks: chunks kept per layer (the oldest is dropped).
    top_k: chunks read per query.
    window: W, previous steps of the local attention (None: C - 1, so the chunk in progress is covered).
    ffn_mult: FFN hidden width = ffn_mult * d_model.
    dropout: dropout on residual branches (training only).
    """

    def __init__(self, input_size: int, d_model: int = 128, num_layers: int = 2, num_heads: int = 2,
                 chunk_len: int = 8, num_chunks: int = 16, top_k: int = 4, window: int | None = None,
                 ffn_mult: int = 4, dropout: float = 0.0):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        window = chunk_len - 1 if window is None else window
        if chunk_len < 1 or num_chunks < 1 or top_k < 1 or window < 0:
            raise ValueError("chunk_len, num_chunks and top_k must be >= 1 and window >= 0")
        self.d_model, self.num_layers, self.chunk_len, self.num_chunks = d_model, num_layers, chunk_len, num_chunks
        self.window, self.recent_len = window, max(window, chunk_len - 1, 1)
        self.output_size = d_model
        self.in_proj = nn.Linear(input_size, d_model)
        self.layers = nn.ModuleList(HCAMLayer(d_model, num_heads, window, chunk_len, top_k, ffn_mult, dropout)
                                    for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(d_model)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        f = self._factory(device)
        N, R, Nc, C, D = self.num_layers, self.recent_len, self.num_chunks, self.chunk_len, self.d_model
        zero = torch.zeros(batch_size, dtype=torch.long, device=f["device"])
        return {"recent": torch.zeros(batch_size, N, R, D, **f), "chunks": torch.zeros(batch_size, N, Nc, C, D, **f),
                "num": zero, "t": zero.clone()}

    def forward(self, x: Tensor, state: State, episode_start: Tensor, *, need_state: bool = True
                ) -> tuple[Tensor, State | None]:
        B, T, _ = x.shape
        R, Nc, C, dev = self.recent_len, self.num_chunks, self.chunk_len, x.device
        h = self.in_proj(x)  # (B, T, D)
        recent, chunks = state["recent"].to(h.dtype), state["chunks"].to(h.dtype)
        t0 = state["t"].long()
        s = steps_in_episode(t0, episode_start)  # (B, T)
        visible, dist = sliding_window(t0, episode_start, R, self.window)  # (B, T, R+T), (T, R+T)

        # chunks a call can read: the Nc carried ones, then the P completed inside the call (at steps j with
        # s_j mod C = C-1), each tagged with its episode id and the call step it completes at (-1: carried)
        P = T // C + 1
        completes = s % C == C - 1  # (B, T)
        k = torch.where(completes, completes.long().cumsum(1) - 1, P)  # (B, T) new chunk index; P: a dump column
        ends = torch.full((B, P + 1), T, device=dev).scatter(  # (B, P) call step completing each new chunk; T: none
            1, k, torch.where(completes, torch.arange(T, device=dev), T))[:, :P]
        num0 = torch.where(episode_start[:, 0], 0, state["num"].long())
        carried = torch.arange(Nc, device=dev) >= Nc - num0[:, None]  # (B, Nc) valid carried chunks
        new_ok = ends < T  # (B, P)
        chunk_ep, ep = key_episodes(carried, episode_start)  # (B, Nc+T) for the carried ones, (B, T)
        chunk_ep = torch.cat([chunk_ep[:, :Nc], torch.where(new_ok, ep.gather(1, ends.clamp(max=T - 1)), -1)], 1)
        done_at = torch.cat([torch.full((B, Nc), -1, device=dev), ends], 1)  # (B, Nc+P)
        # query j sees the chunks of its episode completed before j, the latest Nc of them
        sees = (chunk_ep[:, None] == ep[:, :, None]) & (done_at[:, None] < torch.arange(T, device=dev)[:, None])
        sees = sees & (sees.flip(-1).long().cumsum(-1).flip(-1) <= Nc)  # (B, T, Nc+P)
        # where the new chunks' steps lie in [recent | call inputs] (R+T): the C steps ending at each end
        span = (ends.clamp(max=T - 1) + R - C + 1)[..., None] + torch.arange(C, device=dev)  # (B, P, C)
        span = span.clamp(min=0).view(B, P * C, 1)

        new_recent, new_chunks = [], []
        for i, layer in enumerate(cast("Iterable[HCAMLayer]", self.layers)):
            hist = torch.cat([recent[:, i], h], 1)  # (B, R+T, D) this layer's inputs
            all_chunks = torch.cat([chunks[:, i], hist.gather(1, span.expand(-1, -1, h.shape[-1])).view(
                B, P, C, -1)], 1)  # (B, Nc+P, C, D)
            if need_state:
                new_recent.append(hist[:, -R:])
                new_chunks.append(all_chunks)
            h = layer.local(h, recent[:, i], visible, dist)
            h = layer.read(h, all_chunks, sees)
            h = layer.ffn_block(h)
        y = self.norm_out(h)
        if not need_state:
            return y, None
        # keep the latest Nc chunks of each row's last episode, right-aligned
        last = (chunk_ep == ep[:, -1:]) & torch.cat([carried, new_ok], 1)  # (B, Nc+P)
        rank = last.flip(-1).long().cumsum(-1).flip(-1)  # (B, Nc+P) 1 for the newest
        slot = torch.where(last & (rank <= Nc), Nc - rank, Nc)  # (B, Nc+P); slot Nc is a dump, dropped
        stacked = torch.stack(new_chunks, 1)  # (B, N, Nc+P, C, D)
        idx = slot[:, None, :, None, None].expand_as(stacked)
        kept = stacked.new_zeros(B, self.num_layers, Nc + 1, C, stacked.shape[-1]).scatter(2, idx, stacked)
        num = (last & (rank <= Nc)).sum(1)
        return y, {"recent": torch.stack(new_recent, 1), "chunks": kept[:, :, :Nc], "num": num,
                   "t": s[:, -1] + 1}
