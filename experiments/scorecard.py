"""The memory scorecard: every memory x a task set x seeds, each task at one budget for every memory (env steps for
PPO, updates for behaviour cloning, never wall clock), with rliable statistics (``scorecard_stats.py``).

Tasks (``TASKS``):

* ``popgym``: 10 POPGym envs x Easy/Medium (the torch envs), PPO with ``experiment=popgym_gru``'s settings, scored by
  MMER (running max over training of the mean episode return). Returns lie in [-1, 1]; normalised as POPGym's
  authors do in their follow-up (FFM): (MMER + 1) / 2.
* ``tmaze``: the passive and the active T-Maze at corridor 30 (Ni et al. 2023), PPO with ``experiment=tmaze_lstm``'s
  settings; scored by the greedy success rate over 200 balanced episodes after training (a memory-less policy that
  walks to the junction is at 0.5). Longer corridors test exploration, not memory, at this budget: at corridor 50
  and 100 the MLP never learns to choose an arm at the junction in 1M steps (success 0.0; at 100 with the default
  entropy bonus it does not even learn to walk), so no model has a floor to be compared with.
* ``rooms``: Rooms capacity (``env=rooms_capacity``), behaviour cloning (``experiment=rooms_bc``); success rate.
* ``manipulation``: RememberColor3/5/9, ShellGameTouch, TakeItBack, SeqOfColors3 from 64x64 pixels, behaviour cloning
  (``experiment=manipulation_bc``); success rate.

Every memory runs its ``conf/model`` config and the task's trainer settings (no per-memory tuning: the model configs
document their sources), sized to cover the task's horizon (``sized``): GTrXL's window, HCAM's chunks, SAT's slots and
ELMUR's slots grow with the longest episode up to a cap; a memory that still cannot span it is marked in the tables.
ELMUR trains as ``model=elmur`` with PPO and ``model=elmur_bc`` offline, as the memory suite does.

    python experiments/scorecard.py [--families popgym tmaze] [--memories ...] [--seeds 1 2 3] [--workers 2]
    python experiments/scorecard.py --report-only
    python experiments/scorecard.py --report-only --memories mlp gru lstm gtrxl \
        --out experiments/results/scorecard_gtrxl  # aggregates over the tasks where these all have every seed
    python experiments/scorecard.py --device cuda --workers 16     # on a GPU machine with 16 cores
    python experiments/scorecard.py --merge gpu_scorecard.json     # add another machine's cells (--results there)

A cell is one ``python -m rlmem.train`` subprocess on one thread (``cells.train_cell``), in
runs/scorecard/<task>/<memory>/seed<k> (its train.log gives the rate every 30 s). Finished cells are kept in
experiments/results/scorecard.json (``--results``) and skipped on the next run (``--rerun`` repeats them); a cell
stopped before it finished continues from its checkpoint on the next run (one started toward another budget
starts over). To stop a run and keep each cell's iteration: ``pkill -f experiments/scorecard.py; pkill -INT -f
'rlmem.train.*runs/scorecard'`` (the runner first, so that it starts no other cell; the pattern leaves other
training runs alone). The report (scorecard.md and PNG plots) is rewritten after every run. Two runs must not write
one results file at once: each rewrites it from memory; run elsewhere with ``--results`` and ``--merge`` the file
afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from cells import ROOT, load_rows, pending, prepare_dataset, run_cells, train_cell

RESULTS = ROOT / "experiments" / "results"
MEMORIES = ["mlp", "lstm", "gru", "xlstm", "gtrxl", "hcam", "sat", "elmur"]
CAP = 256  # longest window / memory span any attention memory is given (its cost grows with it)


@dataclass(frozen=True)
class Task:
    name: str
    family: str
    overrides: tuple[str, ...]
    metric: str  # "mmer" (PPO's running max of mean episode return) or "success" (final greedy evaluation)
    horizon: int  # longest episode, in steps
    budget: int  # env steps (ppo) or updates (bc), the same for every memory
    offline: bool = False
    low: float = 0.0  # normalisation: (score - low) / (high - low)
    high: float = 1.0

    @property
    def unit(self) -> str:
        return "updates" if self.offline else "env steps"


POPGYM = ["RepeatFirst", "RepeatPrevious", "CountRecall", "Autoencode", "HigherLower", "Battleship", "Concentration",
          "MineSweeper", "PositionOnlyCartPole", "NoisyPositionOnlyPendulum"]
MANIPULATION = ["RememberColor3", "RememberColor5", "RememberColor9", "ShellGameTouch", "TakeItBack", "SeqOfColors3"]


def popgym_horizon(name: str) -> int:
    from envs.popgym_torch import TORCH_POPGYM

    return int(TORCH_POPGYM[name](1).max_episode_length)


def build_tasks(popgym_steps: int = 500_000, tmaze_steps: int = 1_000_000, bc_updates: int = 2000) -> dict[str, Task]:
    tasks = {}
    for env in POPGYM:
        for level in ("Easy", "Medium"):
            name = env + level
            tasks[name] = Task(name, "popgym", ("experiment=popgym_gru", f"env.id=rlmem/{name}-v0",
                                                f"algo.total_steps={popgym_steps}"), "mmer",
                               popgym_horizon(name), popgym_steps, low=-1.0)
    for variant, length in (("passive", 30), ("active", 30)):
        name = f"TMaze-{variant}-{length}"
        horizon = length + (1 if variant == "passive" else 3)
        tasks[name] = Task(name, "tmaze", ("experiment=tmaze_lstm", f"env.kwargs.variant={variant}",
                                           f"env.kwargs.corridor_length={length}", f"algo.total_steps={tmaze_steps}",
                                           "algo.num_steps=128", "algo.seq_len=128", "eval_episodes=200"),
                           "success", horizon, tmaze_steps)
    tasks["RoomsCapacity"] = Task("RoomsCapacity", "rooms", ("experiment=rooms_bc", "env=rooms_capacity",
                                                             f"algo.updates={bc_updates}", "algo.eval_every=0"),
                                  "success", 128, bc_updates, offline=True)
    for env in MANIPULATION:
        tasks[env] = Task(env, "manipulation", ("experiment=manipulation_bc", f"env.id=rlmem/{env}-v0",
                                                f"algo.updates={bc_updates}"), "success", 128, bc_updates,
                          offline=True)
    return tasks


def sized(memory: str, horizon: int) -> tuple[list[str], bool]:
    """``model.memory_kwargs`` overrides that let ``memory`` span ``horizon`` steps (up to ``CAP``), and whether it
    does. Recurrent memories carry state without a span; the MLP has none."""
    kw = "model.memory_kwargs"
    span = min(horizon, CAP)
    if memory == "gtrxl":
        return [f"{kw}.window={span}"], span >= horizon
    if memory == "hcam":  # chunks of 8 steps
        return [f"{kw}.num_chunks={math.ceil(span / 8)}"], math.ceil(span / 8) * 8 >= horizon
    if memory == "sat":
        return [f"{kw}.capacity={span}"], span >= horizon
    if memory == "elmur":  # the paper's ablation: one slot per segment of 10 steps
        return [f"{kw}.num_slots={math.ceil(span / 10)}"], math.ceil(span / 10) * 10 >= horizon
    return [], memory != "mlp"


def run_cell(task: Task, memory: str, seed: int, device: str = "cpu", resume: bool = True) -> dict:
    """Train and score one cell; with ``resume`` a cell an earlier run left unfinished continues from its
    checkpoint (``cells.train_cell``)."""
    model = "elmur_bc" if memory == "elmur" and task.offline else memory
    extra, covers = sized(memory, task.horizon)
    if memory == "xlstm" and device.startswith("cuda"):  # the CPU cells' pure-torch sLSTM, and no kernel build per cell
        extra.append("model.memory_kwargs.slstm_backend=vanilla")
    overrides = [*task.overrides, f"model={model}", *extra, f"seed={seed}", f"device={device}"]
    row = train_cell(overrides, ROOT / "runs" / "scorecard" / task.name / memory / f"seed{seed}", resume)
    score = row.get(task.metric) if "error" not in row else None
    if "error" not in row and score is None:
        row["error"] = f"{task.name} reports no {task.metric}"
    normalized = None if score is None else (score - task.low) / (task.high - task.low)
    return {**row, "memory": memory, "score": score, "normalized": normalized, "metric": task.metric,
            "budget": task.budget, "unit": task.unit, "covers_horizon": covers, "horizon": task.horizon,
            "overrides": overrides}


def merge(rows: list[dict], other: list[dict]) -> list[dict]:
    """``rows`` with ``other``'s finished cells added, each replacing the same (task, memory, seed) cell; ``other``'s
    failed cells are left out. Merge only while no run is writing the same file (a run rewrites it from memory)."""
    new = [r for r in other if "error" not in r]
    keys = {(r["task"], r["model"], r["seed"]) for r in new}
    return [r for r in rows if (r["task"], r["model"], r["seed"]) not in keys] + new


def report(rows: list[dict], tasks: dict[str, Task], memories: list[str], seeds: list[int], out: Path = RESULTS
           ) -> str:
    """``out``/scorecard.md (and the PNG plots): rliable aggregates of ``memories`` over the tasks where each of
    them has every seed, then a per-task table of every memory with results."""
    import scorecard_stats as st

    finished = [r for r in rows if "error" not in r]
    records = [r for r in finished if r["memory"] in memories]
    shown = [m for m in dict.fromkeys([*MEMORIES, *memories]) if any(r["memory"] == m for r in finished)]
    scores, complete = st.score_matrix(records, memories, seeds)
    lines = ["# Memory scorecard", "",
             f"Seeds {', '.join(map(str, seeds))}; each task at one budget for every memory (below). Scores: POPGym "
             "MMER normalised as (MMER + 1) / 2; success rates as they are. Per memory: conf/model sizes, spans "
             f"grown to the horizon up to {CAP} steps (`experiments/scorecard.py`), the task's trainer settings.", ""]
    if complete and all(scores[m].size for m in memories) and "gru" in memories:
        agg = st.aggregate(scores)
        lines += [f"## Aggregates of {', '.join(memories)} over the {len(complete)} tasks where each has every seed",
                  "",
                  "Tasks: " + ", ".join(complete), "",
                  "| memory | IQM (95% stratified-bootstrap CI) | P(memory > GRU) (95% CI) |", "|---|---|---|"]
        for m in sorted(memories, key=lambda m: -agg["iqm"][m]):
            lo, hi = agg["iqm_ci"][m]
            p = agg["p_improve"].get(m)
            pc = agg["p_improve_ci"].get(m)
            lines.append(f"| {m} | {agg['iqm'][m]:.3f} [{lo:.3f}, {hi:.3f}] | "
                         + (f"{p:.2f} [{pc[0]:.2f}, {pc[1]:.2f}]" if p is not None else "reference") + " |")
        paths = st.plots(scores, agg, out)
        lines += ["", "Plots: " + ", ".join(f"`{p.name}`" for p in paths), ""]
        (out / "scorecard_aggregates.json").write_text(json.dumps({"tasks": complete, **agg}, indent=2))
    else:
        lines += ["No task has every memory and seed yet: no aggregates.", ""]
    table = st.per_task(finished, shown)
    lines += ["## Per task: mean of the raw score over seeds (95% t-interval), n seeds", "",
              "`*`: the memory's span does not cover the task's horizon. Last column: whether the memory-less MLP's "
              "interval lies below the best memory's.", "",
              "| task | budget | " + " | ".join(shown) + " | MLP below best |", "|---" * (len(shown) + 3) + "|"]
    for name, cells in table.items():
        task = tasks.get(name)
        budget = f"{task.budget:,} {task.unit}" if task else ""
        cols = []
        for m in shown:
            if m not in cells:
                cols.append("")
                continue
            mean, lo, hi, n = cells[m]
            cover = any(not r["covers_horizon"] for r in finished if r["task"] == name and r["memory"] == m)
            cols.append(f"{mean:.2f} [{lo:.2f}, {hi:.2f}] n={n}" + (" *" if cover and m != "mlp" else ""))
        sep = st.separates(cells)
        lines.append(f"| {name} | {budget} | " + " | ".join(cols) + f" | {'' if sep is None else sep} |")
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", f"{len(errors)} failed cells: " + "; ".join(f"{r['task']}/{r['memory']}/{r['seed']}"
                                                             for r in errors[:20])]
    on_gpu = [any(o.startswith("device=cuda") for o in r.get("overrides", [])) for r in rows]
    cpu_h, gpu_h = (sum(r.get("wall_s", 0.0) for r, g in zip(rows, on_gpu, strict=True) if g == gpu) / 3600
                    for gpu in (False, True))
    lines += ["", f"CPU time of the cells so far: {cpu_h:.1f} h (one thread each)"
              + (f"; {sum(on_gpu)} cells ran on a GPU, {gpu_h:.1f} GPU-process hours (several processes shared one "
                 "GPU)." if any(on_gpu) else ".")]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scorecard.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["popgym", "tmaze", "rooms", "manipulation"])
    ap.add_argument("--tasks", nargs="+", default=None, help="task names (default: every task of --families)")
    ap.add_argument("--memories", nargs="+", default=MEMORIES)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--workers", type=int, default=2, help="cells at once, one core each")
    ap.add_argument("--device", default="cpu", help="every cell's device (cuda: the same settings on a GPU)")
    ap.add_argument("--popgym-steps", type=int, default=500_000)
    ap.add_argument("--tmaze-steps", type=int, default=1_000_000)
    ap.add_argument("--bc-updates", type=int, default=2000)
    ap.add_argument("--rerun", action="store_true", help="repeat cells already in the results")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--no-report", action="store_true", help="run cells only (where rliable is not installed)")
    ap.add_argument("--results", type=Path, default=RESULTS / "scorecard.json", help="the cells' JSON file")
    ap.add_argument("--out", type=Path, default=RESULTS,
                    help="folder of the report (scorecard.md, plots): another one for a subset of the memories")
    ap.add_argument("--merge", type=Path, nargs="+", default=[],
                    help="add these files' cells (another machine's run) to --results first, replacing the same cells")
    args = ap.parse_args()
    tasks = build_tasks(args.popgym_steps, args.tmaze_steps, args.bc_updates)
    unknown = sorted(set(args.tasks or []) - set(tasks)) + sorted(set(args.memories) - set(MEMORIES))
    if unknown:
        ap.error(f"unknown task(s)/memory(ies) {unknown}; tasks: {sorted(tasks)}; memories: {MEMORIES}")
    chosen = [t for t in tasks.values() if (t.name in args.tasks if args.tasks else t.family in args.families)]
    result_file = args.results
    rows = load_rows(result_file)
    for other in args.merge:
        rows = merge(rows, load_rows(other))
        print(f"merged {other}")
    if args.merge:
        result_file.write_text(json.dumps(rows, indent=2))
    # a cell's budget is part of its identity: a row trained at another budget is run again
    stale = {(r["task"], r["memory"], r["seed"]) for r in rows if r["task"] in tasks
             and r.get("budget") != tasks[r["task"]].budget}
    cells = [] if args.report_only else pending(
        [r for r in rows if (r["task"], r["memory"], r["seed"]) not in stale],
        [(t.name, m, s) for t in chosen for s in args.seeds for m in args.memories], args.rerun)
    for task in {t for t, _, _ in cells if tasks[t].offline}:
        prepare_dataset(list(tasks[task].overrides))
    print(f"{len(cells)} cells, {args.workers} at a time", flush=True)
    # an unfinished cell continues from its checkpoint if it was started toward the same budget; a rerun starts over
    run_cells(cells, lambda c: run_cell(tasks[c[0]], c[1], c[2], args.device, not args.rerun),
              rows, result_file, args.workers, lambda r: f"{r['metric']} {r['score']:.3f}")
    if not args.no_report:
        print(report([r for r in rows if r["task"] in tasks], tasks, args.memories, args.seeds, args.out))


if __name__ == "__main__":
    main()
