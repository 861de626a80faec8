"""xLSTM through the xlstm package: our step-wise, state-carrying run computes the package's own model."""

from __future__ import annotations

import pytest
import torch

from rlmem.memory import build


@pytest.mark.parametrize("slstm_at", [[], [1], "all"], ids=["mlstm", "mixed", "slstm"])
def test_matches_the_packages_parallel_forward(slstm_at):
    torch.manual_seed(0)
    mem = build("xlstm", 5, d_model=16, num_blocks=2, slstm_at=slstm_at, num_heads=2).double().eval()
    x = torch.randn(3, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for block in mem.stack.blocks:  # the parallel form needs a causal mask as long as the sequence
        cell = getattr(block.xlstm, "mlstm_cell", None)
        if cell is not None:
            cell.causal_mask = torch.ones(6, 6, dtype=torch.bool).tril()
    with torch.no_grad():
        parallel = mem.stack(mem.in_proj(x))  # from the zero state, no resets
        ours, _ = mem(x, mem.initial_state(3), torch.zeros(3, 6, dtype=torch.bool))
    # the package's parallel and recurrent forms differ only by where eps=1e-6 enters the normaliser
    torch.testing.assert_close(ours, parallel, atol=1e-6, rtol=0)


def test_backend_and_arguments():
    for device in (None, "cpu"):  # "auto": the CUDA kernels only for a memory built to run on a GPU
        assert build("xlstm", 4, d_model=16, num_heads=2, device=device).stack.blocks[1].xlstm.config.backend == \
            "vanilla"
    if torch.cuda.is_available():
        assert build("xlstm", 4, d_model=16, num_heads=2, device="cuda").stack.blocks[1].xlstm.config.backend == \
            "cuda"
    with pytest.raises(ValueError, match="slstm_at"):
        build("xlstm", 4, d_model=16, num_heads=2, num_blocks=2, slstm_at=[2])
    with pytest.raises(ValueError, match="slstm_backend"):
        build("xlstm", 4, d_model=16, num_heads=2, slstm_backend="triton")


def test_chunkwise_mlstm_with_resets_is_the_packages_recurrence():
    """The chunkwise mLSTM of the training path against the package's recurrent step, float64, over 37 steps (three
    chunks of 16, the last padded) with episode starts at t=0, on both sides of a chunk boundary and at random."""
    import math

    from xlstm.blocks.mlstm.backends import recurrent_step_stabilized_simple

    from rlmem.memory.xlstm import _mlstm_chunkwise

    torch.manual_seed(0)
    B, NH, T, DH = 3, 2, 37, 8
    q, k, v = (torch.randn(B, NH, T, DH, dtype=torch.float64) for _ in range(3))
    ig, fg = torch.randn(B, NH, T, dtype=torch.float64), torch.randn(B, NH, T, dtype=torch.float64) + 2
    C0, n0 = torch.randn(B, NH, DH, DH, dtype=torch.float64) * 0.3, torch.randn(B, NH, DH, dtype=torch.float64) * 0.3
    m0 = torch.randn(B, NH, dtype=torch.float64)
    start = torch.rand(B, T) < 0.1
    start[0, 0] = start[1, 16] = start[2, 15] = True
    C, n, m, hs = C0, n0.unsqueeze(-1), m0[..., None, None], []
    for t in range(T):
        keep = (~start[:, t]).double().view(B, 1, 1, 1)
        h, (C, n, m) = recurrent_step_stabilized_simple(  # (it scales k by 1/sqrt(DH) itself)
            C * keep, n * keep, m * keep, q[:, :, t : t + 1].clone(), k[:, :, t : t + 1].clone(),
            v[:, :, t : t + 1].clone(), ig[:, :, t, None, None], fg[:, :, t, None, None])
        hs.append(h)
    h_ours, (c_ours, n_ours, m_ours) = _mlstm_chunkwise(q, k / math.sqrt(DH), v, ig, fg, C0, n0, m0, start)
    assert (torch.cat(hs, 2) - h_ours).abs().max() < 1e-10
    assert (C - c_ours).abs().max() < 1e-10 and (n.squeeze(-1) - n_ours).abs().max() < 1e-10
    assert (m.view(B, NH) - m_ours).abs().max() < 1e-10
