"""GRU-PPO learns on the torch POPGym envs as on popgym itself: MMER at the same step budget, both backends.

A cell is (task, backend, seed): ``experiment=popgym_gru`` (GRU-PPO, 32 envs x 128 steps) on ``rlmem/<task>-v0``
with ``env.backend=torch`` (``envs.popgym_torch``) or ``env.backend=gym`` (popgym 1.0.7 through gymnasium's vector
env), ``--steps`` env steps, one torch thread. Metric: MMER (running max over training of the mean episode
return). The table gives each backend's mean and standard error over seeds, their difference and its standard
error; "within noise" means the difference is at most two standard errors.

    python experiments/popgym_backends.py [--steps 500000] [--seeds 0 1 2] [--workers 2] [--tasks ...]

Runs go to runs/popgym_backends/<task>/<backend>/seed<k>; finished cells are kept in
experiments/results/popgym_backends.json (its rows' ``model`` field holds the backend: ``cells.py`` keys a cell by
task, model and seed; the model is always GRU) (skipped when run again, ``--rerun`` repeats them); the table goes to
experiments/results/popgym_backends.md.
"""

from __future__ import annotations

import argparse
import math
import statistics

from cells import ROOT, Cell, load_rows, pending, run_cells, train_cell

RESULTS = ROOT / "experiments" / "results"
TASKS = ["RepeatFirstEasy", "RepeatPreviousEasy", "CountRecallEasy", "PositionOnlyCartPoleEasy"]
BACKENDS = ["torch", "gym"]


def _stats(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def table(rows: list[dict], steps: int) -> str:
    lines = [f"GRU-PPO (`experiment=popgym_gru`), {steps:,} env steps per run, MMER per seed and mean +- standard "
             "error; difference torch - gym.", "",
             "| task | torch MMER (seeds) | torch mean | gym MMER (seeds) | gym mean | difference | within noise |",
             "|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        cell: dict[str, list[float]] = {}
        for b in BACKENDS:
            got = sorted((r for r in rows if r["task"] == task and r["model"] == b and r.get("mmer") is not None),
                         key=lambda r: r["seed"])
            cell[b] = [r["mmer"] for r in got]
        if not all(cell.values()):
            continue
        (mt, st), (mg, sg) = _stats(cell["torch"]), _stats(cell["gym"])
        se = math.sqrt(st ** 2 + sg ** 2)
        seeds = {b: ", ".join(f"{x:.3f}" for x in cell[b]) for b in BACKENDS}
        lines.append(f"| {task} | {seeds['torch']} | {mt:.3f} +- {st:.3f} | {seeds['gym']} | {mg:.3f} +- {sg:.3f} "
                     f"| {mt - mg:+.3f} +- {se:.3f} | {'yes' if abs(mt - mg) <= 2 * se else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=500_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rerun", action="store_true")
    args = ap.parse_args()
    result_file = RESULTS / "popgym_backends.json"
    rows = [r for r in load_rows(result_file) if r.get("steps") == args.steps]
    cells: list[Cell] = [(t, b, s) for t in args.tasks for s in args.seeds for b in args.backends]

    def run(cell: Cell) -> dict:
        task, backend, seed = cell
        overrides = ["experiment=popgym_gru", f"env.id=rlmem/{task}-v0", f"env.backend={backend}",
                     f"algo.total_steps={args.steps}", f"seed={seed}", "eval_episodes=100"]
        return {"steps": args.steps, **train_cell(overrides, ROOT / "runs" / "popgym_backends" / task / backend /
                                                  f"seed{seed}")}

    run_cells(pending(rows, cells, args.rerun), run, rows, result_file, args.workers,
              lambda r: f"MMER {r['mmer']:+.3f}  steps/s {r['global_step'] / r['wall_s']:,.0f}")
    (RESULTS / "popgym_backends.md").write_text(table(rows, args.steps))
    print(table(rows, args.steps))


if __name__ == "__main__":
    main()
