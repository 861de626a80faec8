"""A suite's cell (experiments/cells.py): a real training subprocess, and an unfinished cell continuing from its
checkpoint when a suite runs again."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
from cells import train_cell  # noqa: E402

TINY = ["algo.num_envs=4", "algo.num_steps=16", "algo.seq_len=8", "algo.num_minibatches=2", "model=mlp",
        "model.memory_kwargs.hidden_size=8", "eval_episodes=2", "env.kwargs.corridor_length=3"]


def test_a_cell_resumes_from_its_checkpoint_and_counts_the_earlier_time(tmp_path):
    # a time budget spent after the first iteration stands in for a cell killed at its checkpoint
    first = train_cell([*TINY, "algo.total_steps=512", "time_budget_s=0.001"], tmp_path, resume=True)
    assert "error" not in first and first["global_step"] == 64 and "resumed" not in first  # no checkpoint: fresh
    t = time.perf_counter()
    second = train_cell([*TINY, "algo.total_steps=512"], tmp_path, resume=True)  # the suite's next run continues it
    own = time.perf_counter() - t
    assert "error" not in second and second["global_step"] == 512 and second["resumed"]
    log = (tmp_path / "train.log").read_text()
    assert log.count("iterations, 1 process(es)") == 2 and log.count("resumed from") == 1  # both attempts' logs
    assert second["wall_s"] > own + 0.3 * first["wall_s"]  # the first attempt's time up to its checkpoint counts
    # without resume the cell starts over (a rerun): its log and its time are the new attempt's only
    t = time.perf_counter()
    third = train_cell([*TINY, "algo.total_steps=256"], tmp_path)
    assert "error" not in third and third["global_step"] == 256 and "resumed" not in third
    assert third["wall_s"] <= time.perf_counter() - t
    assert "resumed from" not in (tmp_path / "train.log").read_text()


def test_a_cell_started_toward_another_budget_starts_over(tmp_path):
    first = train_cell([*TINY, "algo.total_steps=512"], tmp_path, resume=True)
    assert "error" not in first and first["global_step"] == 512
    # trained past the budget asked for now: resuming would report the longer run's score at its end
    second = train_cell([*TINY, "algo.total_steps=256"], tmp_path, resume=True)
    assert "error" not in second and second["global_step"] == 256 and "resumed" not in second
    assert "resumed from" not in (tmp_path / "train.log").read_text()
