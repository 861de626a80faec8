"""What the suite scripts share: a cell (task, model, seed) is one ``python -m rlmem.train`` subprocess on one
thread; rows are kept in a JSON file, a finished cell is skipped when a suite runs again, and a failed cell
becomes an error row instead of ending the suite.

Why not Hydra's submitit launcher (``-m hydra/launcher=submitit_local``): a suite's cells are not one sweep. Each
task is a bundle of overrides (an experiment, an env, budgets), and a multirun sweeps the cartesian product of single
overrides, so a suite would be one multirun per task; and the launcher returns only when a whole sweep has ended,
while a suite writes each row as its cell finishes so that an interrupted suite keeps its finished cells. For a
cluster, the cell's command line (``train_cell``) is what a ``submitit_slurm`` multirun would run, one job per cell.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
Cell = tuple[str, str, int]  # task, model, seed


def train_cell(overrides: list[str], run_dir: Path, resume: bool = False) -> dict:
    """Train and evaluate in a subprocess (one torch thread); returns wall time and, unless it failed
    (``error``), the final evaluation's success and mean return, the MMER and the steps trained.

    With ``resume``, a cell that an earlier suite left unfinished (killed: ``run_dir`` holds its checkpoint)
    continues from that checkpoint instead of starting over if it was started toward the same budget
    (``same_budget``), and its wall time adds the earlier attempts' time up to their last checkpoint (work after it is
    done again and counted once). A ``SIGINT`` or ``SIGTERM`` to the training process saves the interrupted
    iteration (``rlmem.train.interrupt_on_stop_signals``); a ``SIGKILL`` keeps the last periodic checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt, timing = run_dir / "checkpoints" / "latest.pt", run_dir / "cell_time.json"
    resume = resume and ckpt.exists() and same_budget(run_dir, overrides)
    before = 0.0
    if resume and timing.exists():
        earlier = json.loads(timing.read_text())
        before = earlier["before_s"] + max(ckpt.stat().st_mtime - earlier["started"], 0.0)
    timing.write_text(json.dumps({"started": time.time(), "before_s": before}))
    args = [*overrides, f"run_dir={run_dir}", "torch_threads=1", "progress=true", f"resume={str(resume).lower()}"]
    if not resume:  # Hydra appends to the run's train.log: a cell that starts over starts a new one
        (run_dir / "train.log").unlink(missing_ok=True)
    t = time.perf_counter()
    with open(run_dir / "cell.log", "a" if resume else "w") as logf:  # the console: Hydra's log and any error
        proc = subprocess.run([sys.executable, "-m", "rlmem.train", *args], cwd=ROOT, stdout=logf,
                              stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    row: dict = {"wall_s": before + time.perf_counter() - t}
    if resume:
        row["resumed"] = True
    if proc.returncode != 0:
        return row | {"error": f"exit {proc.returncode}, see {run_dir / 'cell.log'}"}
    from rlmem.checkpoint import load_checkpoint

    try:
        trainer = load_checkpoint(run_dir, map_location="cpu")["trainer"]
        ev = json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError, KeyError) as e:
        return row | {"error": f"no result in {run_dir}: {e}"}
    mmer = trainer.get("mmer")
    if mmer is not None and not math.isfinite(mmer):  # no episode ended during training (JSON has no -inf)
        mmer = None
    return row | {"success": ev["success_rate"], "mean_return": ev["mean_return"], "mmer": mmer,
                  "global_step": trainer["global_step"]}


def same_budget(run_dir: Path, overrides: list[str]) -> bool:
    """Whether the run in ``run_dir`` was started toward the budget that ``overrides`` ask for
    (``algo.total_steps``, ``algo.updates``). A run toward another budget is another run: PPO anneals its learning
    rate over the budget, and a run past the budget would resume at its end and report a longer run's score."""
    from omegaconf import OmegaConf

    if not (run_dir / "config.yaml").is_file():
        return False
    stored = OmegaConf.load(run_dir / "config.yaml")
    asked = dict(o.split("=", 1) for o in overrides if o.startswith(("algo.total_steps=", "algo.updates=")))
    return all(str(OmegaConf.select(stored, key)) == value for key, value in asked.items())


def prepare_dataset(overrides: list[str]) -> None:
    """Create the dataset of the offline run ``overrides`` describe (if missing) once, before parallel cells race
    for it."""
    from hydra import compose, initialize_config_dir

    from rlmem.collection import ensure_dataset
    from rlmem.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "run_dir=unused"])
    ensure_dataset(cfg.env, cfg.algo.dataset_id, cfg.algo.data_dir, cfg.algo.collect, cfg.device)


def load_rows(result_file: Path) -> list[dict]:
    return json.loads(result_file.read_text()) if result_file.is_file() else []


def pending(rows: list[dict], cells: list[Cell], rerun: bool) -> list[Cell]:
    done = {(r["task"], r["model"], r["seed"]) for r in rows if "error" not in r}
    return [c for c in cells if rerun or c not in done]


def run_cells(cells: list[Cell], run: Callable[[Cell], dict], rows: list[dict], result_file: Path, workers: int,
              describe: Callable[[dict], str]) -> None:
    """Run ``run(cell)`` for every cell, ``workers`` at a time; each row (``task``, ``model``, ``seed`` added)
    replaces the cell's old one and the file is rewritten as rows arrive."""
    lock = threading.Lock()

    def one(cell: Cell) -> None:
        task, model, seed = cell
        try:
            row = run(cell)
        except Exception as e:  # one broken cell must not end the suite
            row = {"wall_s": 0.0, "error": repr(e)}
        row = {"task": task, "model": model, "seed": seed, **row}
        with lock:
            rows[:] = [r for r in rows if (r["task"], r["model"], r["seed"]) != cell] + [row]
            result_file.parent.mkdir(parents=True, exist_ok=True)
            result_file.write_text(json.dumps(rows, indent=2))
            print(f"{task:<15} {model:<8} seed {seed}  " + (row["error"] if "error" in row else describe(row))
                  + f"  ({row['wall_s']:.0f} s)", flush=True)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, cells))
