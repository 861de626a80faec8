"""ELMUR memory: External Layer Memory with Update/Rewrite (Cherepanov, Kovalev & Panov 2025,
"ELMUR: External Layer Memory with Update/Rewrite for Long-Horizon RL", arXiv:2510.07151).

A decoder of ``num_layers`` layers; layer l owns M memory slots ``m [B, M, D]`` and an anchor per slot
(episode step of its last write, -1 = empty). Time is cut into segments of K steps counted from the
episode start. Equations implemented (post-norm everywhere, as the released configs, ``pre_lnorm=False``):

    token track, per step i of the current segment (inputs x = W_in obs):
      (1) h = LN(x + SelfAttn(x))               causal inside the segment, Transformer-XL relative
                                                attention: a_ij = (q_i+u)·k_j + (q_i+v)·W_r R(i-j)
      (2) h = LN(h + CrossAttn(q=h, k=v=m_l, bias=b_l(t_i - anchor_j)))          read ("mem2tok")
      (3) h = LN(h + FFN(h))                    layer output, input of layer l+1
    memory track, once per completed segment, from the layer outputs h_1..h_K of (3):
      (4) u = LN(m + CrossAttn(q=m, k=v=h, bias=b_l(anchor_j - t_i)))            write ("tok2mem")
      (5) ũ = LN(u + FFN_mem(u))                per slot
      (6) LRU (paper Alg. 2): if a slot is empty, m_j <- ũ_j in the first empty slot (replacement);
          else j* = argmin anchor, m_j* <- λ ũ_j* + (1-λ) m_j* (convex blend); anchor_j <- write time.
          ``lru=False`` replaces every slot (m <- ũ) at every segment.
    b_l(Δ) is a learned per-head scalar per clamped offset Δ ∈ [-(R-1), R-1] (R = ``max_rel_time``), one
    table per layer shared by read and write; queries at time t see a slot written at time a as Δ=t-a.

Choices, with their source (the released code is ``offline_rl_baselines/ELMUR`` in CognitiveAISystems/RATE):
- Write keys/values (4) are the layer's *output* hidden states (after the token FFN), as the released code.
- FFN_mem (5) carries its own residual + norm, as the released code's FFN block; plain GELU MLP (no mixture
  of experts: the paper's ablation finds the MLP as good on RememberColor3).
- Anchor = episode step of the segment's last step. The released T-Maze config (``pos_type=relative``)
  numbers a segment's tokens newest-first and writes ``tok_pos[0]``, i.e. the segment end.
- Relative-time bias: the released ``RelativeBias`` (offset clamped to ±(max_seq_len-1), max_seq_len 1024
  in every released config, so ``max_rel_time=1024``; N(0, 1) init like its ``nn.Embedding``). Empty
  slots have anchor -1, so they are seen at offset t+1 (clamped), as in the released code.
- Init: Xavier-uniform weights, zero biases (released code); u, v ~ N(0, 0.02²) shared by all layers.
- ``lru_blend_empty=True`` blends with λ into empty slots too (the behaviour DESIGN.md reports for the
  authors' code: λ=0 then never writes); the default follows the paper (replacement into empty slots).

Deviations from the released code (each keeps the model a function of the episode's steps only):
- Initial slots N(0, σ²) are drawn ONCE at construction into the buffer ``mem0`` (shared by every row and
  episode); the released code redraws them per episode, which would make ``initial_state`` random.
- In-segment relative positions are true distances i-j. The released code feeds Transformer-XL the
  absolute positions of the segment (distance + segment offset) and, in relative mode, pairs token i with
  time ``start+K-1-i`` in the memory bias; both make outputs depend on the segment's index.
- ``lru=False`` sets every anchor to the write time; the released code leaves them at -1.
- Dropout only on residual branches (no attention-probability or separate memory dropout).

Options beyond the paper, both off by default: ``read_dropout`` (training-time hiding of stale slots from reads)
and ``write_scale`` (LayerScale on the write branches); ``experiment=elmur_tmaze`` uses both (``model=elmur_bc``).

Streaming: the state holds each row's step in episode ``t``, so segment boundaries fall every K steps from
the episode start whatever the call pattern: step-wise (T=1), chunked with resets anywhere, or aligned
segments (T=K from phase 0) compute the same function. Per layer the state caches the current partial
segment (self-attention keys/values and layer outputs), so a step costs O(K + M) and never re-runs the
segment. A call is processed in *pieces*: each row's steps are cut at segment boundaries and episode
starts; the k-th piece of every row is gathered into a right-padded block ``[B, <=K, D]`` and run through
the layers at once; rows whose piece completed a segment write memory, rows whose next piece starts an
episode are reset. About T/K + 2 iterations (+1 per reset), never T; T=1 is a single piece.

State (batch-first, fixed size): ``mem [B, N, M, D]``, ``anchor [B, N, M]`` (int64, -1 empty),
``t [B]`` (int64 step in episode), ``k``, ``v``, ``h [B, N, K, D]`` (cache of the current segment; only
positions < t mod K are meaningful, the rest is ignored).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from rlmem.memory.base import Memory, State, register
from rlmem.syncs import cpu_fast_path


def _heads(x: Tensor, nh: int) -> Tensor:
    B, L, D = x.shape
    return x.view(B, L, nh, D // nh).transpose(1, 2)  # (B, nh, L, hs)


class _Piece(NamedTuple):
    """The k-th piece of every row: steps of one segment of one episode, right-padded to ``L``."""

    src: Tensor | None  # (B, L) time index in the call of each piece step (None: T=1, the whole call)
    L: int  # padded length
    n: Tensor  # (B,) valid steps (0: the row has no k-th piece)
    ph: Tensor  # (B,) position in the segment of the first step (step in episode mod K)
    s0: Tensor  # (B,) step in episode of the first step
    reset: Tensor | None  # (B,) bool, the piece begins an episode (None: no row's does)
    done: Tensor | None  # rows whose piece completes a segment: (R,) indices on CPU, a (B,) bool mask on the
    # sync-free path (accelerators); None: no row's does


def _exposure(state: State) -> tuple[int, ...]:
    """Who else can see a state's cache tensors: Python references to each tensor object (another live state dict
    holding it, a caller's variable, a numpy array) and tensors on each storage (a view, a ``detach()``)."""
    k, v, h = state["k"], state["v"], state["h"]
    uses = torch._C._storage_Use_Count
    return (sys.getrefcount(k), sys.getrefcount(v), sys.getrefcount(h), uses(k.untyped_storage()._cdata),
            uses(v.untyped_storage()._cdata), uses(h.untyped_storage()._cdata))


