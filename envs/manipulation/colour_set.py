"""SeqOfColors, ChainOfColors and BunchOfColors: sequential and capacity memory. After MIKASA-Robo's
SeqOfColors3-v0, ChainOfColors3-v0 and BunchOfColors3-v0.

## Description

Nine cubes of distinct colours (3x3 slots, shuffled, jittered); ``k`` of the colours (3, drawn without
replacement) are the targets.

* SeqOfColors / ChainOfColors: the target colours are shown one at a time as a cube at the table centre, 5
  steps each (steps 0-14), then an empty table (15-19); the nine cubes appear at step 20.
* BunchOfColors: the target cubes are shown together, side by side, at steps 0-4; empty table 5-9; the nine
  cubes appear at step 10.

The agent must touch every target cube once (see :mod:`envs.manipulation.touch`; touching a target again is
allowed and ignored); for ChainOfColors in the order shown. Touching a non-target cube (or, for Chain, a target
out of order) ends the episode as a failure. Success when the last target is touched. Episode length 120.

## Spaces, rewards

See :mod:`envs.manipulation.base`. Dense shaping (choice phase): ``(touched + 1 - tanh(10 d)) / k``, ``d`` the
finger's distance to the next target in the shown order.

## Oracle

Waits until the cubes appear, then touches the targets in the order shown.

## Version History

* v0: initial version.
"""

from __future__ import annotations

import numpy as np

from envs.manipulation.remember import CUE_POS, JITTER, slots
from envs.manipulation.scene import COLOURS, Prop, box
from envs.manipulation.touch import TouchTask


class _ColourSet(TouchTask):
    max_steps = 120
    k = 3
    cue_steps = 5  # per cue
    ordered = False  # Chain: the touches must follow the shown order
    together = False  # Bunch: all cues at once

    def __init__(self, **kwargs):
        self.choice_start = self.cue_steps * (1 if self.together else self.k) + 5
        super().__init__(**kwargs)

    def _props(self) -> list[Prop]:
        rgbs = list(COLOURS.values())
        self.candidates = [f"obj{i}" for i in range(len(rgbs))]
        self.cues = [f"cue{i}" for i in range(len(rgbs))]
        return ([box(n, rgba=(*c, 1.0)) for n, c in zip(self.candidates, rgbs, strict=True)]
                + [box(n, rgba=(*c, 1.0)) for n, c in zip(self.cues, rgbs, strict=True)])

    def _reset_task(self) -> None:
        rng = self.np_random
        n = len(self.candidates)
        self.targets = [int(i) for i in rng.choice(n, self.k, replace=False)]
        self.done: list[int] = []
        at = slots(n)
        at[:, :2] += np.clip(rng.normal(0, JITTER, (n, 2)), -2 * JITTER, 2 * JITTER)
        for name, slot in zip(self.candidates, rng.permutation(n), strict=True):
            self.set_pose(name, at[slot])
            self.show(name, False)
        for i, cue in enumerate(self.cues):
            self.show(cue, False)
            if i in self.targets:  # Bunch: side by side, in the order drawn
                j = self.targets.index(i)
                self.set_pose(cue, CUE_POS + (np.array([(j - (self.k - 1) / 2) * 0.07, 0.0, 0.0])
                                              if self.together else 0.0))
        self._show_cues()

    def _show_cues(self) -> None:
        if self.together:
            for i in self.targets:
                self.show(self.cues[i], self.t < self.cue_steps)
        else:
            for j, i in enumerate(self.targets):
                self.show(self.cues[i], j * self.cue_steps <= self.t < (j + 1) * self.cue_steps)

    def _update_task(self) -> None:
        self._show_cues()
        if self.t == self.choice_start:
            for name in self.candidates:
                self.show(name, True)

    def _next(self) -> int:
        return next(i for i in self.targets if i not in self.done)

    def _status(self) -> tuple[bool, bool, float]:
        hit = self.touched()
        failure = False
        if hit is not None:
            i = self.candidates.index(hit)
            if i not in self.done:
                if i in self.targets and (not self.ordered or i == self._next()):
                    self.done.append(i)
                else:
                    failure = True
        success = len(self.done) == self.k
        shaping = 0.0
        if self.t >= self.choice_start and not success:
            d = np.linalg.norm(self.pos("ee") - self.touch_point(self.candidates[self._next()]))
            shaping = (len(self.done) + 1.0 - np.tanh(self.shaping_scale * d)) / self.k
        return success, failure, float(shaping)

    def _oracle_goal(self) -> np.ndarray | None:
        if self.t < self.choice_start or len(self.done) == self.k:
            return None
        return self.touch_point(self.candidates[self._next()])


class SeqOfColorsEnv(_ColourSet):
    """Targets shown one after another; touch them all, in any order."""


class ChainOfColorsEnv(_ColourSet):
    """Targets shown one after another; touch them in the order shown."""

    ordered = True


class BunchOfColorsEnv(_ColourSet):
    """Targets shown together; touch them all, in any order."""

    together = True
