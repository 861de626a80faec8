"""Where a behaviour-cloned policy misses its oracle: the per-step action error on its own training data, and
whether the memory state carries the cue.

A BC run's loss averages over every step of an episode, and on most manipulation tasks only a few steps depend
on what was seen earlier (RememberColor: the first move at step 10; after it the arm's position shows the target).
This script shows the error step by step, so a model that fits the easy steps and guesses the cue-dependent one
cannot hide behind a low loss:

* the mean squared action error (Box actions; the error rate for discrete ones) at each step ``--steps A B`` on the
  first ``--episodes`` trajectories of the run's dataset, beside the error of always predicting that step's mean
  action (the best a policy that ignores the cue can do in squared error);
* ``--cue-probe T`` (RememberColor tasks): a linear probe of the memory state after ``T`` steps for the cue's colour
  (read from the cue's pixels in the dataset frames), held-out accuracy on the last 20% of the episodes, and the
  same probe on an untrained copy of the model (``--untrained``) as a control.

    python experiments/bc_step_error.py runs/scorecard/RememberColor3/{mlp,gru,lstm,elmur}/seed1 --steps 8 16 \\
        --cue-probe 10 --untrained

Prints a markdown table; ``--out NAME`` also writes experiments/results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

RESULTS = Path(__file__).resolve().parent / "results"


def _from_start(policy: Any, obs: Any, n: int, t: int) -> tuple[Any, Any]:
    """The policy over ``n`` episodes' first ``t`` steps from a fresh state: (action distribution, final state)."""
    episode_start = torch.zeros(n, t, dtype=torch.bool)
    episode_start[:, 0] = True
    with torch.no_grad():
        dist, _, state = policy(obs, policy.initial_state(n), episode_start)
    return dist, state


def step_errors(policy: Any, obs: Any, actions: Tensor, lengths: Tensor) -> Tensor:
    """Per-episode, per-step error of the policy's greedy action, ``[N, T]`` (NaN on padding)."""
    n, t = actions.shape[:2]
    dist, _ = _from_start(policy, obs, n, t)
    pred = dist.mode()
    err = (pred != actions).float() if actions.dtype == torch.int64 else (pred - actions).square().flatten(2).sum(-1)
    return err.masked_fill(torch.arange(t)[None] >= lengths[:, None], float("nan"))


def mean_action_error(actions: Tensor, lengths: Tensor) -> Tensor:
    """Per-step error of predicting that step's mean action (its mode for discrete actions), ``[T]``."""
    valid = torch.arange(actions.shape[1])[None] < lengths[:, None]
    out = []
    for t in range(actions.shape[1]):
        a = actions[valid[:, t], t]
        if a.numel() == 0:
            out.append(float("nan"))
        elif a.dtype == torch.int64:
            out.append(float((a != a.mode(0).values).float().mean()))
        else:
            out.append(float((a - a.mean(0)).square().flatten(1).sum(-1).mean()))
    return torch.tensor(out)


def cue_colours(rgb: Tensor, palette: Tensor, cue_step: int = 0, blank_step: int = 7) -> Tensor:
    """RememberColor's cue colour per episode, ``[N]``: the mean colour of the pixels that change between a cue frame
    and a blank-table frame, nearest palette entry."""
    frames = rgb.float()
    changed = (frames[:, cue_step] - frames[:, blank_step]).abs().sum(-1) > 60
    if int(changed.flatten(1).sum(1).min()) == 0:
        raise ValueError("an episode shows no cue at step 0: not a RememberColor dataset")
    colour = (frames[:, cue_step] * changed[..., None]).sum((1, 2)) / changed.sum((1, 2))[:, None] / 255
    return torch.cdist(colour, palette).argmin(1)


