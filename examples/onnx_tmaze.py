"""Run an exported T-Maze policy with onnxruntime and numpy only (no torch, no rlmem).

    python -m rlmem.export checkpoint=runs/tmaze format=onnx out=policy.onnx
    python examples/onnx_tmaze.py policy.onnx [episodes]

The env is the passive T-Maze of Ni et al. 2023 (``rlmem/TMaze-v0`` with ``variant=passive``, see
``envs/tmaze.py``) written out in numpy: the clue (+1 up, -1 down) is shown on the first step only, the agent walks
right along a corridor of ``corridor_length`` cells and must turn toward the clue at the junction; the episode
ends after ``corridor_length + 1`` steps with reward 1 if the agent stands on the clue's side. Every episode is
one batch row, so all episodes run at once; ``episode_start`` is True on each row's first step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def observe(x: np.ndarray, y: np.ndarray, clue: np.ndarray, t: int, length: int) -> np.ndarray:
    """``[at_junction, clue on the first step | y in the junction column | 0]`` per row, float32."""
    at_junction = x == length
    return np.stack([at_junction, np.where(at_junction, y, clue * (t == 0))], 1).astype(np.float32)


def move(x: np.ndarray, y: np.ndarray, a: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Actions 0 right, 1 up, 2 left, 3 down; moves into walls do nothing."""
    x = np.where(y == 0, np.clip(x + (a == 0) - (a == 2), 0, length), x)
    return x, np.where(x == length, np.clip(y + (a == 1) - (a == 3), -1, 1), y)


def run(graph: str, episodes: int = 64, seed: int = 0) -> float:
    """Success rate of the greedy policy in ``graph`` over ``episodes`` passive T-Maze episodes."""
    meta = json.loads(Path(graph).with_suffix(".json").read_text())
    kwargs = meta["env_kwargs"]
    if meta["env_id"] != "rlmem/TMaze-v0" or kwargs.get("variant") != "passive":
        raise SystemExit(f"{graph} was trained on {meta['env_id']} {kwargs}; this loop runs the passive T-Maze")
    length = int(kwargs["corridor_length"])
    sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    init = np.load(Path(graph).with_name(Path(graph).stem + ".initial_state.npz"))
    state = {f"state.{k}": np.repeat(v, episodes, 0) for k, v in init.items()}

    rng = np.random.default_rng(seed)
    clue = rng.choice([-1, 1], episodes)
    x, y = np.zeros(episodes, int), np.zeros(episodes, int)
    start = np.ones(episodes, bool)
    for t in range(length + 1):
        feed = {"obs": observe(x, y, clue, t, length), "episode_start": start, **state}
        out = dict(zip(names, sess.run(None, feed), strict=True))
        state = {n.replace("next_state.", "state.", 1): v for n, v in out.items() if n.startswith("next_state.")}
        start[:] = False
        x, y = move(x, y, out["action"], length)
    return float((y == clue).mean())


if __name__ == "__main__":
    episodes = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    print(f"success rate over {episodes} episodes: {run(sys.argv[1], episodes):.3f}")
