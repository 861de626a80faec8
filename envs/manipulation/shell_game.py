"""ShellGameTouch: spatial memory. After MIKASA-Robo's ShellGameTouch-v0.

## Description

Three identical cups stand in a row, 0.12 m apart, the row's centre jittered by up to 5 cm. Steps 0-4 show a
red ball where one of the cups will stand (the cups are not there yet); from step 5 the three cups stand on
their spots and the ball is hidden under one of them. The agent must touch the cup over the ball. The cups
look alike and never move: only where the ball was tells them apart. Touch: see
:mod:`envs.manipulation.touch` (touching a wrong cup ends the episode). Episode length 90 (truncated).

## Spaces, rewards

See :mod:`envs.manipulation.base`. Dense shaping (choice phase): ``1 - tanh(5 d)``, ``d`` the finger's
distance to the right cup's touch point.

## Oracle

Waits at its start until step 5, then goes to the touch point of the cup over the ball.

## Version History

* v0: initial version.
"""

from __future__ import annotations

import numpy as np

from envs.manipulation.scene import COLOURS, Prop, cup, sphere
from envs.manipulation.touch import TouchTask

SPACING = 0.12


class ShellGameTouchEnv(TouchTask):
    """See the module docstring."""

    max_steps = 90
    choice_start = 5
    shaping_scale = 5.0

    def _props(self) -> list[Prop]:
        self.candidates = ["cup0", "cup1", "cup2"]
        grey = (0.55, 0.55, 0.6, 1.0)
        return [sphere("ball", 0.02, rgba=(*COLOURS["red"], 1.0))] + [cup(c, rgba=grey) for c in self.candidates]

    def _reset_task(self) -> None:
        rng = self.np_random
        centre = np.array([*rng.uniform(-0.05, 0.05, 2), 0.0]) + np.array([0.0, 0.05, 0.0])
        self.target = int(rng.integers(3))
        for i, name in enumerate(self.candidates):
            self.set_pose(name, centre + np.array([(i - 1) * SPACING, 0.0, 0.0]))
            self.show(name, False)
        self.set_pose("ball", self.pos(self.candidates[self.target]))

    def _update_task(self) -> None:
        if self.t == self.choice_start:
            self.show("ball", False)
            for name in self.candidates:
                self.show(name, True)