# the exposure of caches that only their state dict refers to (measured once, the same way)
_PRIVATE = _exposure({"k": torch.empty(1), "v": torch.empty(1), "h": torch.empty(1)})
# the read fold (``ELMURLayer.read_fold``) computed by a step for a memory tensor, kept for the steps that follow
# while that tensor lives: memory tensor -> (owner module, read weights' versions, rk, rv)
_FOLDS: WeakIdKeyDictionary = WeakIdKeyDictionary()


class ELMURLayer(nn.Module):
    """One decoder layer: token track (1)-(3) and memory candidates (4)-(5)."""

    def __init__(self, d_model: int, num_heads: int, ffn_mult: int, dropout: float, write_scale: float | None = None):
        super().__init__()
        D, F_ = d_model, ffn_mult * d_model
        self.nh = num_heads
        # (1) Transformer-XL relative self-attention (no biases, as Dai et al. 2019)
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.r_net = nn.Linear(D, D, bias=False)
        self.self_o = nn.Linear(D, D, bias=False)
        self.norm_self = nn.LayerNorm(D)
        # (2) read: tokens query the layer's memory
        self.read_q = nn.Linear(D, D, bias=False)
        self.read_kv = nn.Linear(D, 2 * D, bias=False)
        self.read_o = nn.Linear(D, D)
        self.norm_read = nn.LayerNorm(D)
        # (3) token FFN
        self.ffn = nn.Sequential(nn.Linear(D, F_), nn.GELU(), nn.Linear(F_, D))
        self.norm_ffn = nn.LayerNorm(D)
        # (4) write: slots query the segment's layer outputs
        self.write_q = nn.Linear(D, D, bias=False)
        self.write_kv = nn.Linear(D, 2 * D, bias=False)
        self.write_o = nn.Linear(D, D)
        self.norm_write = nn.LayerNorm(D)
        # (5) memory FFN
        self.mem_ffn = nn.Sequential(nn.Linear(D, F_), nn.GELU(), nn.Linear(F_, D))
        self.norm_mem = nn.LayerNorm(D)
        self.drop = nn.Dropout(dropout)
        # optional LayerScale (Touvron et al. 2021) on the two write branches (4), (5)
        self.write_gain = None if write_scale is None else nn.Parameter(torch.full((2, D), float(write_scale)))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def tokens(self, x: Tensor, kc: Tensor, vc: Tensor, read: tuple[Tensor, Tensor], read_bias: Tensor, ctx: dict
               ) -> tuple[Tensor, Tensor, Tensor]:
        """Eqs. (1)-(3) on a piece ``x [B, L, D]`` whose segment prefix is cached in ``kc, vc [B, K, D]``; ``read``
        is the layer's memory folded for reading (``read_fold``), ``read_bias [B, L, nh, M]``.

        Returns the layer output and the piece's own keys and values (all ``[B, L, D]``), for the caches.
        """
        B, L, D = x.shape
        nh, hs = self.nh, D // self.nh
        K = kc.shape[1]
        # (1) causal relative self-attention; keys = [cached segment prefix (K) | this piece (L)], the cache is
        # read in place (never copied) and masked to the positions this segment has written
        q, k, v = self.qkv(x).chunk(3, -1)  # (B, L, D) each
        qu, qv = q + ctx["u"], q + ctx["v"]  # content / position queries (q+u, q+v)
        r = self.r_net(ctx["pos_sin"]).view(K, nh, hs).permute(1, 2, 0)  # (nh, hs, K) W_r R(d), d = 0..K-1
        bd = torch.bmm(qv.reshape(B * L, nh, hs).transpose(0, 1), r)  # (nh, B*L, K) (q+v)·W_r R(d)
        bd = bd.view(nh, B, L, K).transpose(0, 1).gather(-1, ctx["dist"])  # (B, nh, L, K+L) at each key's i-j
        if L == 1:  # one step (the rollout hot path): broadcasts, as bmm's of 1-row matrices are slow on CPU
            ac = torch.cat([(kc.view(B, K, nh, hs) * qu.view(B, 1, nh, hs)).sum(-1),
                            (qu * k).view(B, 1, nh, hs).sum(-1)], 1).transpose(1, 2)[:, :, None]  # (B, nh, 1, K+1)
        else:  # block-diagonal heads let one bmm read the strided cache
            qx = (qu.view(B, L, nh, 1, hs) * ctx["eye"]).view(B, L * nh, D)  # (B, L*nh, D)
            ac = torch.cat([torch.bmm(qx, kc.transpose(1, 2)).view(B, L, nh, K).transpose(1, 2),
                            _heads(qu, nh) @ _heads(k, nh).transpose(-1, -2)], -1)  # (B, nh, L, K+L)
        att = ((ac + bd) * hs**-0.5).masked_fill(ctx["hide"], float("-inf")).softmax(-1)  # (B, nh, L, K+L)
        if L == 1:
            p = att[:, :, 0].transpose(1, 2)[..., None]  # (B, K+1, nh, 1)
            o = (p[:, :K] * vc.view(B, K, nh, hs)).sum(1) + p[:, K] * v.view(B, nh, hs)  # (B, nh, hs)
        else:
            o = torch.bmm(att[..., :K].transpose(1, 2).reshape(B, L * nh, K), vc)  # (B, L*nh, D)
            o = o.view(B, L, nh, nh, hs).diagonal(dim1=2, dim2=3).transpose(2, 3)  # (B, L, nh, hs) own head
            o = o + (att[..., K:] @ _heads(v, nh)).transpose(1, 2)  # (B, L, nh, hs)
        h = self.norm_self(x + self.drop(self.self_o(o.reshape(B, L, D))))
        # (2) read the layer's memory, biased by the time since each slot's write
        h = self.norm_read(h + self.drop(self.read(h, *read, read_bias)))
        # (3) FFN
        h = self.norm_ffn(h + self.drop(self.ffn(h)))
        return h, k, v

    def read_fold(self, mem: Tensor) -> tuple[Tensor, Tensor]:
        """The read (2) of memory ``mem [B, M, D]`` folded into two ``[B, nh*M, D]`` tensors, so that a read costs
        two small matmuls per query and no ``D x D`` projection: with W_q,h, W_k,h, W_v,h head h's rows of the
        query/key/value projections and W_o,h its columns of the output projection,
            score_hj = (W_q,h x)·(W_k,h m_j)/√hs = x·rk_hj,    rk_hj = W_q,hᵀ W_k,h m_j / √hs
            out = b_o + Σ_h W_o,h Σ_j p_hj W_v,h m_j = b_o + Σ_hj p_hj rv_hj,    rv_hj = W_o,h W_v,h m_j
        Memory changes once per segment, so the step path keeps each memory tensor's fold (``ELMURMemory._fold``)."""
        B, M, D = mem.shape
        nh, hs = self.nh, D // self.nh
        km, vm = self.read_kv(mem).view(B, M, 2, nh, hs).unbind(2)  # (B, M, nh, hs) each
        rk = torch.einsum("bmhs,hsd->bhmd", km, self.read_q.weight.view(nh, hs, D)) * hs**-0.5
        rv = torch.einsum("bmhs,dhs->bhmd", vm, self.read_o.weight.view(D, nh, hs))
        return rk.reshape(B, nh * M, D), rv.reshape(B, nh * M, D)

    def read(self, h: Tensor, rk: Tensor, rv: Tensor, bias: Tensor) -> Tensor:
        """Read (2) before the residual: queries ``h [B, L, D]``, folded memory ``rk, rv [B, nh*M, D]``, relative-time
        bias ``[B, L, nh, M]`` -> ``[B, L, D]``."""
        B, L, _ = h.shape
        s = torch.bmm(h, rk.transpose(1, 2)).view(bias.shape) + bias  # (B, L, nh, M)
        return torch.baddbmm(self.read_o.bias, s.softmax(-1).view(B, L, -1), rv)  # (B, L, D)

    def candidates(self, mem: Tensor, seg: Tensor, write_bias: Tensor) -> Tensor:
        """Eqs. (4)-(5): ``mem [B, M, D]`` reads the segment's outputs ``seg [B, K, D]`` -> ũ ``[B, M, D]``."""
        B, Mq, D = mem.shape
        nh, hs = self.nh, D // self.nh
        wk, wv = self.write_kv.weight.view(2, nh, hs, D).unbind(0)  # (nh, hs, D): per-head key / value projections
        # the Mq slot queries are fewer than the K keys, so the projections are moved onto the queries:
        # q_h·(W_k,h s_j) = (W_k,hᵀ q_h)·s_j and Σ_j p_j W_v,h s_j = W_v,h Σ_j p_j s_j
        q = self.write_q(mem).view(B * Mq, nh, hs).transpose(0, 1)  # (nh, B*Mq, hs)
        qt = torch.bmm(q, wk).view(nh, B, Mq, D).transpose(0, 1).reshape(B, nh * Mq, D)  # (B, nh*Mq, D)
        s = torch.bmm(qt, seg.transpose(1, 2)).view(B, nh, Mq, -1) * hs**-0.5 + write_bias  # (B, nh, Mq, K)
        sbar = torch.bmm(s.softmax(-1).view(B, nh * Mq, -1), seg)  # (B, nh*Mq, D) Σ_j p_j s_j
        o = torch.bmm(sbar.view(B, nh, Mq, D).transpose(0, 1).reshape(nh, B * Mq, D), wv.transpose(1, 2))
        o = o.view(nh, B, Mq, hs).permute(1, 2, 0, 3).reshape(B, Mq, D)  # (B, Mq, D) heads merged
        a = self.write_o(o)
        if self.write_gain is not None:
            a = self.write_gain[0] * a
        u = self.norm_write(mem + self.drop(a))  # (4)
        f = self.mem_ffn(u)
        if self.write_gain is not None:
            f = self.write_gain[1] * f
        return self.norm_mem(u + self.drop(f))  # (5)


