"""The scorecard's runner pieces and statistics (experiments/scorecard.py, scorecard_stats.py) on synthetic records."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import scorecard  # noqa: E402
import scorecard_stats as st  # noqa: E402

pytest.importorskip("rliable")


def records(means: dict[str, list[float]], seeds=(1, 2, 3), tasks=("A", "B", "C"), noise=0.01):
    rng = np.random.default_rng(0)
    return [{"task": t, "memory": m, "seed": s, "score": v + noise * rng.standard_normal(),
             "normalized": v + noise * rng.standard_normal(), "covers_horizon": True}
            for m, per_task in means.items() for t, v in zip(tasks, per_task, strict=True) for s in seeds]


def test_every_task_is_built_with_its_horizon_and_budget():
    tasks = scorecard.build_tasks(popgym_steps=1000, tmaze_steps=2000, bc_updates=30)
    assert len([t for t in tasks.values() if t.family == "popgym"]) == 20
    assert tasks["RepeatFirstEasy"].horizon == 51 and tasks["RepeatFirstEasy"].budget == 1000
    assert tasks["TMaze-passive-30"].horizon == 31 and tasks["TMaze-active-30"].horizon == 33
    assert tasks["TMaze-active-30"].budget == 2000
    assert tasks["RememberColor3"].offline and tasks["RememberColor3"].unit == "updates"
    assert tasks["CountRecallMedium"].low == -1.0


def test_memories_are_sized_to_the_horizon_up_to_the_cap():
    assert scorecard.sized("gtrxl", 101) == (["model.memory_kwargs.window=101"], True)
    assert scorecard.sized("hcam", 101) == (["model.memory_kwargs.num_chunks=13"], True)
    assert scorecard.sized("elmur", 51) == (["model.memory_kwargs.num_slots=6"], True)
    assert scorecard.sized("sat", 1000) == (["model.memory_kwargs.capacity=256"], False)
    assert scorecard.sized("gru", 10_000) == ([], True) and scorecard.sized("mlp", 5) == ([], False)


def test_score_matrix_keeps_only_tasks_with_every_memory_and_seed():
    recs = records({"gru": [0.5, 0.6, 0.7], "mlp": [0.1, 0.2, 0.3]})
    recs = [r for r in recs if not (r["task"] == "B" and r["memory"] == "mlp" and r["seed"] == 2)]
    scores, tasks = st.score_matrix(recs, ["gru", "mlp"], [1, 2, 3])
    assert tasks == ["A", "C"] and scores["gru"].shape == (3, 2)


def test_aggregates_rank_a_better_memory_above_and_give_intervals():
    recs = records({"gru": [0.5, 0.6, 0.7, 0.4], "lstm": [0.5, 0.6, 0.7, 0.4], "mlp": [0.1, 0.2, 0.1, 0.0]},
                   tasks=("A", "B", "C", "D"))
    scores, _ = st.score_matrix(recs, ["gru", "lstm", "mlp"], [1, 2, 3])
    agg = st.aggregate(scores, reps=500)
    assert agg["iqm"]["mlp"] < agg["iqm_ci"]["gru"][0] <= agg["iqm"]["gru"] <= agg["iqm_ci"]["gru"][1]
    assert agg["p_improve"]["mlp"] < 0.05 and 0.2 < agg["p_improve"]["lstm"] < 0.8
    assert "gru" not in agg["p_improve"]


def test_per_task_intervals_and_the_memory_separation_check():
    cells = st.per_task(records({"gru": [0.9, 0.5, 0.5], "mlp": [0.5, 0.5, 0.5]}), ["gru", "mlp"])
    mean, lo, hi, n = cells["A"]["gru"]
    assert n == 3 and lo < mean < hi and abs(mean - 0.9) < 0.05
    assert st.separates(cells["A"]) is True and st.separates(cells["B"]) is False
    assert st.separates({"gru": cells["A"]["gru"]}) is None
    one_seed = (9.0, float("nan"), float("nan"), 1)  # part-way through its seeds: the best mean, no interval
    assert st.separates(cells["A"] | {"sat": one_seed}) is True
    assert st.separates({"mlp": cells["A"]["mlp"], "sat": one_seed}) is None


def test_report_writes_tables_and_plots(tmp_path):
    recs = records({m: [0.2 + 0.1 * i, 0.3, 0.4 + 0.05 * i] for i, m in enumerate(["mlp", "gru", "elmur"])})
    tasks = scorecard.build_tasks(popgym_steps=1000)
    extra = [{"task": "A", "memory": "sat", "seed": 1, "score": 0.9, "normalized": 0.9, "covers_horizon": False}]
    text = scorecard.report(recs + extra, tasks, ["mlp", "gru", "elmur"], [1, 2, 3], out=tmp_path)
    assert "## Aggregates of mlp, gru, elmur over the 3 tasks" in text and "| elmur |" in text
    # every memory with results is shown per task; only the requested ones are pooled
    assert "| task | budget | mlp | gru | sat | elmur |" in text and "0.90 [0.90, 0.90] n=1 *" in text
    for name in ("scorecard.md", "scorecard_iqm.png", "scorecard_profiles.png", "scorecard_p_improve.png",
                 "scorecard_aggregates.json"):
        assert (tmp_path / name).stat().st_size > 0


def test_merge_adds_another_machines_finished_cells_and_replaces_the_same_cells():
    here = [{"task": "A", "model": "gru", "seed": 1, "score": 0.1},
            {"task": "A", "model": "elmur", "seed": 1, "error": "exit 1"}]
    there = [{"task": "A", "model": "elmur", "seed": 1, "score": 0.9},
             {"task": "A", "model": "gru", "seed": 1, "score": 0.5},
             {"task": "A", "model": "sat", "seed": 1, "error": "exit -2"}]
    merged = scorecard.merge(here, there)
    assert sorted((r["model"], r.get("score")) for r in merged) == [("elmur", 0.9), ("gru", 0.5)]
    assert scorecard.merge(here, []) == here


def test_report_separates_cpu_and_gpu_time(tmp_path):
    recs = records({m: [0.2 + 0.1 * i, 0.3, 0.4] for i, m in enumerate(["mlp", "gru"])})
    for i, r in enumerate(recs):
        r |= {"wall_s": 3600.0, "overrides": [f"device={'cuda' if i < 2 else 'cpu'}"]}
    text = scorecard.report(recs, scorecard.build_tasks(popgym_steps=1000), ["mlp", "gru"], [1, 2, 3], out=tmp_path)
    assert f"CPU time of the cells so far: {len(recs) - 2:.1f} h" in text and "2 cells ran on a GPU, 2.0" in text
