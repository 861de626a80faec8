"""xLSTM memory (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", NeurIPS, arXiv:2405.04517) on the
``xlstm`` package's blocks: a residual stack of mLSTM (matrix memory, covariance update) and sLSTM (scalar
memory, exponential gating, recurrent heads) blocks.

    x_t = W_in u_t;  per block b: x_t <- x_t + Layer_b(LN(x_t); state_b) (+ gated FFN for sLSTM blocks);  y_t = LN(x_t)
    mLSTM (paper eqs. 19-27, per head): m_t = max(log σ(f̃_t) + m_{t-1}, ĩ_t);  f' = exp(log σ(f̃_t) + m_{t-1} - m_t),
        i' = exp(ĩ_t - m_t);  C_t = f' C_{t-1} + i' v_t k_tᵀ;  n_t = f' n_{t-1} + i' k_t;
        h̃_t = C_t q_t / max(|n_tᵀ q_t|, exp(-m_t))
    sLSTM (eqs. 8-17): c_t = f c_{t-1} + i z_t, n_t = f n_{t-1} + i, h_t = o c_t / n_t, with exponential input
        gates stabilised by m_t, and recurrent (block-diagonal, per head) gate inputs.

How the package is used (its pitfalls on this machine are in DESIGN.md). The stack's parallel forward cannot start
from a given state, so:
- A sequence (T > 1, training) runs each block over the whole call (``_sequence``): projections, norms and FFNs over
  all steps; the causal convs with windows cut at episode starts; the mLSTM recurrence in chunkwise form (as
  ``mlstm_kernels``' chunkwise kernels) with the decay cut at episode starts (:func:`_mlstm_chunkwise`: exact, where
  the kernels could only reset through a forget gate of -1e4, inexact in float32, or padded reset-free spans); the
  sLSTM recurrence as one loop over steps with one ``[B, H] @ [H, 4H]`` matmul each, zeroing a row's state where
  its episode starts.
- A single step (T = 1: rollouts, deployment) runs the blocks' ``step`` (``_steps``).
  Both are exact from any carried state (the contract suite compares every split of a sequence). Resets zero a
  row's state (the package's initial state is all zeros) before the step that starts the episode.
- The step functions update the causal-conv state in place, so every step gets fresh copies: the caller's state
  is never touched.
- sLSTM backend: "vanilla" (pure torch) on CPU, the package's CUDA kernels (compiled on first use, run in float32
  here; the package's default is bfloat16) when the policy is built for a CUDA device (``slstm_backend``).
- The vanilla sLSTM's pointwise step branches on ``if torch.all(n == 0)`` (a host sync every step on an
  accelerator); :func:`_slstm_pointwise` computes the same values with ``torch.where`` and replaces it per cell.

State (batch-first, fixed size): per mLSTM block ``b{i}_c [B, NH, DH, DH]``, ``b{i}_n [B, NH, DH, 1]``,
``b{i}_m [B, NH, 1, 1]``, ``b{i}_conv [B, KS, D_inner]``; per sLSTM block ``b{i}_s [B, 4, D]``, ``b{i}_conv``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rlmem.memory.base import Memory, State, register

CHUNK = 16  # steps per chunk of the chunkwise mLSTM (sequences are padded to a multiple of it)


@register("xlstm")
class XLSTMMemory(Memory):
    """Args:
    input_size: width of the per-step input.
    d_model: embedding width of the stack (and output width).
    num_blocks: blocks in the stack.
    slstm_at: indices of the sLSTM blocks (the others are mLSTM); "all" for sLSTM only.
    num_heads: heads of the mLSTM and sLSTM layers.
    conv_kernel: causal-conv kernel size inside the layers (0: none in sLSTM; the mLSTM needs >= 1).
    mlstm_proj_factor: up-projection factor of the mLSTM layers.
    slstm_ffn_factor: up-projection factor of the gated FFN after each sLSTM layer.
    slstm_backend: "auto" (CUDA kernels when ``device`` is a CUDA device, else "vanilla"), "vanilla" or "cuda".
    dropout: dropout inside the blocks (training only).
    device: where the memory will run (the policy passes its device), for ``slstm_backend="auto"``.
    """

    def __init__(self, input_size: int, d_model: int = 128, num_blocks: int = 2, slstm_at: Sequence[int] | str = (1,),
                 num_heads: int = 4, conv_kernel: int = 4, mlstm_proj_factor: float = 2.0,
                 slstm_ffn_factor: float = 1.3, slstm_backend: str = "auto", dropout: float = 0.0,
                 device: torch.device | str | None = None):
        super().__init__()
        from xlstm import (
            FeedForwardConfig,
            mLSTMBlockConfig,
            mLSTMLayerConfig,
            sLSTMBlockConfig,
            sLSTMLayerConfig,
            xLSTMBlockStack,
            xLSTMBlockStackConfig,
        )

        slstm_at = list(range(num_blocks)) if slstm_at == "all" else [int(i) for i in slstm_at]
        if any(not 0 <= i < num_blocks for i in slstm_at):
            raise ValueError(f"slstm_at={slstm_at} must index blocks 0..{num_blocks - 1}")
        if slstm_backend == "auto":
            on_gpu = device is not None and torch.device(device).type == "cuda"
            slstm_backend = "cuda" if on_gpu and torch.cuda.is_available() else "vanilla"
        if slstm_backend not in ("vanilla", "cuda"):
            raise ValueError(f"slstm_backend={slstm_backend!r}: expected auto, vanilla or cuda")
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if len(slstm_at) < num_blocks and conv_kernel < 1:
            raise ValueError("mLSTM blocks need conv_kernel >= 1")
        cfg = xLSTMBlockStackConfig(
            mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(
                conv1d_kernel_size=conv_kernel, num_heads=num_heads, proj_factor=mlstm_proj_factor)),
            slstm_block=sLSTMBlockConfig(
                slstm=sLSTMLayerConfig(backend=slstm_backend, num_heads=num_heads, conv1d_kernel_size=conv_kernel,
                                       dtype="float32"),  # (the CUDA kernel's default is bfloat16)
                feedforward=FeedForwardConfig(proj_factor=slstm_ffn_factor, act_fn="gelu")),
            context_length=1,  # the parallel forward (and its causal-mask buffer) is never used
            num_blocks=num_blocks, embedding_dim=d_model, slstm_at=slstm_at, dropout=dropout)
        self.in_proj = nn.Linear(input_size, d_model)
        self.stack = xLSTMBlockStack(cfg)
        for cell in self.stack.modules():  # the vanilla sLSTM cells: the same step without a host sync
            if getattr(getattr(cell, "config", None), "function", None) == "slstm" and hasattr(cell, "pointwise"):
                cell.pointwise = _slstm_pointwise
                cell._impl = functools.partial(_slstm_impl, cell)  # the recurrence with one matmul per step
        self._vanilla = slstm_backend == "vanilla"
        self.output_size = d_model
        self.kinds = ["s" if i in slstm_at else "m" for i in range(num_blocks)]
        self._shapes = self._state_shapes(cfg)

    def _state_shapes(self, cfg) -> dict[str, tuple[int, ...]]:
        """Per-row shape of every state tensor."""
        shapes: dict[str, tuple[int, ...]] = {}
        D = cfg.embedding_dim
        for i, kind in enumerate(self.kinds):
            layer = self.stack.blocks[i].xlstm
            if kind == "m":
                nh = layer.config.num_heads
                di = layer.config._inner_embedding_dim
                dh = di // nh
                shapes |= {f"b{i}_c": (nh, dh, dh), f"b{i}_n": (nh, dh, 1), f"b{i}_m": (nh, 1, 1),
                           f"b{i}_conv": (layer.config.conv1d_kernel_size, di)}
            else:
                shapes[f"b{i}_s"] = (layer.config.num_states, D)
                if layer.config.conv1d_kernel_size > 0:
                    shapes[f"b{i}_conv"] = (layer.config.conv1d_kernel_size, D)
        return shapes

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        f = self._factory(device)
        return {k: torch.zeros(batch_size, *s, **f) for k, s in self._shapes.items()}

    def forward(self, x: Tensor, state: State, episode_start: Tensor, *, need_state: bool = True
                ) -> tuple[Tensor, State | None]:
        h = self.in_proj(x)  # (B, T, D)
        st = {k: v.to(h.dtype) for k, v in state.items()}
        # single steps (rollouts, deployment) and the package's CUDA sLSTM kernels (their own weight layout) go
        # through the blocks' own step
        if x.shape[1] == 1 or not self._vanilla:
            return self._steps(h, st, episode_start, need_state)
        return self._sequence(h, st, episode_start, need_state)

    # -- sequences: whole-sequence layers, resets inside -----------------------------------------------------

    def _sequence(self, h: Tensor, st: State, episode_start: Tensor, need_state: bool
                  ) -> tuple[Tensor, State | None]:
        """Every block over the whole ``[B, T]`` call at once: projections, FFNs and norms over all steps; the
        causal convs with windows cut at episode starts; the sLSTM recurrence as one loop over steps that zeroes
        a row's state where its episode starts; the mLSTM recurrence in chunkwise form with the decay cut at
        episode starts (:func:`_mlstm_chunkwise`)."""
        B, T, D = h.shape
        ep = torch.cumsum(episode_start.long(), dim=1)  # (B, T) episode index of each step; 0: the carried one
        new: State = {}
        for i, kind in enumerate(self.kinds):
            block = self.stack.blocks[i]
            layer_in = block.xlstm_norm(h)
            if kind == "m":
                y, block_state = self._mlstm(block.xlstm, layer_in, st, i, episode_start, ep)
            else:
                y, block_state = self._slstm(block.xlstm, layer_in, st, i, episode_start, ep)
            h = h + y
            if block.ffn is not None:
                h = h + block.ffn(block.ffn_norm(h))
            new |= block_state
        return self.stack.post_blocks_norm(h), (new if need_state else None)

    @staticmethod
    def _conv(conv: nn.Conv1d, x: Tensor, conv0: Tensor, ep: Tensor) -> tuple[Tensor, Tensor]:
        """``CausalConv1d.step`` over a sequence: output ``t`` is the kernel over the ``KS`` latest inputs of its
        episode (earlier ones are the zeros a reset leaves; before the first reset, the carried state's). Returns
        the outputs and the state after the last step (its episode's ``KS`` latest inputs)."""
        B, T, C = x.shape
        ks = conv0.shape[1]
        history = torch.cat((conv0, x), dim=1)  # (B, KS + T, C)
        hist_ep = torch.cat((ep.new_zeros(B, ks), ep), dim=1)  # (B, KS + T)
        windows = history.unfold(1, ks, 1)[:, 1:]  # (B, T, C, KS): history[t + 1 .. t + KS]
        same = (hist_ep.unfold(1, ks, 1)[:, 1:] == ep.unsqueeze(-1)).to(x.dtype)  # (B, T, KS)
        y = torch.einsum("btck,btk,ck->btc", windows, same, conv.weight[:, 0, :])
        if conv.bias is not None:
            y = y + conv.bias
        last = (hist_ep[:, T:] == ep[:, -1:]).to(x.dtype).unsqueeze(-1)  # (B, KS, 1)
        return y, history[:, T:] * last

    def _mlstm(self, layer: Any, x: Tensor, st: State, i: int, episode_start: Tensor, ep: Tensor
               ) -> tuple[Tensor, State]:
        """``mLSTMLayer.step`` over the whole call (the package's layer has no sequence path from a state)."""
        B, T, _ = x.shape
        cell = layer.mlstm_cell
        nh = cell.config.num_heads
        x_mlstm, z = torch.split(layer.proj_up(x), layer.config._inner_embedding_dim, dim=-1)
        conv, conv_state = self._conv(layer.conv1d.conv, x_mlstm, st[f"b{i}_conv"], ep)
        a = layer.conv_act_fn(conv)
        q, k, v = layer.q_proj(a), layer.k_proj(a), layer.v_proj(x_mlstm)  # (B, T, DI)
        gates = torch.cat((q, k, v), dim=-1)
        dh = q.shape[-1] // nh
        k = k / math.sqrt(dh)  # the step's scaling: k / sqrt(DH), q unscaled

        def heads(t: Tensor) -> Tensor:
            return t.view(B, T, nh, dh).transpose(1, 2)  # (B, NH, T, DH)

        hs, (c, n, m) = _mlstm_chunkwise(
            heads(q), heads(k), heads(v), cell.igate(gates).transpose(1, 2), cell.fgate(gates).transpose(1, 2),
            st[f"b{i}_c"], st[f"b{i}_n"].squeeze(-1), st[f"b{i}_m"].view(B, nh), episode_start)
        hs = cell.outnorm(hs).transpose(1, 2).reshape(B, T, -1)  # (B, NH, T, DH) -> (B, T, DI)
        y = layer.dropout(layer.proj_down((hs + layer.learnable_skip * a) * layer.ogate_act_fn(z)))
        state = {f"b{i}_c": c, f"b{i}_n": n.unsqueeze(-1), f"b{i}_m": m.view(B, nh, 1, 1), f"b{i}_conv": conv_state}
        return y, state

    def _slstm(self, layer: Any, x: Tensor, st: State, i: int, episode_start: Tensor, ep: Tensor
               ) -> tuple[Tensor, State]:
        """``sLSTMLayer.step`` over the whole call: gate inputs for all steps at once, then the recurrence."""
        B, T, _ = x.shape
        new: State = {}
        if f"b{i}_conv" in st:
            conv, new[f"b{i}_conv"] = self._conv(layer.conv1d.conv, x, st[f"b{i}_conv"], ep)
            xc = layer.conv_act_fn(conv)
        else:
            xc = x
        gates = torch.cat((layer.fgate(xc), layer.igate(xc), layer.zgate(x), layer.ogate(x)), dim=-1)  # (as step)
        cell = layer.slstm_cell
        states = _slstm_recurrence(cell, cell._permute_input(gates), st[f"b{i}_s"].transpose(0, 1), episode_start)
        y = layer.dropout(cell._permute_output(states[0][1:]).to(x.dtype))  # states: (NS, T + 1, B, H)
        new[f"b{i}_s"] = states[:, -1].transpose(0, 1)
        return layer.group_norm(y).transpose(1, 2).reshape(B, T, -1), new

    # -- single steps ------------------------------------------------------------------------------------

    def _steps(self, h: Tensor, st: State, episode_start: Tensor, need_state: bool) -> tuple[Tensor, State | None]:
        """The blocks' ``step``, one time step at a time (exact from any state, resets between steps)."""
        T = h.shape[1]
        ys = []
        for t in range(T):
            keep = (~episode_start[:, t]).to(h.dtype)  # (B,) 0 where an episode starts: the zero state
            pkg: dict[str, dict[str, Any]] = {}
            for i, kind in enumerate(self.kinds):
                def z(name: str, i: int = i, keep: Tensor = keep) -> Tensor:
                    v = st[f"b{i}_{name}"]
                    return v * keep.view(-1, *([1] * (v.dim() - 1)))  # a fresh tensor: safe to update in place

                conv = (z("conv"),) if f"b{i}_conv" in st else None
                if kind == "m":
                    pkg[f"block_{i}"] = {"mlstm_state": (z("c"), z("n"), z("m")), "conv_state": conv}
                else:
                    pkg[f"block_{i}"] = {"slstm_state": z("s").transpose(0, 1).contiguous(), "conv_state": conv}
            y, pkg = self.stack.step(h[:, t : t + 1], pkg)  # (B, 1, D)
            ys.append(y)
            for i, kind in enumerate(self.kinds):
                b = pkg[f"block_{i}"]
                if kind == "m":
                    st[f"b{i}_c"], st[f"b{i}_n"], st[f"b{i}_m"] = b["mlstm_state"]
                else:
                    st[f"b{i}_s"] = b["slstm_state"].transpose(0, 1)  # (4, B, D) -> (B, 4, D)
                if f"b{i}_conv" in st:
                    st[f"b{i}_conv"] = b["conv_state"][0]
        y = torch.cat(ys, 1)
        return y, (st if need_state else None)


def _mlstm_chunkwise(q: Tensor, k: Tensor, v: Tensor, ig: Tensor, fg: Tensor, C: Tensor, n: Tensor, m: Tensor,
                     episode_start: Tensor, chunk: int = CHUNK, eps: float = 1e-6
                     ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """The stabilised mLSTM recurrence (the package's ``recurrent_step_stabilized_simple``, paper eqs. 19-27) over
    ``[B, NH, T, DH]`` in chunkwise form (as ``mlstm_kernels``' chunkwise kernels: a parallel form inside chunks of
    ``chunk`` steps, the state carried between them), with a row's state zeroed before each step where its episode
    starts. ``k`` is already scaled by 1/sqrt(DH); ``ig``, ``fg`` ``[B, NH, T]`` are the gate pre-activations;
    ``(C [B, NH, DH, DH], n [B, NH, DH], m [B, NH])`` the carried state. Returns ``h [B, NH, T, DH]`` and the state
    after the last step.

    Unrolling ``m_t = max(log σ(f̃_t) + m_{t-1}, ĩ_t)`` from the chunk's start gives, for step ``t`` and an earlier
    step ``s`` of the same episode, the log-weight ``D[t, s] = Σ_{r=s+1..t} log σ(f̃_r) + ĩ_s``, and for the state
    before (carried, or after a reset the zero state whose ``m`` is 0) ``g_t = Σ log σ(f̃_r) + m``; then
    ``m_t = max(max_s D[t, s], g_t)``, ``C_t = Σ_s e^{D[t,s] - m_t} k_s v_sᵀ + e^{g_t - m_t} C`` (C only if no reset
    came between) and likewise ``n_t``. Cutting ``D`` at episode starts makes resets exact; ``mlstm_kernels`` can
    only emulate them with a forget gate of -1e4 (off by 6.6e-3 in float32) or run reset-free spans padded to the
    longest (64 rows x 32 steps with an episode start per 20 steps became 156 spans of 32: 2.4x the steps), which is
    why this form is written here."""
    B, NH, T, DH = q.shape
    pad = (-T) % chunk
    if pad:  # padded steps add nothing (input gate -1e4) and forget nothing (forget gate +1e4): the state is kept
        q, k, v = (nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        ig, fg = nn.functional.pad(ig, (0, pad), value=-1e4), nn.functional.pad(fg, (0, pad), value=1e4)
        episode_start = nn.functional.pad(episode_start, (0, pad), value=False)
    idx = torch.arange(chunk, device=q.device)
    causal = idx.view(-1, 1) >= idx.view(1, -1)  # (L, L): t >= s
    hs = []
    for c0 in range(0, T + pad, chunk):
        part = slice(c0, c0 + chunk)
        qc, kc, vc, ic = q[:, :, part], k[:, :, part], v[:, :, part], ig[:, :, part]
        lf = nn.functional.logsigmoid(fg[:, :, part])  # (B, NH, L)
        starts = episode_start[:, part]  # (B, L)
        cum = torch.cumsum(lf, dim=-1)  # (B, NH, L)
        episode = torch.cumsum(starts.long(), dim=1)  # (B, L): episode starts in the chunk up to t
        same = (episode.unsqueeze(2) == episode.unsqueeze(1)) & causal  # (B, L, L)
        D = (cum.unsqueeze(-1) - cum.unsqueeze(-2) + ic.unsqueeze(-2)).masked_fill(~same.unsqueeze(1), -math.inf)
        last_start = torch.cummax(torch.where(starts, idx, -1), dim=1).values  # (B, L), -1: none in the chunk yet
        carried = (last_start < 0).unsqueeze(1)  # (B, 1, L)
        before = (cum - lf).gather(-1, last_start.clamp(min=0).unsqueeze(1).expand(-1, NH, -1))  # Σ up to tau - 1
        g = torch.where(carried, cum + m.unsqueeze(-1), cum - before)  # (B, NH, L)
        mt = torch.maximum(D.amax(-1), g)  # (B, NH, L)
        W = torch.exp(D - mt.unsqueeze(-1))  # (B, NH, L, L)
        a = torch.exp(g - mt) * carried  # (B, NH, L): weight of the carried state
        WS = W * (qc @ kc.transpose(-1, -2))  # (B, NH, L, L)
        num = WS @ vc + a.unsqueeze(-1) * (qc @ C)  # (B, NH, L, DH)
        den = WS.sum(-1) + a * (qc @ n.unsqueeze(-1)).squeeze(-1)  # (B, NH, L): q_t . n_t
        hs.append(num / (torch.maximum(den.abs(), torch.exp(-mt)) + eps).unsqueeze(-1))
        w_end, a_end = W[:, :, -1].unsqueeze(-1), a[:, :, -1]  # the chunk's last step
        C = (kc * w_end).transpose(-1, -2) @ vc + a_end[..., None, None] * C
        n = (kc * w_end).sum(-2) + a_end.unsqueeze(-1) * n
        m = mt[:, :, -1]
    return torch.cat(hs, dim=2)[:, :, :T], (C, n, m)


def _slstm_recurrence(cell: Any, x: Tensor, states: Tensor, episode_start: Tensor | None = None) -> Tensor:
    """The vanilla sLSTM recurrence (the package's ``slstm_forward``) over ``x [T, B, 4H]`` from ``states
    [NS, B, H]``, zeroing a row's states before a step where its episode starts. Returns every state,
    ``[NS, T + 1, B, H]`` (index 0: the initial one).

    The package multiplies ``[B, NH, 1, DH]`` by a broadcast ``[1, NH, DH, 4 DH]`` (one tiny matmul per row and
    head: 8 ms a step at 165 rows here) and transposes the result; here it is one ``[B, H] @ [H, 4H]`` matmul with
    the heads' blocks on the diagonal (the zeros cost less than the copies)."""
    R, b = cell._recurrent_kernel, cell._bias  # (NH, G DH, DH), bias
    nh, dh = R.shape[0], R.shape[2]
    gates_r = R.shape[1] // dh
    # The per-head recurrent matrices as one block-diagonal (H, G H) matrix whose columns come out in the
    # package's gate order (g, head, e): one matmul per step, no per-step transposes.
    eye = torch.eye(nh, dtype=R.dtype, device=R.device)
    r_full = torch.einsum("hged,hk->hdgke", R.view(nh, gates_r, dh, dh), eye).reshape(nh * dh, gates_r * nh * dh)
    B = x.shape[1]
    cur = tuple(states.unbind(0))  # (y, c, n, m), each (B, H): kept apart, stacked once at the end
    out = [cur]
    for t, wx in enumerate(x.unbind(0)):
        if episode_start is not None:
            keep = (~episode_start[:, t]).to(states.dtype).view(B, 1)
            cur = tuple(v * keep for v in cur)
        cur = _slstm_cell(wx + cur[0] @ r_full + b, *cur)[0]
        out.append(cur)
    return torch.stack([torch.stack(v, dim=0) for v in zip(*out, strict=True)], dim=0)  # (NS, T + 1, B, H)


def _slstm_impl(cell: Any, training: bool, x: Tensor, state: Tensor) -> Tensor:
    """Stands in for the vanilla cell's ``_impl`` (same inputs and result)."""
    return _slstm_recurrence(cell, x, state)


def _slstm_pointwise(Wx: Tensor, Ry: Tensor, b: Tensor, states: Tensor, constants: dict[str, float]
                     ) -> tuple[Tensor, Tensor]:
    """The sLSTM pointwise step with the package's vanilla ``slstm_forward_pointwise`` signature: ``Wx``, ``Ry``
    ``[B, 4H]`` (gate pre-activations from the input and the recurrence), ``b`` ``[1, 4H]``, ``states`` ``[4, B, H]``
    (y, c, n, m) -> new states and gates, ``[4, B, H]`` each."""
    new, gates = _slstm_cell(Wx + Ry + b, *states.view(4, states.shape[1], -1).unbind(0))
    return torch.stack(new, dim=0), torch.stack(gates, dim=0)


def _slstm_cell(raw: Tensor, y: Tensor, c: Tensor, n: Tensor, m: Tensor
                ) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]:
    """sLSTM paper eqs. 8-17 (stabilised), as the package's vanilla pointwise step computes them, with its
    ``if torch.all(n == 0)`` branch as a ``torch.where`` (no host sync). ``raw`` ``[B, 4H]``: the gate
    pre-activations; returns the new (y, c, n, m) and the gates (i', f', z, o)."""
    iraw, fraw, zraw, oraw = torch.unbind(raw.view(raw.shape[0], 4, -1), dim=1)
    logfplusm = m + nn.functional.logsigmoid(fraw)
    mnew = torch.where(torch.all(n == 0.0), iraw, torch.max(iraw, logfplusm))  # m_t (eq. 15)
    ogate = torch.sigmoid(oraw)
    igate = torch.minimum(torch.exp(iraw - mnew), torch.ones_like(iraw))  # i'_t (eq. 16)
    fgate = torch.minimum(torch.exp(logfplusm - mnew), torch.ones_like(iraw))  # f'_t (eq. 17)
    cnew = fgate * c + igate * torch.tanh(zraw)  # c_t (eq. 8)
    nnew = fgate * n + igate  # n_t (eq. 9)
    ynew = ogate * cnew / nnew  # h_t (eq. 10)
    return (ynew, cnew, nnew, mnew), (igate, fgate, zraw, ogate)
