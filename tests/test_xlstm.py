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
