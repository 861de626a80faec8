"""T-Maze length generalisation (ELMUR, Cherepanov et al. 2025): train on oracle trajectories of at most
30 steps, evaluate on corridors up to 1,000,000 steps.

For each model (ELMUR, BC-LSTM, BC-GRU by default) this trains ``experiment=elmur_tmaze`` (unless its
run directory already has a checkpoint), then evaluates it greedily on the torch-batched T-Maze at every
corridor length with balanced clues (half up, half down; one episode per row), and writes

    experiments/results/tmaze_length_generalization.{json,md,png}

    python experiments/tmaze_length_generalization.py [--models elmur lstm gru] [--episodes 100]
        [--lengths 9 30 90 300 900 9600 100000 1000000] [--seed 1] [--retrain]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LENGTHS = [9, 30, 90, 300, 900, 9600, 100_000, 1_000_000]


def train_model(model: str, seed: int, retrain: bool) -> tuple[Path, float | None]:
    """Train ``experiment=elmur_tmaze`` with ``model`` into its run directory; returns the directory and the
    training wall time (None: an existing checkpoint is reused)."""
    from hydra import compose, initialize_config_dir

    from rlmem.config import register_configs
    from rlmem.train import train

    run_dir = ROOT / "runs" / "elmur_tmaze" / f"{model}_seed{seed}"
    if (run_dir / "checkpoints" / "latest.pt").is_file() and not retrain:
        return run_dir, None
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=elmur_tmaze", f"model={model}", f"seed={seed}",
                                           f"run_dir={run_dir}", "progress=false"])
    t = time.perf_counter()
    train(cfg)
    return run_dir, time.perf_counter() - t


def main() -> None:
    import torch

    from rlmem import load_policy
    from rlmem.evaluation import evaluate_env

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["elmur_bc", "lstm", "gru"])
    ap.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--table-only", action="store_true", help="only rewrite the table and plot from the JSON")
    args = ap.parse_args()
    out = ROOT / "experiments" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result_file = out / "tmaze_length_generalization.json"
    mine: list[dict] = []
    for model in [] if args.table_only else args.models:
        run_dir, train_s = train_model(model, args.seed, args.retrain)
        print(f"{model}: " + (f"trained in {train_s:.0f} s" if train_s is not None else "reusing the checkpoint")
              + f" ({run_dir})", flush=True)
        policy = load_policy(run_dir)
        for length in args.lengths:
            t = time.perf_counter()
            with torch.inference_mode():
                res, balanced = evaluate_env(policy, "rlmem/TMaze-v0", {"corridor_length": length, "variant": "elmur"},
                                             args.episodes, backend="torch", seed=args.seed)
            wall = time.perf_counter() - t
            mine.append({"model": model, "seed": args.seed, "corridor_length": length, "episodes": res.episodes,
                         "balanced": balanced, "success": res.success_rate, "mean_return": res.mean_return,
                         "eval_wall_s": wall, "train_wall_s": train_s})
            print(f"  corridor {length:>9,}: success {res.success_rate:.3f} over {res.episodes} episodes "
                  f"({wall:.1f} s)", flush=True)
            rows = merge(result_file, mine)
    rows = merge(result_file, mine)
    lengths = sorted({r["corridor_length"] for r in rows})
    write_table(rows, lengths, out)
    write_plot(rows, list(dict.fromkeys(r["model"] for r in rows)), out)


def merge(result_file: Path, mine: list[dict]) -> list[dict]:
    """Rows on disk (other invocations may run concurrently) with this invocation's rows replacing theirs."""
    key = lambda r: (r["model"], r["seed"], r["corridor_length"])  # noqa: E731
    disk = json.loads(result_file.read_text()) if result_file.is_file() else []
    ours = {key(r) for r in mine}
    rows = [r for r in disk if key(r) not in ours] + mine
    result_file.write_text(json.dumps(rows, indent=2))
    return rows


def write_table(rows: list[dict], lengths: list[int], out: Path) -> None:
    models = list(dict.fromkeys(r["model"] for r in rows))
    head = "| model | " + " | ".join(f"{n:,}" for n in lengths) + " |"
    lines = [head, "|---" * (len(lengths) + 1) + "|"]
    for m in models:
        by_len = {r["corridor_length"]: r for r in rows if r["model"] == m}
        cells = [f"{by_len[n]['success']:.2f}" if n in by_len else "" for n in lengths]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    walls = [f"{r['model']} {r['corridor_length']:,}: {r['eval_wall_s']:.0f} s" for r in rows
             if r["corridor_length"] >= 100_000]
    text = ("Success rate (balanced, greedy) on T-Maze corridors; trained on oracle trajectories of <= 30 steps.\n\n"
            + "\n".join(lines) + "\n\nEvaluation wall time of the longest corridors: " + "; ".join(walls) + "\n")
    (out / "tmaze_length_generalization.md").write_text(text)
    print(text)


def write_plot(rows: list[dict], models: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for m in models:
        pts = sorted((r["corridor_length"], r["success"]) for r in rows if r["model"] == m)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.05)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("corridor length (steps)")
    ax.set_ylabel("success rate")
    ax.set_title("T-Maze: trained on <= 30 steps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "tmaze_length_generalization.png", dpi=120)


if __name__ == "__main__":
    main()
