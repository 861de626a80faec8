"""Data-parallel training in real processes (gloo on CPU, 2 ranks, with timeouts): torchrun through the CLI, ranks
in step, N ranks of batch B equal to one rank of N x B, and no rank left hanging by another's time budget."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from rlmem.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
PPO = ["env=tmaze", "env.kwargs.corridor_length=3", "model=lstm", "model.memory_kwargs.hidden_size=8",
       "algo.num_envs=4", "algo.num_steps=16", "algo.seq_len=8", "algo.num_minibatches=2", "eval_episodes=0",
       "progress=false", "torch_threads=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, overrides: list[list[str]], out: str) -> None:
    """One rank: the training loop as ``rlmem.train`` runs it; saves this rank's final parameters."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from conftest import make_cfg

    import envs  # noqa: F401
    from rlmem import distributed
    from rlmem.algos import TRAINERS
    from rlmem.loop import build_policy, train_loop
    from rlmem.run import Run, seed_everything

    cfg = make_cfg(*overrides[rank])
    w = distributed.init(cfg.device)
    seed_everything(cfg.seed + w.rank)
    trainer = TRAINERS[cfg.algo.name](cfg, w)
    policy = build_policy(cfg, trainer.observation_space, trainer.action_space, trainer.env_kwargs)
    run = Run(cfg.run_dir, {}, writes=w.is_main)
    train_loop(cfg, trainer, policy, run, w)
    run.close()
    torch.save({k: v.detach().clone() for k, v in policy.state_dict().items()}, Path(out) / f"rank{rank}.pt")
    w.barrier()
    distributed.shutdown()


def _agree(rank: int, world: int, port: int, out: str) -> None:
    """The agreement primitives with rank-dependent inputs."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    from rlmem import distributed

    w = distributed.init("cpu")
    lin = torch.nn.Linear(2, 1)
    w.broadcast_(lin.parameters())  # rank 0's initial weights everywhere
    used, unused = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    used.grad = torch.full((2,), float(rank + 1)) if rank == 1 else None  # a gradient on rank 1 only
    w.average_gradients([used, unused])
    result = {"any": w.any(rank == 0), "mean": float(w.mean(torch.tensor(float(rank)))), "grad": used.grad.tolist(),
              "unused": unused.grad is None, "weight": lin.weight.detach().tolist(),
              "object": w.broadcast_object({"rank": rank}), "gathered": w.gather_objects(rank)}
    torch.save(result, Path(out) / f"agree{rank}.pt")
    distributed.shutdown()


def test_ranks_agree_on_flags_means_gradients_and_weights(tmp_path):
    ctx = mp.start_processes(_agree, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the agreement primitives hang")
    r0, r1 = (torch.load(tmp_path / f"agree{r}.pt") for r in (0, 1))
    assert r0 == r1  # every rank sees the same values
    assert r0["any"] and r0["mean"] == 0.5 and r0["object"] == {"rank": 0}
    assert r0["gathered"] == [0, 1]
    assert r0["grad"] == [1.0, 1.0] and r0["unused"]  # (0 + 2) / 2 where only rank 1 had one; None stays None


def spawn(world: int, overrides: list[list[str]], out: Path, timeout: float = 240.0) -> list[dict]:
    ctx = mp.start_processes(_worker, args=(world, _free_port(), overrides, str(out)), nprocs=world, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"distributed run did not finish in {timeout:.0f} s (a rank hangs)")
    return [torch.load(out / f"rank{r}.pt") for r in range(world)]


def test_torchrun_trains_one_policy_and_records_the_world_size(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
           "-m", "rlmem.train", *PPO, "algo.total_steps=256", "eval_episodes=4", f"run_dir={tmp_path}"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    trainer = load_checkpoint(tmp_path)["trainer"]
    # 256 steps over 2 ranks x 4 envs x 16 steps = 128 per update: 2 updates, counted over all ranks
    assert trainer["world_size"] == 2 and trainer["iteration"] == 2 and trainer["global_step"] == 256
    assert len(trainer["rng_ranks"]) == 2 and (tmp_path / "eval.json").is_file()
    # resume under torchrun, extending the run
    r = subprocess.run([*cmd[:5], str(_free_port()), *cmd[6:-3], "algo.total_steps=512", "eval_episodes=0",
                        "resume=true", f"run_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(tmp_path)["trainer"]["iteration"] == 4
    # resuming with another world size is refused in one line
    r = subprocess.run([sys.executable, "-m", "rlmem.train", *PPO, "algo.total_steps=512", "resume=true",
                        f"run_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "trained with 2 process(es), this run has 1" in r.stderr
    assert "Traceback" not in r.stderr


def test_ranks_hold_identical_parameters(tmp_path):
    # target_kl=0 takes the early-stop path (the KL averaged over ranks) after every first epoch
    overrides = [*PPO, "algo.total_steps=384", "algo.target_kl=0.0", f"run_dir={tmp_path}"]
    p0, p1 = spawn(2, [overrides, overrides], tmp_path)
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k
    assert load_checkpoint(tmp_path)["trainer"]["iteration"] == 3  # 384 steps / (2 ranks x 64)


def test_two_ranks_equal_one_rank_with_the_doubled_batch(tmp_path):
    from rlmem.collection import collect_dataset

    # corridors of 1..9 steps: trajectories of several lengths, so the masked loss normaliser matters
    collect_dataset("rlmem/TMaze-v0", {"variant": "elmur"}, "test/ddp-v0", 96, grid={"corridor_length": [1, 4, 9]},
                    data_dir=str(tmp_path / "data"), num_envs=16)
    base = ["algo=offline", "algo.dataset_id=test/ddp-v0", f"algo.data_dir={tmp_path / 'data'}", "env=tmaze",
            "env.kwargs.variant=elmur", "env.kwargs.corridor_length=9", "model=gru",
            "model.memory_kwargs.hidden_size=16", "algo.context=4", "algo.segments=3", "algo.updates=6",
            "algo.warmup=2", "algo.eval_every=0", "eval_episodes=0", "progress=false"]
    one = spawn(1, [[*base, "algo.batch_size=16", f"run_dir={tmp_path / 'one'}"]], tmp_path)[0]
    two = spawn(2, [[*base, "algo.batch_size=8", f"run_dir={tmp_path / 'two'}"]] * 2, tmp_path)
    for k in one:
        torch.testing.assert_close(two[0][k], one[k], rtol=1e-4, atol=1e-5, msg=k)
        assert torch.equal(two[0][k], two[1][k]), k


def test_a_rank_whose_time_budget_ends_first_does_not_hang_the_other(tmp_path):
    base = [*PPO, "algo.total_steps=100000", "algo.checkpoint_every=1000", f"run_dir={tmp_path}"]
    p0, p1 = spawn(2, [[*base, "time_budget_s=0"], base], tmp_path, timeout=180)  # rank 1 has no budget
    trainer = load_checkpoint(tmp_path)["trainer"]
    assert trainer["iteration"] == 1  # both stopped after the first update, together
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k
