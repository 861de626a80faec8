"""xLSTM memory (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", NeurIPS, arXiv:2405.04517) on the
``xlstm`` package's blocks: a residual stack of mLSTM (matrix memory, covariance update) and sLSTM (scalar
memory, exponential gating, recurrent heads) blocks.

    x_t = W_in u_t;  per block b: x_t <- x_t + Layer_b(LN(x_t); state_b) (+ gated FFN for sLSTM blocks);  y_t = LN(x_t)
    mLSTM (paper eqs. 19-27, per head): m_t = max(log σ(f̃_t) + m_{t-1}, ĩ_t);  f' = exp(log σ(f̃_t) + m_{t-1} - m_t),
        i' = exp(ĩ_t - m_t);  C_t = f' C_{t-1} + i' v_t k_tᵀ;  n_t = f' n_{t-1} + i' k_t;
        h̃_t = C_t q_t / max(|n_tᵀ q_t|, exp(-m_t))
    sLSTM (eqs. 8-17): c_t = f c_{t-1} + i z_t, n_t = f n_{t-1} + i, h_t = o c_t / n_t, with exponential input
        gates stabilised by m_t, and recurrent (block-diagonal, per head) gate inputs.

How the package is used (its pitfalls on this machine are in DESIGN.md):
- Every call runs the blocks' ``step`` one time step at a time, so a state carried across calls and resets inside
  a call are exact: the stack's parallel forward cannot start from a given state. Resets zero a row's state
  (the package's initial state is all zeros) before the step that starts the episode.
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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rlmem.memory.base import Memory, State, register


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
        B, T, _ = x.shape
        h = self.in_proj(x)  # (B, T, D)
        st = {k: v.to(h.dtype) for k, v in state.items()}
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


def _slstm_pointwise(Wx: Tensor, Ry: Tensor, b: Tensor, states: Tensor, constants: dict[str, float]
                     ) -> tuple[Tensor, Tensor]:
    """The sLSTM pointwise step (paper eqs. 8-17, stabilised), as the package's vanilla
    ``slstm_forward_pointwise`` computes it, with its ``if torch.all(n == 0)`` branch as a ``torch.where``.

    ``Wx``, ``Ry`` ``[B, 4H]`` (gate pre-activations from the input and the recurrence), ``b`` ``[1, 4H]``,
    ``states`` ``[4, B, H]`` (y, c, n, m) -> new states ``[4, B, H]`` and gates ``[4, B, H]``."""
    raw = Wx + Ry + b
    y, c, n, m = torch.unbind(states.view(4, states.shape[1], -1), dim=0)
    iraw, fraw, zraw, oraw = torch.unbind(raw.view(raw.shape[0], 4, -1), dim=1)
    logfplusm = m + nn.functional.logsigmoid(fraw)
    mnew = torch.where(torch.all(n == 0.0), iraw, torch.max(iraw, logfplusm))  # m_t (eq. 15)
    ogate = torch.sigmoid(oraw)
    igate = torch.minimum(torch.exp(iraw - mnew), torch.ones_like(iraw))  # i'_t (eq. 16)
    fgate = torch.minimum(torch.exp(logfplusm - mnew), torch.ones_like(iraw))  # f'_t (eq. 17)
    cnew = fgate * c + igate * torch.tanh(zraw)  # c_t (eq. 8)
    nnew = fgate * n + igate  # n_t (eq. 9)
    ynew = ogate * cnew / nnew  # h_t (eq. 10)
    return torch.stack((ynew, cnew, nnew, mnew), dim=0), torch.stack((igate, fgate, zraw, ogate), dim=0)
