"""RememberColor and RememberShape: object memory. After MIKASA-Robo's RememberColor3/5/9-v0 and
RememberShape3-v0.

## Description

Steps 0-4 show one cue object at the table centre; steps 5-9 show an empty table; from step 10 the ``n``
candidates stand at shuffled slots (a line for 3 and 5, a 3x3 grid for 9, each jittered by a few mm) and the
agent must touch the one that looks like the cue (same colour for RememberColor; same shape, all blue, for
RememberShape). Touch: see :mod:`envs.manipulation.touch` (a touch of a wrong object ends the episode).
Episode length 60 (truncated).

## Spaces, rewards

See :mod:`envs.manipulation.base`. Dense shaping (choice phase): ``1 - tanh(10 d)``, ``d`` the finger's
distance to the right object's touch point.

## Oracle

Waits at its start until step 10, then goes to the right object's touch point (privileged: which one).

## Version History

* v0: initial version.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from envs.manipulation.scene import COLOURS, Prop, box, cylinder, sphere
from envs.manipulation.touch import TouchTask

CUE_POS = np.array([0.0, 0.0, 0.0])
JITTER = 0.008  # std of the per-episode slot jitter (m), clipped at 2 std


def slots(n: int) -> np.ndarray:
    """Candidate slots on the table: ``[n, 3]``."""
    if n <= 5:
        xs = np.linspace(-0.08 * (n - 1), 0.08 * (n - 1), n) / 2 if n > 1 else np.zeros(1)
        xs = xs * (1.25 if n <= 3 else 1.0)
        return np.stack([xs, np.full(n, 0.06), np.zeros(n)], 1)
    if n <= 9:
        g = np.array([(x, y) for y in (-0.03, 0.06, 0.15) for x in (-0.1, 0.0, 0.1)])[:n]
        return np.concatenate([g, np.zeros((n, 1))], 1)
    raise ValueError(f"at most 9 candidates, got {n}")


class _RememberObject(TouchTask):
    max_steps = 60
    cue_steps, blank_steps = 5, 5
    n: int

    def _kinds(self) -> list[tuple[Callable[..., Prop], dict]]:
        """(prop factory, kwargs) per candidate identity."""
        raise NotImplementedError

    def _props(self) -> list[Prop]:
        kinds = self._kinds()
        self.candidates = [f"obj{i}" for i in range(len(kinds))]
        self.cues = [f"cue{i}" for i in range(len(kinds))]
        props = [make(name, **kw) for (make, kw), name in zip(kinds, self.candidates, strict=True)]
        props += [make(name, **kw) for (make, kw), name in zip(kinds, self.cues, strict=True)]
        return props

    def _reset_task(self) -> None:
        rng = self.np_random
        n = len(self.candidates)
        self.target = int(rng.integers(n))
        jitter = np.clip(rng.normal(0, JITTER, (n, 2)), -2 * JITTER, 2 * JITTER)
        at = slots(n)
        at[:, :2] += jitter
        for name, slot in zip(self.candidates, rng.permutation(n), strict=True):
            self.set_pose(name, at[slot])
        for i, cue in enumerate(self.cues):
            self.set_pose(cue, CUE_POS)
            self.show(cue, i == self.target)
        for name in self.candidates:
            self.show(name, False)

    def _update_task(self) -> None:
        if self.t == self.cue_steps:
            self.show(self.cues[self.target], False)
        if self.t == self.choice_start:
            for name in self.candidates:
                self.show(name, True)


class RememberColorEnv(_RememberObject):
    """``n`` (3, 5 or 9) cubes of distinct colours; remember the cue's colour. See the module docstring."""

    def __init__(self, n: int = 3, **kwargs):
        if n not in (3, 5, 9):
            raise ValueError(f"RememberColor has 3, 5 or 9 cubes, got n={n}")
        self.n = n
        super().__init__(**kwargs)

    def _kinds(self) -> list[tuple[Callable[..., Prop], dict]]:
        return [(box, {"rgba": (*rgb, 1.0)}) for rgb in list(COLOURS.values())[: self.n]]


class RememberShapeEnv(_RememberObject):
    """Three blue objects (cube, sphere, cylinder lying on its side); remember the cue's shape."""

    def __init__(self, **kwargs):
        self.n = 3
        super().__init__(**kwargs)

    def _kinds(self) -> list[tuple[Callable[..., Prop], dict]]:
        blue = (*COLOURS["blue"], 1.0)
        return [(box, {"rgba": blue}), (sphere, {"rgba": blue}), (cylinder, {"rgba": blue, "lying": True})]
