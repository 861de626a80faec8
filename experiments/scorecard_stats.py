"""The scorecard's statistics and pictures (rliable, Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice"), from records ``{task, memory, seed, score, normalized, ...}``:

* per memory over tasks: the interquartile mean (IQM) of normalised scores with a 95% stratified-bootstrap
  confidence interval, and the probability of improvement over GRU, on the tasks where every memory has every
  seed (rliable needs a full runs x tasks matrix per memory);
* performance profiles (fraction of runs above each normalised score);
* per task: mean and a 95% t-interval over seeds of the raw score, and whether the memory-less MLP's interval lies
  below the best memory's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def score_matrix(records: list[dict], memories: Sequence[str], seeds: Sequence[int]
                 ) -> tuple[dict[str, np.ndarray], list[str]]:
    """``{memory: normalised scores [seeds, tasks]}`` over the tasks where every memory has a score for every seed,
    and those tasks (in first-seen order)."""
    got = {(r["task"], r["memory"], r["seed"]): r["normalized"] for r in records if r.get("normalized") is not None}
    tasks = list(dict.fromkeys(r["task"] for r in records))
    complete = [t for t in tasks if all((t, m, s) in got for m in memories for s in seeds)]
    return {m: np.array([[got[t, m, s] for t in complete] for s in seeds]) for m in memories}, complete


def aggregate(scores: dict[str, np.ndarray], reference: str = "gru", reps: int = 2000, seed: int = 0) -> dict:
    """IQM with a 95% stratified-bootstrap CI per memory, and P(memory > ``reference``) with its CI."""
    from rliable import library as rly
    from rliable import metrics

    np.random.seed(seed)  # rliable draws its bootstrap samples from numpy's global generator
    iqm, iqm_ci = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    pairs = {f"{m},{reference}": (scores[m], scores[reference]) for m in scores if m != reference}
    poi, poi_ci = ({}, {}) if not pairs else rly.get_interval_estimates(pairs, metrics.probability_of_improvement,
                                                                       reps=reps)
    return {"iqm": {m: float(v[0]) for m, v in iqm.items()},
            "iqm_ci": {m: [float(c[0, 0]), float(c[1, 0])] for m, c in iqm_ci.items()},
            "p_improve": {k.split(",")[0]: float(v) for k, v in poi.items()},
            "p_improve_ci": {k.split(",")[0]: [float(c[0, 0]), float(c[1, 0])] for k, c in poi_ci.items()}}


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and a 95% t-interval (the mean itself where there is one value)."""
    from scipy import stats

    n, mean = len(values), float(np.mean(values))
    if n < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, n - 1)) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def per_task(records: list[dict], memories: Sequence[str]) -> dict[str, dict[str, tuple[float, float, float, int]]]:
    """``{task: {memory: (mean, low, high, n)}}`` of raw scores over seeds."""
    out: dict[str, dict[str, tuple[float, float, float, int]]] = {}
    for task in dict.fromkeys(r["task"] for r in records):
        for m in memories:
            vals = [r["score"] for r in records
                    if r["task"] == task and r["memory"] == m and r.get("score") is not None]
            if vals:
                out.setdefault(task, {})[m] = (*t_interval(vals), len(vals))
    return out


def separates(cells: dict[str, tuple[float, float, float, int]], baseline: str = "mlp") -> bool | None:
    """Whether the memory-less baseline's interval lies below the best memory's, among the memories with two seeds
    or more (None: the baseline or every memory is missing or has fewer; a memory part-way through its seeds has no
    interval and is left out, rather than blanking the task)."""
    others = {m: c for m, c in cells.items() if m != baseline and c[3] >= 2}
    if baseline not in cells or cells[baseline][3] < 2 or not others:
        return None
    best = max(others.values(), key=lambda c: c[0])
    return cells[baseline][2] < best[1]


def plots(scores: dict[str, np.ndarray], agg: dict, out_dir: Path, reference: str = "gru") -> list[Path]:
    """IQM intervals, performance profiles and probabilities of improvement as PNGs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from rliable import library as rly
    from rliable import plot_utils

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    memories = sorted(scores, key=lambda m: agg["iqm"][m])
    point = {m: np.array([agg["iqm"][m]]) for m in memories}
    ci = {m: np.array(agg["iqm_ci"][m]).reshape(2, 1) for m in memories}
    colors = dict(zip(memories, plt.get_cmap("tab10").colors, strict=False))
    fig, _ = plot_utils.plot_interval_estimates(point, ci, metric_names=["IQM"], algorithms=memories, colors=colors,
                                                xlabel="normalised score", subfigure_width=4.5, row_height=0.5,
                                                xlabel_y_coordinate=-0.5 / len(memories) - 0.15)
    paths.append(out_dir / "scorecard_iqm.png")
    fig.savefig(paths[-1], bbox_inches="tight", dpi=120)
    plt.close(fig)

    taus = np.linspace(0.0, 1.0, 41)
    profiles, profile_cis = rly.create_performance_profile(scores, taus)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=profile_cis, ax=ax, colors=colors,
                                         xlabel=r"normalised score ($\tau$)")
    ax.legend(handles=[Line2D([], [], color=colors[m], label=m) for m in reversed(memories)], loc="lower left",
              fontsize=8)
    paths.append(out_dir / "scorecard_profiles.png")
    fig.savefig(paths[-1], bbox_inches="tight", dpi=120)
    plt.close(fig)

    if agg["p_improve"]:
        pairs = {f"{m},{reference}": agg["p_improve"][m] for m in agg["p_improve"]}
        pair_ci = {f"{m},{reference}": np.array(agg["p_improve_ci"][m]).reshape(2, 1) for m in agg["p_improve"]}
        ax = plot_utils.plot_probability_of_improvement(pairs, pair_ci, figsize=(4.5, 3.5))
        paths.append(out_dir / "scorecard_p_improve.png")
        ax.get_figure().savefig(paths[-1], bbox_inches="tight", dpi=120)
        plt.close(ax.get_figure())
    return paths
