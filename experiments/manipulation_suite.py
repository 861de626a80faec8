"""Manipulation suite: ELMUR, LSTM and MLP trained offline from pixels on oracle data, on RememberColor3 and
ShellGameTouch (``experiment=manipulation_bc``: 1,000 oracle episodes per task, 64x64 RGB + proprioception,
segments of 10 steps, backpropagation through the whole trajectory), 3 seeds, success over 100 episodes.

Targets (issue 5): MLP near chance (1/3: it cannot know which object the cue named), ELMUR >= 0.9 on
RememberColor3 (the ELMUR paper reports 0.89 on MIKASA-Robo's RememberColor3 from pixels).

A cell is one ``python -m rlmem.train`` on one thread (``--workers`` cells at once) with ``algo.updates=--updates``
(and ``time_budget_s=--budget`` if given), then the trainer's final evaluation (``--episodes`` greedy episodes,
rendered by ``env.eval_envs`` subprocesses).

    python experiments/manipulation_suite.py [--tasks RememberColor3 ShellGameTouch] [--models elmur lstm mlp]
        [--seeds 1 2 3] [--updates 2000] [--budget SECONDS] [--workers 2]

Runs go to runs/manipulation_suite/<task>/<model>/seed<k>; rows to experiments/results/manipulation_suite.json
(finished cells are skipped when run again; ``--rerun`` repeats them); the table to manipulation_suite.md.
"""

from __future__ import annotations

import argparse
import statistics

from cells import ROOT, load_rows, pending, prepare_dataset, run_cells, train_cell

RESULTS = ROOT / "experiments" / "results"
MODELS = {"elmur": "elmur_bc", "lstm": "lstm", "mlp": "mlp"}  # suite name -> model= config
TASKS = ["RememberColor3", "ShellGameTouch"]


def write_table(rows: list[dict]) -> str:
    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
    lines = ["| model | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for m in MODELS:
        cells = []
        for t in tasks:
            ok = [r for r in rows if r["task"] == t and r["model"] == m and "error" not in r]
            vals = [r["success"] for r in ok]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            upd = "/".join(str(u) for u in sorted({r.get("updates") for r in ok}))
            cells.append(f"{statistics.mean(vals):.2f} ± {sd:.2f} (n={len(vals)}, {upd} updates)" if vals else "")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    updates = sorted({r.get("updates") for r in rows if r.get("updates")})
    text = ("Manipulation suite: success rate, mean ± std over seeds; behaviour cloning from 64x64 pixels on 1,000 "
            f"oracle episodes, {', '.join(map(str, updates))} updates of 32 trajectories, one CPU thread per run "
            "(experiments/manipulation_suite.py).\n\n" + "\n".join(lines) + "\n")
    (RESULTS / "manipulation_suite.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--updates", type=int, default=2000)
    ap.add_argument("--budget", type=float, default=None, help="training seconds per cell (default: none)")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    result_file = RESULTS / "manipulation_suite.json"
    rows = load_rows(result_file)
    cells = [] if args.table_only else pending(
        rows, [(t, m, s) for t in args.tasks for m in args.models for s in args.seeds], args.rerun)
    for task in sorted({t for t, _, _ in cells}):
        prepare_dataset(["experiment=manipulation_bc", f"env.id=rlmem/{task}-v0"])

    def run(cell: tuple[str, str, int]) -> dict:
        task, model, seed = cell
        overrides = ["experiment=manipulation_bc", f"env.id=rlmem/{task}-v0", f"model={MODELS[model]}",
                     f"seed={seed}", f"algo.updates={args.updates}", f"eval_episodes={args.episodes}"]
        if args.budget:
            overrides.append(f"time_budget_s={args.budget}")
        row = train_cell(overrides, ROOT / "runs" / "manipulation_suite" / task / model / f"seed{seed}")
        return {"updates": args.updates, "budget_s": args.budget, **row}

    print(f"{len(cells)} cells, {args.workers} at a time", flush=True)
    run_cells(cells, run, rows, result_file, args.workers, lambda r: f"success {r['success']:.3f}")
    print(write_table(rows))


if __name__ == "__main__":
    main()