@register("elmur")
class ELMURMemory(Memory):
    """Args:
    input_size: width of the per-step input.
    d_model: model width (and output width).
    num_layers: decoder layers N, each with its own memory.
    num_heads: attention heads (self, read and write attention).
    num_slots: memory slots M per layer (the paper's ablation: success needs M >= segments per trajectory).
    segment_len: segment length K (the attention window), counted from the episode start.
    lam: LRU blend weight λ for writes into an occupied slot.
    sigma: std of the initial slots, drawn once at construction.
    dropout: dropout on residual branches (training only).
    ffn_mult: FFN hidden width = ffn_mult * d_model.
    max_rel_time: relative-time bias offsets are clamped to ±(max_rel_time - 1).
    lru: LRU write (paper Alg. 2); False replaces all slots every segment.
    lru_blend_empty: blend with λ into empty slots too (the authors' released behaviour) instead of replacing.
    read_dropout: training only: probability of hiding each slot but the most recently written one from a
        segment's reads (default 0, off). It makes the newest write carry what later steps need, which the
        short training trajectories do not otherwise demand (see ``experiment=elmur_tmaze``).
    write_scale: None (default, the paper): no scale. A float: learned per-channel gains (LayerScale, Touvron et
        al. 2021) on the write branches of (4) and (5), initialised to this value. A written slot is LayerNorm-ed
        (norm ~sqrt(D)) while an empty one is N(0, σ²): with σ << write_scale << 1 an empty slot is filled by the
        normalised write, while a blend into an occupied slot changes it little unless the gains are learned
        larger, so what a slot holds can outlive many LRU blends.
    """

    pos_sin: Tensor  # buffers
    mem0: Tensor

    def __init__(
        self,
        input_size: int,
        d_model: int = 128,
        num_layers: int = 2,
        num_heads: int = 2,
        num_slots: int = 2,
        segment_len: int = 10,
        lam: float = 0.79,
        sigma: float = 0.001,
        dropout: float = 0.0,
        ffn_mult: int = 4,
        max_rel_time: int = 1024,
        lru: bool = True,
        lru_blend_empty: bool = False,
        read_dropout: float = 0.0,
        write_scale: float | None = None,
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if d_model % 2:
            raise ValueError(f"d_model={d_model} must be even (sinusoidal positions)")
        self.d_model, self.num_layers, self.num_heads = d_model, num_layers, num_heads
        self.num_slots, self.segment_len, self.max_rel_time = num_slots, segment_len, max_rel_time
        self.lam, self.lru, self.lru_blend_empty = lam, lru, lru_blend_empty
        if not 0.0 <= read_dropout < 1.0:
            raise ValueError(f"read_dropout={read_dropout} must be in [0, 1)")
        self.read_dropout = read_dropout
        self.output_size = d_model

        self.in_proj = nn.Linear(input_size, d_model)
        self.layers = nn.ModuleList(ELMURLayer(d_model, num_heads, ffn_mult, dropout, write_scale)
                                    for _ in range(num_layers))
        hs = d_model // num_heads
        self.u = nn.Parameter(0.02 * torch.randn(num_heads, hs))  # Transformer-XL content bias (all layers)
        self.v = nn.Parameter(0.02 * torch.randn(num_heads, hs))  # Transformer-XL position bias (all layers)
        self.rel_bias = nn.Parameter(torch.randn(num_layers, 2 * max_rel_time - 1, num_heads))  # b_l(Δ)
        # Sinusoidal embedding R(d) of the in-segment distances d = 0..K-1 (Vaswani et al.; Transformer-XL)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model))
        ang = torch.arange(segment_len, dtype=torch.float64)[:, None] * inv_freq  # (K, D/2)
        self.register_buffer("pos_sin", torch.cat([ang.sin(), ang.cos()], -1).float(), persistent=False)
        # Initial slots N(0, σ²), drawn once so that initial_state is deterministic (see module docstring)
        self.register_buffer("mem0", sigma * torch.randn(num_layers, num_slots, d_model))

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        f = self._factory(device)
        N, M, K, D = self.num_layers, self.num_slots, self.segment_len, self.d_model
        cache = torch.zeros(batch_size, N, K, D, **f)
        return {
            "mem": self.mem0.to(**f).expand(batch_size, N, M, D).clone(),
            "anchor": torch.full((batch_size, N, M), -1, dtype=torch.long, device=f["device"]),
            "t": torch.zeros(batch_size, dtype=torch.long, device=f["device"]),
            "k": cache, "v": cache.clone(), "h": cache.clone(),
        }

    def essential(self, state: State) -> State:
        """The caches' positions below ``t mod K`` (the current segment's prefix) are all a state's future reads of
        them; the rest is blanked (a step may have written it in place)."""
        K = self.segment_len
        seen = torch.arange(K, device=state["t"].device) < (state["t"] % K)[:, None]  # (B, K)
        return {**state, **{n: state[n] * seen[:, None, :, None] for n in ("k", "v", "h")}}

    def _rel(self, offset: Tensor) -> Tensor:
        """Per-layer, per-head bias of integer time offsets ``[B, N, ...]`` -> ``[B, N, ..., nh]``."""
        R = self.max_rel_time
        idx = offset.clamp(-(R - 1), R - 1) + (R - 1)
        layer = torch.arange(self.num_layers, device=offset.device).view(1, -1, *([1] * (offset.dim() - 2)))
        return self.rel_bias[layer, idx]

    # ------------------------------------------------------------------ forward
    def forward(
        self, x: Tensor, state: State, episode_start: Tensor, *, need_state: bool = True
    ) -> tuple[Tensor, State | None]:
        B, T, _ = x.shape
        if T == 1 and not torch.is_grad_enabled():  # the rollout hot path (writes its fresh caches in place)
            return self._step(x, state, episode_start, need_state)
        D = self.d_model
        x = self.in_proj(x)  # (B, T, D)
        mem, anchor = state["mem"].to(x.dtype), state["anchor"].long()  # (B, N, M, D), (B, N, M)
        caches = {k: state[k].to(x.dtype) for k in ("k", "v", "h")}  # (B, N, K, D) each
        pieces, s_end, col = self._plan(state["t"].long(), episode_start)

        ys = []
        for i, p in enumerate(pieces):
            if p.reset is not None:
                mem, anchor = self._reset(p.reset, mem, anchor)
            xb = x if p.src is None else x.gather(1, p.src[..., None].expand(B, p.L, D))  # (B, L, D)
            y, new = self._tokens(xb, p, mem, anchor, caches)
            ys.append(y)
            if need_state or i < len(pieces) - 1:  # else nothing reads the caches or memory again
                caches = self._place(p, caches, new)
                if p.done is not None:
                    mem, anchor = self._write(p, mem, anchor, caches["h"])
        y = ys[0] if col is None else torch.cat(ys, 1).gather(1, col[..., None].expand(B, T, D))  # (B, T, D)
        if not need_state:
            return y, None
        return y, {"mem": mem, "anchor": anchor, "t": s_end + 1, **caches}

    def _step(self, x: Tensor, state: State, episode_start: Tensor, need_state: bool
              ) -> tuple[Tensor, State | None]:
        """One step (T=1) without autograd, the rollout and deployment hot path: the function of a one-step piece of
        ``forward`` with the per-step work flattened, and two savings:

        - the memory read is folded (``ELMURLayer.read_fold``) when the memory changes, at a write or a reset, and
          the fold is kept for that memory tensor (``_fold``), not recomputed every step;
        - the caches are written in place where no live state can read the position written (``_caches``), else
          into fresh copies.

        Under ``torch.compile``/``torch.export`` it is a pure function of its inputs (no kept fold, fresh caches).
        """
        h = self.in_proj(x[:, 0])  # (B, D)
        dt, dev = h.dtype, h.device
        t, mem, anchor = state["t"].long(), state["mem"].to(dt), state["anchor"].long()
        reset = episode_start[:, 0]
        tracing = torch.compiler.is_compiling()
        fast = cpu_fast_path(dev) and not tracing  # on CPU, skip work for rows that need none (an accelerator syncs)
        any_reset = not fast or bool(reset.any())
        kc, vc, hc = self._caches(state, dt, in_place=fast and not any_reset)
        key = None if tracing else self._read_key()
        rk, rv = self._fold(mem, key)  # (B, N, nh*M, D) each
        if any_reset:
            t = torch.where(reset, 0, t)
            mem, anchor = self._reset(reset, mem, anchor)
            rk0, rv0 = self._fold(self.mem0[None].to(dt), None)
            rk, rv = torch.where(reset[:, None, None, None], rk0, rk), torch.where(reset[:, None, None, None], rv0, rv)
        K = self.segment_len
        ph = t % K  # (B,) position of this step in its segment
        h, entries = self._step_layers(h, t, ph, anchor, rk, rv, kc, vc)  # entries (3, B, N, D)
        B, N = entries.shape[1:3]
        at = ((torch.arange(B, device=dev) * N)[:, None] + torch.arange(N, device=dev)) * K + ph[:, None]  # (B, N)
        for c, e in zip((kc, vc, hc), entries, strict=True):  # position ph of every layer's segment cache
            c.view(-1, c.shape[-1]).index_copy_(0, at.view(-1), e.reshape(B * N, -1))
        y = h[:, None]
        if not need_state:
            return y, None
        done = self._done_rows(ph == K - 1, fast)  # the rows whose segment completes write their memory
        if done is not None:
            piece = _Piece(None, 1, torch.ones_like(t), ph, t, None, done)
            if tracing:  # a graph runs the write only on steps where some row writes (an ONNX If)
                mem, anchor = torch.cond(done.any(), lambda m, a, c: self._write(piece, m, a, c),
                                         lambda m, a, c: (m.clone(), a.clone()), (mem, anchor, hc))
            else:
                mem, anchor = self._write(piece, mem, anchor, hc)
        if done is not None and key is not None:  # keep the fold of the new memory (a graph keeps none)
            if done.dtype == torch.bool:  # (a mask: every row's fold, the written rows' kept)
                rk1, rv1 = self._fold(mem, None)
                w = done[:, None, None, None]
                rk, rv = torch.where(w, rk1, rk), torch.where(w, rv1, rv)
            else:
                rk1, rv1 = self._fold(mem[done], None)
                rk, rv = rk.index_put((done,), rk1), rv.index_put((done,), rv1)
        if key is not None and (any_reset or done is not None):  # a new memory tensor: keep its fold
            _FOLDS[mem] = (weakref.ref(self), key, rk, rv)
        return y, {"mem": mem, "anchor": anchor, "t": t + 1, "k": kc, "v": vc, "h": hc}

    def _step_layers(self, h: Tensor, t: Tensor, ph: Tensor, anchor: Tensor, rk: Tensor, rv: Tensor, kc: Tensor,
                     vc: Tensor) -> tuple[Tensor, Tensor]:
        """Eqs. (1)-(3) of every layer for one step ``h [B, D]`` at step in episode ``t``, position ``ph`` in its
        segment, over the segment prefix cached in ``kc, vc [B, N, K, D]`` (positions < ph; read only). Returns the
        output and the step's cache entries ``[3, B, N, D]`` (keys, values, layer outputs), for position ``ph``."""
        B = h.shape[0]
        N, K, D, nh, R = self.num_layers, self.segment_len, self.d_model, self.num_heads, self.max_rel_time
        hs, dev = D // nh, h.device
        # cached keys j = 0..K-1 at distance ph - j; those at j >= ph are not of this segment's prefix (hidden)
        d = ph[:, None] - torch.arange(K, device=dev)  # (B, K)
        dist = (d.clamp(min=0)[:, :, None] + K * torch.arange(nh, device=dev)).view(B, K * nh)  # into bd (B, nh*K)
        hide = (d <= 0)[:, :, None]  # (B, K, 1)
        # relative-time read bias of every layer: (B, N, nh, M)
        off = (t[:, None, None] - anchor).clamp(-(R - 1), R - 1) + (R - 1)
        off = off + (2 * R - 1) * torch.arange(N, device=dev)[:, None]
        read_bias = self.rel_bias.view(-1, nh)[off].transpose(-1, -2)  # (B, N, nh, M)
        u, v_ = self.u.view(-1), self.v.view(-1)
        pos = self.pos_sin.to(h.dtype)
        scale = hs**-0.5
        new: list[list[Tensor]] = [[], [], []]
        for i, layer in enumerate(cast("Iterable[ELMURLayer]", self.layers)):
            # (1) relative self-attention over the segment prefix and this step
            q, k, v = F.linear(h, layer.qkv.weight).split(D, -1)  # (B, D) each
            r = layer.r_net(pos).view(K, nh, hs).transpose(0, 1)  # (nh, K, hs) W_r R(d)
            bd = torch.bmm((q + v_).view(B, nh, hs).transpose(0, 1), r.transpose(1, 2)).transpose(0, 1)  # (B, nh, K)
            bd_self = bd[:, :, 0]  # (B, nh) distance 0
            bd = bd.reshape(B, nh * K).gather(1, dist).view(B, K, nh)  # (B, K, nh) at cached key j
            qu = (q + u).view(B, 1, nh, hs)
            ac = (kc[:, i].view(B, K, nh, hs) * qu).sum(-1)  # (B, K, nh) (q+u)·k_j per head
            ac_self = (qu[:, 0] * k.view(B, nh, hs)).sum(-1)  # (B, nh)
            s = torch.cat([(ac + bd).masked_fill(hide, float("-inf")), (ac_self + bd_self)[:, None]], 1)
            att = (s * scale).softmax(1)[..., None]  # (B, K+1, nh, 1)
            o = (att[:, :K] * vc[:, i].view(B, K, nh, hs)).sum(1) + att[:, K] * v.view(B, nh, hs)  # (B, nh, hs)
            h = layer.norm_self(h + layer.drop(layer.self_o(o.reshape(B, D))))
            # (2) read the layer's memory through its fold
            h = layer.norm_read(h + layer.drop(layer.read(h[:, None], rk[:, i], rv[:, i], read_bias[:, i, None])[:, 0]))
            # (3) FFN
            h = layer.norm_ffn(h + layer.drop(layer.ffn(h)))
            for entries, e in zip(new, (k, v, h), strict=True):
                entries.append(e)
        return h, torch.stack([torch.stack(e, 1) for e in new])

    def _read_key(self) -> tuple[int, ...]:
        """The read weights' version counters, which every in-place update bumps (an optimiser step,
        ``load_state_dict``, ``p.copy_`` under ``no_grad``): a kept fold is valid while they are unchanged. An update
        through ``p.data`` bypasses them; after one, a step may read memory through the old weights until the next
        write."""
        return tuple(p._version for layer in cast("Iterable[ELMURLayer]", self.layers)
                     for p in (layer.read_q.weight, layer.read_kv.weight, layer.read_o.weight))

    def _fold(self, mem: Tensor, key: tuple | None) -> tuple[Tensor, Tensor]:
        """Every layer's read fold of ``mem [B, N, M, D]``: ``rk, rv [B, N, nh*M, D]``. With a ``key`` (the step
        path, outside tracing) the fold this module kept for ``mem`` under the same key is reused, else computed
        and kept."""
        kept = _FOLDS.get(mem) if key is not None else None
        if kept is not None and kept[0]() is self and kept[1] == key:
            return kept[2], kept[3]
        layers = cast("Iterable[ELMURLayer]", self.layers)
        rk, rv = (torch.stack(f, 1) for f in zip(*(layer.read_fold(mem[:, i]) for i, layer in enumerate(layers)),
                                                 strict=True))
        if key is not None:
            _FOLDS[mem] = (weakref.ref(self), key, rk, rv)
        return rk, rv

    def _caches(self, state: State, dt: torch.dtype, in_place: bool) -> tuple[Tensor, Tensor, Tensor]:
        """The caches a step writes: the state's own when ``in_place`` is allowed (CPU fast path, no reset this step),
        in inference mode on inference tensors (which autograd never saves), when nothing but the state dict refers
        to them (``_exposure``); else fresh copies. The step writes position ``t mod K`` of each row, which the state
        it continues never reads (its segment prefix lies below), so that state stays valid; any other holder might
        read it. A reset writes position 0, which the state may read: steps with resets copy."""
        if (in_place and torch.is_inference_mode_enabled() and state["h"].dtype == dt
                and all(state[n].is_inference() and state[n].is_contiguous() for n in ("k", "v", "h"))
                and _exposure(state) == _PRIVATE):
            return state["k"], state["v"], state["h"]
        kc, vc, hc = (state[n].to(dtype=dt, memory_format=torch.contiguous_format, copy=True) for n in ("k", "v", "h"))
        return kc, vc, hc

    def _plan(self, t0: Tensor, episode_start: Tensor) -> tuple[list[_Piece], Tensor, Tensor | None]:
        """Cut every row at segment boundaries and episode starts. Returns the pieces, the step in episode of
        each row's last step, and where each step's output lies in the concatenated piece outputs (None: the
        single piece is the whole call)."""
        B, T = episode_start.shape
        K = self.segment_len
        fast = cpu_fast_path(episode_start.device)  # CPU: skip rows and pieces that need no work (syncs)
        if T == 1:  # one piece
            reset = episode_start[:, 0]
            s = torch.where(reset, 0, t0)  # (B,) step in episode
            ph = s % K
            p = _Piece(None, 1, torch.ones_like(s), ph, s, reset if not fast or bool(reset.any()) else None,
                       self._done_rows(ph == K - 1, fast))
            return [p], s, None

        dev = episode_start.device
        ar = torch.arange(T, device=dev)
        last = torch.where(episode_start, ar, -1).cummax(1).values  # (B, T) latest episode start, -1 none
        s = torch.where(last >= 0, ar - last, t0[:, None] + ar)  # (B, T) step in episode
        first = (s % K == 0) | (ar == 0)  # (B, T) a piece starts here
        pid = first.long().cumsum(1) - 1  # (B, T) piece of each step; a row has at most T pieces
        start = torch.full((B, T + 1), T, device=dev).scatter(  # (B, T+1) first step of each piece; T: none
            1, torch.where(first, pid, T), torch.where(first, ar, T))  # (column T collects the non-starts)
        n = start[:, 1:] - start[:, :-1]  # (B, T) piece lengths, 0 where the row has no such piece
        st = start[:, :T].clamp(max=T - 1)
        s0 = s.gather(1, st)  # (B, T) step in episode of each piece's first step
        ph = s0 % K
        reset = episode_start.gather(1, st) & (n > 0)
        done = (n > 0) & (ph + n == K)
        # the one sync a call makes: piece lengths are tensor shapes (and which pieces reset or write)
        Ls, any_reset, any_done = torch.stack([n.max(0).values, reset.any(0), done.any(0)]).tolist()
        P = Ls.index(0) if 0 in Ls else T  # pieces are numbered from 0 in every row

        pieces = []
        for k in range(P):
            src = (st[:, k : k + 1] + torch.arange(Ls[k], device=dev)).clamp(max=T - 1)  # (B, L)
            pieces.append(_Piece(src, Ls[k], n[:, k], ph[:, k], s0[:, k], reset[:, k] if any_reset[k] else None,
                                 self._done_rows(done[:, k], fast) if any_done[k] else None))
        if P == 1:
            return pieces, s[:, -1], None
        offset = torch.tensor([0, *Ls[: P - 1]], device=dev).cumsum(0)  # (P,) where piece k's outputs start
        col = offset[pid] + ar - start.gather(1, pid)  # (B, T)
        return pieces, s[:, -1], col

    @staticmethod
    def _done_rows(done: Tensor, fast: bool) -> Tensor | None:
        """The rows that write (``done [B]`` bool): their indices on CPU (None if none), else the mask itself."""
        if not fast:
            return done
        rows = torch.nonzero(done).squeeze(1)
        return rows if rows.numel() else None

    def _reset(self, r: Tensor, mem: Tensor, anchor: Tensor) -> tuple[Tensor, Tensor]:
        """Rows ``r`` start an episode: initial slots, all empty. The caches need no reset: a segment only ever
        reads cache positions it has written itself (positions < t mod K)."""
        mem = torch.where(r[:, None, None, None], self.mem0.to(mem.dtype), mem)
        return mem, torch.where(r[:, None, None], -1, anchor)

    def _tokens(self, x: Tensor, p: _Piece, mem: Tensor, anchor: Tensor, caches: dict) -> tuple[Tensor, dict]:
        """Token track (1)-(3) of every layer on one piece ``x [B, L, D]``; returns the outputs and, per cache,
        the piece's entries stacked over layers ``[B, N, L, D]``."""
        B, L, D = x.shape
        K, nh = self.segment_len, self.num_heads
        arK, arL = torch.arange(K, device=x.device), torch.arange(L, device=x.device)
        # keys are [cached prefix, segment positions 0..K-1 | piece steps 0..L-1]; query i is at position ph+i
        dist = torch.cat([(p.ph[:, None, None] + arL[:, None]) - arK, (arL[:, None] - arL).expand(B, L, L)], -1)
        hide = torch.cat([(arK >= p.ph[:, None, None]).expand(B, L, K), (arL > arL[:, None]).expand(B, L, L)], -1)
        ctx = {
            "u": self.u.view(-1), "v": self.v.view(-1), "pos_sin": self.pos_sin.to(x.dtype),
            "eye": torch.eye(nh, dtype=x.dtype, device=x.device).view(nh, nh, 1),
            "dist": dist.clamp(0, K - 1)[:, None].expand(B, nh, L, K + L),  # (B, nh, L, K+L) distance i-j
            "hide": hide[:, None],  # (B, 1, L, K+L) prefix positions not written in this segment; future steps
        }
        times = p.s0[:, None] + arL  # (B, L) step in episode of each query
        read_bias = self._rel(times[:, None, :, None] - anchor[:, :, None, :])  # (B, N, L, M, nh)
        if self.training and self.read_dropout > 0:  # hide stale slots from this piece's reads, never the newest
            newest = torch.arange(anchor.shape[-1], device=x.device) == anchor.argmax(-1, keepdim=True)  # (B, N, M)
            keep = newest | (torch.rand(anchor.shape, device=x.device) >= self.read_dropout)
            read_bias = read_bias.masked_fill(~keep[:, :, None, :, None], float("-inf"))
        new: dict[str, list[Tensor]] = {"k": [], "v": [], "h": []}
        for i, layer in enumerate(cast("Iterable[ELMURLayer]", self.layers)):
            x, k, v = layer.tokens(x, caches["k"][:, i], caches["v"][:, i], layer.read_fold(mem[:, i]),
                                   read_bias[:, i].transpose(-1, -2), ctx)
            for name, val in (("k", k), ("v", v), ("h", x)):
                new[name].append(val)
        return x, {name: torch.stack(vals, 1) for name, vals in new.items()}

    def _place(self, p: _Piece, caches: dict, new: dict) -> dict:
        """Copies of the caches with the piece's entries ``new [B, N, L, D]`` at segment positions ph, ph+1, ..."""
        if p.L == 1:
            b_i = torch.arange(p.ph.shape[0], device=p.ph.device)
            out = {}
            for name, c in caches.items():
                c = c.clone()  # (B, N, K, D): a fresh tensor, the caller's state is never modified
                c[b_i, :, p.ph] = new[name][:, :, 0]  # (B, N, D)
                out[name] = c
            return out
        B, N, K, D = caches["h"].shape
        i = torch.arange(p.L, device=p.ph.device)
        pos = torch.where(i < p.n[:, None], p.ph[:, None] + i, K)  # (B, L) cache position; K: padding, dropped
        idx = pos[:, None, :, None].expand(B, N, p.L, D)
        # a fresh tensor per cache (the caller's state is never modified), one extra position for the padding
        return {name: torch.cat([c, c.new_zeros(B, N, 1, D)], 2).scatter(2, idx, new[name])[:, :, :K]
                for name, c in caches.items()}

    def _write(self, p: _Piece, mem: Tensor, anchor: Tensor, seg: Tensor) -> tuple[Tensor, Tensor]:
        """Memory track (4)-(6) of the rows ``p.done``, whose piece completed a segment; ``seg [B, N, K, D]`` holds
        the segment's layer outputs."""
        assert p.done is not None
        if p.done.dtype == torch.bool:  # a mask (sync-free path): every row computes the write, the done ones keep it
            new_m, new_a = self._write(p._replace(done=torch.arange(mem.shape[0], device=mem.device)), mem, anchor,
                                       seg)
            w = p.done
            return torch.where(w[:, None, None, None], new_m, mem), torch.where(w[:, None, None], new_a, anchor)
        rows = None if p.done.numel() == mem.shape[0] else p.done  # compute only the rows that write
        m, a, t_end = mem, anchor, p.s0 + p.n - 1  # t_end: step in episode of the segment's last step = anchor
        if rows is not None:
            m, a, seg, t_end = mem[rows], anchor[rows], seg[rows], t_end[rows]
        K = self.segment_len
        layers = cast("Iterable[ELMURLayer]", self.layers)  # (an nn.ModuleList is typed as holding plain Modules)
        times = t_end[:, None] - (K - 1) + torch.arange(K, device=m.device)  # (R, K) the segment's steps
        now = t_end[:, None, None]
        if not self.lru:  # rewrite every slot
            write_bias = self._rel(a[..., None] - times[:, None, None, :])  # (R, N, M, K, nh)
            new_m = torch.stack([layer.candidates(m[:, i], seg[:, i], write_bias[:, i].permute(0, 3, 1, 2))
                                 for i, layer in enumerate(layers)], 1)  # (R, N, M, D) ũ
            return self._put(rows, mem, anchor, new_m, now.expand_as(a))
        # (6) paper Alg. 2: one slot per layer is written; slots attend independently in (4)-(5), so only that
        # slot's candidate is computed
        # the first empty slot (anchor -1, below every write time) if any, else the least recently written: the
        # first minimal anchor (argmin returns the first minimum)
        j = a.argmin(-1, keepdim=True)  # (R, N, 1) the written slot
        slot = torch.arange(a.shape[-1], device=a.device) == j  # (R, N, M) one-hot
        m_j, a_j = m.gather(2, j[..., None].expand(*j.shape, m.shape[-1])), a.gather(2, j)  # (R, N, 1, D), (R, N, 1)
        write_bias = self._rel(a_j[..., None] - times[:, None, None, :])  # (R, N, 1, K, nh)
        cand = torch.stack([layer.candidates(m_j[:, i], seg[:, i], write_bias[:, i].permute(0, 3, 1, 2))
                            for i, layer in enumerate(layers)], 1)  # (R, N, 1, D) ũ of the written slot
        blend = self.lam * cand + (1.0 - self.lam) * m_j
        fill = blend if self.lru_blend_empty else cand
        new_m = torch.where(slot[..., None], torch.where(a_j[..., None] < 0, fill, blend), m)
        return self._put(rows, mem, anchor, new_m, torch.where(slot, now, a))

    @staticmethod
    def _put(rows: Tensor | None, mem: Tensor, anchor: Tensor, new_m: Tensor, new_a: Tensor) -> tuple[Tensor, Tensor]:
        """The memory with rows ``rows`` (None: all) replaced."""
        if rows is None:
            return new_m, new_a
        return mem.index_put((rows,), new_m), anchor.index_put((rows,), new_a)
