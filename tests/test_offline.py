"""Offline segment-recurrent behaviour cloning: loss masking, every memory, memory matters, resume."""

from __future__ import annotations

import pytest
import torch

from rlmem import load_policy
from rlmem.algos.offline import bc_loss, lr_lambda
from rlmem.checkpoint import load_checkpoint
from rlmem.evaluate import main as evaluate_cli
from rlmem.heads import MultiCategorical
from rlmem.memory import MEMORIES
from rlmem.train import train
from tests.conftest import small_model

DATA = ["experiment=elmur_tmaze", "algo.dataset_id=test/tmaze-oracle-v0", "algo.collect.episodes=600",
        "algo.collect.grid.corridor_length=[1,3,5,7]", "env.kwargs.corridor_length=7"]


def test_bc_loss_ignores_padding():
    logits = torch.randn(2, 4, 1, 3)
    dist = MultiCategorical(logits, None, squeeze=True)
    actions = torch.randint(0, 3, (2, 4))
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    full = bc_loss(dist, actions, mask, "ce", discrete=True)["loss_bc"]
    expected = -(dist.log_prob(actions) * mask).sum() / 6
    assert torch.allclose(full, expected)
    # changing what sits in padded steps changes nothing
    actions2 = actions.clone()
    actions2[1, 2:] = (actions2[1, 2:] + 1) % 3
    assert torch.allclose(bc_loss(dist, actions2, mask, "ce", True)["loss_bc"], full)


def test_warmup_then_cosine_schedule():
    f = lr_lambda(10, 110, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


@pytest.mark.parametrize("memory", sorted(MEMORIES))
def test_every_memory_trains_offline_and_loads(cfg_factory, tmp_path, memory):
    cfg = cfg_factory(*DATA, *small_model(memory), "algo.updates=4",
                      "algo.batch_size=8", "algo.eval_every=2", "algo.eval_episodes=4", "eval_episodes=4",
                      f"algo.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}")
    result = train(cfg)
    assert result["episodes"] == 4
    policy = load_policy(tmp_path / "run")
    assert policy.arch["memory"] == memory
    out = evaluate_cli([f"checkpoint={tmp_path / 'run'}", "episodes=4", "env.kwargs.corridor_length=9"])
    assert out["episodes"] == 4


def test_recurrent_bc_solves_tmaze_where_mlp_guesses(cfg_factory, tmp_path):
    common = [*DATA, "algo.updates=500", "algo.eval_every=0", "algo.batch_size=64", "algo.lr=3e-3",
              f"algo.data_dir={tmp_path / 'data'}", "eval_episodes=100"]
    gru = train(cfg_factory(*common, "model=gru", "model.memory_kwargs.hidden_size=32", f"run_dir={tmp_path / 'g'}"))
    mlp = train(cfg_factory(*common, "model=mlp", f"run_dir={tmp_path / 'm'}"))
    assert gru["success_rate"] >= 0.95, gru["success_rate"]
    assert 0.3 <= mlp["success_rate"] <= 0.7, mlp["success_rate"]


def test_offline_resume_continues(cfg_factory, tmp_path):
    base = [*DATA, "model=gru", "model.memory_kwargs.hidden_size=8", "algo.batch_size=8", "algo.eval_every=0",
            "algo.eval_episodes=2", "eval_episodes=0", "algo.checkpoint_every=2",
            f"algo.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}"]
    train(cfg_factory(*base, "algo.updates=4"))
    first = load_checkpoint(tmp_path / "run")["trainer"]
    train(cfg_factory(*base, "algo.updates=8", "resume=true"))
    second = load_checkpoint(tmp_path / "run")["trainer"]
    assert first["global_step"] == 4 and second["global_step"] == 8
    assert second["scheduler"]["last_epoch"] == 8  # the schedule continued, per batch


def test_return_to_go_conditioning_trains_and_evaluates(cfg_factory, tmp_path):
    import gymnasium as gym

    cfg = cfg_factory(*DATA, *small_model("gru"), "algo.updates=4", "algo.batch_size=8", "algo.eval_every=0",
                      "algo.eval_episodes=4", "eval_episodes=4", "algo.rtg_target=1.0",
                      f"algo.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}")
    assert train(cfg)["episodes"] == 4
    policy = load_policy(tmp_path / "run")
    assert policy.env_kwargs["rtg_target"] == 1.0 and set(policy.observation_space.spaces) == {"obs", "rtg"}
    env = policy.make_env()  # the rtg wrapper comes back with the policy's env kwargs
    obs, _ = env.reset(seed=0)
    assert obs["rtg"][0] == 1.0
    out = evaluate_cli([f"checkpoint={tmp_path / 'run'}", "episodes=4"])
    assert out["env_kwargs"]["rtg_target"] == 1.0
    gym_env = gym.make("rlmem/TMaze-v0", corridor_length=2, rtg_target=1.0)
    gym_env.reset(seed=0)
    for a in (0, 0, 1):
        obs, r, term, trunc, _ = gym_env.step(a)
        if term or trunc:
            break
    assert obs["rtg"][0] == pytest.approx(1.0 - r)


@pytest.mark.parametrize("detach", [True, False])
def test_memory_writes_learn_only_without_detach(cfg_factory, tmp_path, detach):
    """Detached between segments (of ELMUR's segment length), no loss reaches ELMUR's writes (only later segments
    read them); backpropagating through the trajectory trains them."""
    def weights(updates, name=""):
        run = tmp_path / f"{name}{updates}"
        train(cfg_factory(*DATA, *small_model("elmur"), f"algo.updates={updates}", "algo.batch_size=8",
                          "algo.context=4", "algo.eval_every=0", "eval_episodes=2", f"algo.detach={detach}",
                          "algo.step_per_segment=false", f"algo.data_dir={tmp_path / 'data'}", f"run_dir={run}"))
        return load_checkpoint(run)["policy"]

    weights(1, "collects-the-data")  # so that the two compared runs start from the same random state
    w1, w3 = weights(1), weights(3)
    assert not torch.equal(w1["memory.layers.0.read_q.weight"], w3["memory.layers.0.read_q.weight"])
    assert torch.equal(w1["memory.layers.0.write_q.weight"], w3["memory.layers.0.write_q.weight"]) == detach


def test_detach_false_needs_one_step_per_batch(cfg_factory, tmp_path):
    with pytest.raises(ValueError, match="step_per_segment=false"):
        train(cfg_factory(*DATA, *small_model("elmur"), "algo.updates=1", "algo.detach=false",
                          "algo.step_per_segment=true", f"algo.data_dir={tmp_path / 'data'}",
                          f"run_dir={tmp_path / 'run'}"))


def test_time_budget_stops_after_the_update_in_progress(cfg_factory, tmp_path):
    base = [*DATA, *small_model("gru"), "algo.updates=6", "algo.batch_size=8", "algo.eval_every=0",
            "algo.eval_episodes=2", "eval_episodes=2", f"algo.data_dir={tmp_path / 'data'}",
            f"run_dir={tmp_path / 'run'}"]
    assert train(cfg_factory(*base, "time_budget_s=0"))["episodes"] == 2
    assert load_checkpoint(tmp_path / "run")["trainer"]["global_step"] == 1
    train(cfg_factory(*base, "resume=true"))  # the budget is per invocation: resuming without one finishes
    assert load_checkpoint(tmp_path / "run")["trainer"]["global_step"] == 6
