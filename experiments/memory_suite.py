"""Memory suite: every registered memory on the same memory tasks, under the same CPU budget per cell.

A cell is (task, model, seed). It runs ``python -m rlmem.train`` with one torch thread and
``time_budget_s=--budget`` (training stops after the update in progress once the budget is spent; schedules keep
their full length), then the trainer's final greedy evaluation (``--episodes`` episodes). ``--workers`` cells run at
once, one per core. Tasks:

* ``tmaze``: behaviour cloning on T-Maze oracle trajectories of corridors <= 30 (``experiment=elmur_tmaze``'s
  data and trainer), evaluated on corridor 300. Metric: success rate.
* ``repeat_first``, ``count_recall``: PPO on POPGym RepeatFirstMedium / CountRecallEasy (``experiment=popgym_gru``'s
  trainer). Metric: MMER (running max over training of the mean episode return, POPGym's metric).
* ``rooms``: behaviour cloning on Rooms-v0 oracle trajectories (``experiment=rooms_bc``). Metric: success rate.
* ``rooms_capacity``: the same on the capacity variant (``env=rooms_capacity``), for the allocation comparison
  (``--tasks rooms_capacity --models sat sat_fifo``).

Models are the ``model=<name>`` configs at their default sizes; ``elmur`` runs ``model=elmur_bc`` (read dropout,
write LayerScale) where it is trained offline and ``model=elmur`` with PPO (read dropout is a training-only
perturbation that PPO's rollout and update log-probabilities would disagree on).

    python experiments/memory_suite.py [--budget 60] [--seeds 1 2 3] [--workers 2] [--tasks ...] [--models ...]

Runs go to runs/memory_suite/<task>/<model>/seed<k> (log in train.log); finished cells are kept in
experiments/results/memory_suite.json and skipped when the suite is run again (``--rerun`` repeats them);
the table goes to experiments/results/memory_suite.md.
"""

from __future__ import annotations

import argparse
import statistics

from cells import ROOT, load_rows, pending, prepare_dataset, run_cells, train_cell

RESULTS = ROOT / "experiments" / "results"
MODELS = ["mlp", "lstm", "gru", "xlstm", "gtrxl", "hcam", "sat", "elmur"]
TASKS: dict[str, dict] = {
    "tmaze": {"metric": "success", "offline": True, "overrides": [
        "experiment=elmur_tmaze", "env.kwargs.corridor_length=300", "algo.eval_every=0"]},
    "repeat_first": {"metric": "mmer", "offline": False, "overrides": [
        "experiment=popgym_gru", "env.id=rlmem/RepeatFirstMedium-v0", "algo.total_steps=100000000"]},
    "count_recall": {"metric": "mmer", "offline": False, "overrides": [
        "experiment=popgym_gru", "env.id=rlmem/CountRecallEasy-v0", "algo.total_steps=100000000"]},
    "rooms": {"metric": "success", "offline": True, "overrides": ["experiment=rooms_bc", "algo.eval_every=0"]},
    "rooms_capacity": {"metric": "success", "offline": True, "overrides": [
        "experiment=rooms_bc", "env=rooms_capacity", "algo.eval_every=0"]},
}
DEFAULT_TASKS = ["tmaze", "repeat_first", "count_recall", "rooms"]


def model_config(model: str, offline: bool) -> str:
    return "elmur_bc" if model == "elmur" and offline else model


def run_cell(task: str, model: str, seed: int, budget: float, episodes: int) -> dict:
    """Train and evaluate one cell in its own process; returns its result row."""
    spec = TASKS[task]
    run_dir = ROOT / "runs" / "memory_suite" / task / model / f"seed{seed}"
    overrides = [*spec["overrides"], f"model={model_config(model, spec['offline'])}", f"seed={seed}",
                 f"time_budget_s={budget}", f"eval_episodes={episodes}"]
    row = {"budget_s": budget, **train_cell(overrides, run_dir)}
    if "error" not in row and row[spec["metric"]] is None and spec["metric"] != "mmer":
        return row | {"error": f"{task} reports no {spec['metric']}"}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=60.0, help="training seconds per cell (one thread)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--workers", type=int, default=2, help="cells run at once (one core each)")
    ap.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=sorted(TASKS))
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--episodes", type=int, default=100, help="evaluation episodes per cell")
    ap.add_argument("--rerun", action="store_true", help="repeat cells already in the results")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if args.episodes < 1 or args.budget <= 0:
        ap.error("--episodes and --budget must be positive")
    result_file = RESULTS / "memory_suite.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = load_rows(result_file)
    cells = pending(rows, [(t, m, s) for t in args.tasks for m in args.models for s in args.seeds], args.rerun)
    if args.table_only:
        cells = []
    # Datasets are created by the first run that needs them: make them before cells race for them.
    for task in {t for t, _, _ in cells if TASKS[t]["offline"]}:
        prepare_dataset(TASKS[task]["overrides"])

    def describe(row: dict) -> str:
        metric = TASKS[row["task"]]["metric"]
        return f"{metric} " + ("no episode ended" if row[metric] is None else f"{row[metric]:.3f}")

    print(f"{len(cells)} cells, {args.budget:.0f} s of training each, {args.workers} at a time", flush=True)
    run_cells(cells, lambda c: run_cell(*c, args.budget, args.episodes), rows, result_file, args.workers, describe)
    write_table(rows, args.episodes)


def write_table(rows: list[dict], episodes: int) -> None:
    """Mean and spread (sample std over seeds; min..max in the JSON) per task and model."""
    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
    models = [m for m in [*MODELS, "sat_fifo"] if any(r["model"] == m for r in rows)]
    head = "| model | " + " | ".join(f"{t} ({TASKS[t]['metric']})" for t in tasks) + " |"
    lines = [head, "|---" * (len(tasks) + 1) + "|"]
    for m in models:
        cells = []
        for t in tasks:
            vals = [r[TASKS[t]["metric"]] for r in rows if r["task"] == t and r["model"] == m and "error" not in r]
            errs = sum(1 for r in rows if r["task"] == t and r["model"] == m and "error" in r)
            if not vals:
                cells.append("failed" if errs else "")
                continue
            if None in vals:  # MMER of a run in which no episode ended
                cells.append(f"no episode ended in {vals.count(None)}/{len(vals)}")
                continue
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.2f} ± {sd:.2f} (n={len(vals)})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    budgets = sorted({r["budget_s"] for r in rows})
    text = (f"Memory suite: mean ± std over seeds; each cell {', '.join(f'{b:.0f}' for b in budgets)} s of training "
            f"on one CPU thread, then {episodes} greedy evaluation episodes (experiments/memory_suite.py).\n\n"
            + "\n".join(lines) + "\n")
    (RESULTS / "memory_suite.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
