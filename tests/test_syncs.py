"""No host syncs in a PPO rollout step (DESIGN.md): counted on CPU with a TorchFunctionMode, which makes every
CPU-only fast path take its accelerator path."""

from __future__ import annotations

import pytest
import torch
from conftest import small_model

from rlmem.algos.ppo import RolloutCollector
from rlmem.loop import build_policy
from rlmem.memory import MEMORIES
from rlmem.syncs import SyncCounter, cpu_fast_path


def test_counter_sees_the_calls_that_sync_and_disables_cpu_fast_paths():
    x = torch.arange(6)
    assert cpu_fast_path("cpu")
    with SyncCounter() as syncs:
        assert not cpu_fast_path("cpu")
        bool(x.any()), x.tolist(), x.nonzero(), x[x > 2], int(x[0]), x.sum() * 2, torch.where(x > 2, x, 0)
    assert syncs.count == 5, syncs.calls
    assert cpu_fast_path("cpu")


@pytest.mark.parametrize("memory", sorted(MEMORIES))
@pytest.mark.parametrize("env", [["env=tmaze", "env.kwargs.corridor_length=3"], ["env=rooms"]])
def test_a_rollout_step_makes_no_host_sync(cfg_factory, memory, env):
    cfg = cfg_factory(*small_model(memory), *env, "algo.num_envs=4", "algo.num_steps=8", "algo.seq_len=4",
                      "algo.num_minibatches=1", "run_dir=unused")
    collector = RolloutCollector(cfg)
    policy = build_policy(cfg, collector.observation_space, collector.action_space, collector.env_kwargs)
    collector.start(policy, seed=0)
    for _ in range(6):  # past the first episode ends (T-Maze corridor 3: 5 steps) and ELMUR's segment writes
        collector.step(policy)
    with SyncCounter() as syncs:
        for _ in range(6):
            collector.step(policy)
    collector.close()
    assert syncs.count == 0, dict(syncs.calls)


@pytest.mark.parametrize("memory", ["elmur", "sat"])  # the memories with a CPU-only fast path
@pytest.mark.parametrize("chunks", [[1] * 12, [5, 7], [12]])
def test_sync_free_paths_compute_what_the_cpu_paths_do(memory, chunks):
    """The paths taken on accelerators (and on CPU inside SyncCounter) give the CPU paths' outputs, step by step
    (the rollout path) and over sequences with episode starts inside them (training forwards)."""
    from conftest import SMALL_SIZES

    kwargs = {o.split(".")[-1].split("=")[0]: int(o.split("=")[1]) for o in SMALL_SIZES[memory]}
    torch.manual_seed(0)
    mem = MEMORIES[memory](5, **kwargs).eval()
    x = torch.randn(3, 12, 5)
    start = torch.zeros(3, 12, dtype=torch.bool)
    start[:, 0], start[1, 7], start[2, 3] = True, True, True

    def run() -> torch.Tensor:
        state, ys, a = mem.initial_state(3), [], 0
        with torch.inference_mode():
            for n in chunks:
                y, state = mem(x[:, a:a + n], state, start[:, a:a + n])
                ys.append(y)
                a += n
        return torch.cat(ys, 1)

    fast = run()
    with SyncCounter() as syncs:
        strict = run()
    torch.testing.assert_close(strict, fast, rtol=1e-5, atol=1e-5)
    # a multi-step ELMUR call plans its pieces with one sync (their lengths are shapes); SAT makes none
    assert syncs.count == (sum(n > 1 for n in chunks) if memory == "elmur" else 0), dict(syncs.calls)


def test_xlstm_pointwise_step_is_the_packages_without_the_sync():
    from xlstm.blocks.slstm.src.vanilla.slstm import slstm_forward_pointwise

    from rlmem.memory.xlstm import _slstm_pointwise

    torch.manual_seed(0)
    B, H = 3, 8
    wx, ry, b = torch.randn(B, 4 * H), torch.randn(B, 4 * H), torch.randn(1, 4 * H)
    for states in (torch.randn(4, B, H), torch.zeros(4, B, H)):  # both branches of the package's `if all(n == 0)`
        ours = _slstm_pointwise(wx, ry, b, states, {})
        theirs = slstm_forward_pointwise(wx, ry, b, states, {})
        for a, t in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, t, rtol=0, atol=0)
    with SyncCounter() as syncs:
        _slstm_pointwise(wx, ry, b, torch.zeros(4, B, H), {})
    assert syncs.count == 0
