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


@pytest.mark.parametrize("memory", ["elmur", "hcam", "sat"])
def test_accelerator_paths_give_the_cpu_paths_outputs(memory):
    """The sync-free paths (taken on accelerators, and on CPU inside SyncCounter) compute the same steps."""
    from conftest import SMALL_SIZES

    kwargs = {o.split(".")[-1].split("=")[0]: int(o.split("=")[1]) for o in SMALL_SIZES[memory]}
    torch.manual_seed(0)
    mem = MEMORIES[memory](5, **kwargs).eval()
    x = torch.randn(3, 12, 5)
    start = torch.zeros(3, 12, dtype=torch.bool)
    start[:, 0], start[1, 7] = True, True

    def steps() -> torch.Tensor:
        state, ys = mem.initial_state(3), []
        with torch.inference_mode():
            for t in range(12):
                y, state = mem(x[:, t:t + 1], state, start[:, t:t + 1])
                ys.append(y)
        return torch.cat(ys, 1)

    fast = steps()
    with SyncCounter():
        strict = steps()
    torch.testing.assert_close(strict, fast, rtol=1e-5, atol=1e-5)