def probe_accuracy(policy: Any, obs: Any, labels: Tensor, steps: int, train_frac: float = 0.8) -> float:
    """Held-out accuracy of a linear (softmax) probe of the memory state after ``steps`` steps."""
    n = labels.shape[0]
    first = {k: v[:, :steps] for k, v in obs.items()} if isinstance(obs, dict) else obs[:, :steps]
    _, state = _from_start(policy, first, n, steps)
    x = torch.cat([v.reshape(n, -1).float() for v in state.values()], 1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    k = int(n * train_frac)
    probe = torch.nn.Linear(x.shape[1], int(labels.max()) + 1)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(500):
        loss = torch.nn.functional.cross_entropy(probe(x[:k]), labels[:k])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((probe(x[k:]).argmax(1) == labels[k:]).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories (or checkpoint files) of offline runs on one dataset")
    ap.add_argument("--episodes", type=int, default=200, help="dataset trajectories to score (the first N)")
    ap.add_argument("--steps", type=int, nargs=2, default=[8, 16], metavar=("A", "B"), help="steps A..B-1")
    ap.add_argument("--cue-probe", type=int, default=0, metavar="T", help="probe the state after T steps")
    ap.add_argument("--untrained", action="store_true", help="also probe an untrained copy of each model")
    ap.add_argument("--out", help="write experiments/results/OUT.{json,md}")
    args = ap.parse_args()
    torch.set_num_threads(1)

    import envs  # noqa: F401  (registers the env ids)
    from rlmem.checkpoint import load_checkpoint, policy_from_checkpoint
    from rlmem.data import load_trajectories
    from rlmem.tree import tree_map

    ckpts = [load_checkpoint(r) for r in args.runs]
    ids = {(c["config"]["algo"]["dataset_id"], c["config"]["algo"]["data_dir"]) for c in ckpts}
    if len(ids) != 1:
        raise SystemExit(f"the runs were trained on different datasets: {sorted(ids)}")
    dataset_id, data_dir = ids.pop()
    data = load_trajectories(dataset_id, data_dir)
    n = min(args.episodes, data.num_episodes)
    obs = tree_map(lambda o: o[:n], data.obs)
    actions, lengths = data.actions[:n], data.lengths[:n]
    a, b = args.steps
    b = min(b, actions.shape[1])
    baseline = mean_action_error(data.actions, data.lengths)
    labels = None
    if args.cue_probe:
        from envs.manipulation.scene import COLOURS

        if not isinstance(data.obs, dict) or "rgb" not in data.obs:
            raise SystemExit("--cue-probe needs pixel observations (obs['rgb'])")
        labels = cue_colours(data.obs["rgb"], torch.tensor(list(COLOURS.values())))

    rows: list[dict[str, Any]] = []
    for run, ckpt in zip(args.runs, ckpts, strict=True):
        policy = policy_from_checkpoint(ckpt)
        err = step_errors(policy, obs, actions, lengths).nanmean(0)
        row: dict[str, Any] = {"run": str(run), "memory": ckpt["arch"]["memory"],
                               "error": {t: round(float(err[t]), 4) for t in range(a, b)}}
        if labels is not None and policy.initial_state(1):  # a memory-less MLP keeps no state
            row["probe"] = probe_accuracy(policy, data.obs, labels, args.cue_probe)
            if args.untrained:
                torch.manual_seed(0)
                untrained = policy_from_checkpoint(ckpt, weights=False)
                row["probe_untrained"] = probe_accuracy(untrained, data.obs, labels, args.cue_probe)
        rows.append(row)

    probe_cols = ["probe", "probe_untrained"] if labels is not None else []
    lines = ["| run | " + " | ".join([*(f"t={t}" for t in range(a, b)), *probe_cols]) + " |",
             "|---|" + "---|" * (b - a + len(probe_cols)),
             "| mean action | " + " | ".join([*(f"{float(baseline[t]):.3f}" for t in range(a, b)),
                                              *("" for _ in probe_cols)]) + " |"]
    for r in rows:
        cells = [*(f"{r['error'][t]:.3f}" for t in range(a, b)),
                 *(f"{r[c]:.2f}" if c in r else "-" for c in probe_cols)]
        lines.append(f"| {r['run']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(f"{dataset_id}: per-step action error on its first {n} trajectories\n")
    print(table)
    if args.out:
        (RESULTS / f"{args.out}.json").write_text(json.dumps(
            {"dataset": dataset_id, "episodes": n, "mean_action": [float(x) for x in baseline], "rows": rows},
            indent=1) + "\n")
        (RESULTS / f"{args.out}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
