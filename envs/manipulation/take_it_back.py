"""TakeItBack: long-horizon spatial memory with a pushed object. After MIKASA-Robo's TakeItBack-v0.

## Description

A green cube stands on the left of the table, in one of three lanes; a red goal disc lies on the right (drawn
independently of the start). The agent pushes the cube onto the goal (its centre within ``radius`` = 4 cm of the
disc's); the disc then turns purple, and the agent must push the cube back to where it started (within
``radius`` of its initial position). The start is never marked: only the frames before the cube moved show
it. Episode length 180 (truncated); no failure state.

## Spaces, rewards

See :mod:`envs.manipulation.base`. Dense shaping, as a progress fraction: before the goal,
``(1 - tanh(5 d_goal)) / 2``; after it, ``1/2 + (1 - tanh(5 d_start)) / 2`` (``d`` the cube's distance to the
goal or to its start).

## Oracle

A pushing controller with privileged state (the start position): it places the finger behind the cube on the
line from the target through the cube, low on the table, then pushes along that line, and re-places itself
whenever the cube drifts off the line.

## Version History

* v0: initial version.
"""

from __future__ import annotations

import numpy as np

from envs.manipulation.base import TableTopEnv
from envs.manipulation.scene import COLOURS, FINGER_RADIUS, Prop, box, disc

HALF = 0.02  # cube half-size
PUSH_Z = 0.018  # finger height while pushing (the finger's top is at the cube's mid-height)
HOVER_Z = 0.075  # finger height while repositioning (above the cube)
LANES = (-0.04, 0.04, 0.12)  # the cube starts in one of three lanes (y), as MIKASA-Robo's


class TakeItBackEnv(TableTopEnv):
    """See the module docstring."""

    max_steps = 180
    radius = 0.04

    def _props(self) -> list[Prop]:
        return [box("cube", HALF, free=True, rgba=(*COLOURS["green"], 1.0), friction=0.6, mass=0.1),
                disc("goal", rgba=(*COLOURS["red"], 1.0)), disc("goal_done", rgba=(*COLOURS["magenta"], 1.0))]

    def _reset_task(self) -> None:
        rng = self.np_random
        # start and goal are drawn independently (as MIKASA-Robo's): the goal says nothing about the start's lane
        lane = LANES[int(rng.integers(len(LANES)))]
        self.start = np.array([rng.uniform(-0.14, -0.06), lane + rng.uniform(-0.015, 0.015), 0.0])
        self.goal = np.array([rng.uniform(0.08, 0.12), rng.uniform(0.04, 0.08), 0.0])
        self.set_pose("cube", self.start)
        self.set_pose("goal", self.goal)
        self.set_pose("goal_done", self.goal)
        self.show("goal_done", False)
        self.reached = False
        self._mode = "rise"  # the oracle's phase

    def _flat(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a[:2] - b[:2]))

    def _status(self) -> tuple[bool, bool, float]:
        cube = self.pos("cube")
        if not self.reached and self._flat(cube, self.goal) <= self.radius:
            self.reached = True  # the disc turns purple
            self.show("goal", False)
            self.show("goal_done", True)
        success = self.reached and self._flat(cube, self.start) <= self.radius
        if self.reached:
            shaping = 0.5 + 0.5 * (1.0 - np.tanh(5.0 * self._flat(cube, self.start)))
        else:
            shaping = 0.5 * (1.0 - np.tanh(5.0 * self._flat(cube, self.goal)))
        return bool(success), False, float(shaping)

    def phase(self) -> str:
        return "back" if self.reached else "out"

    def _oracle_goal(self) -> np.ndarray | None:
        """rise -> over (to the spot behind the cube, above it) -> down -> push, back to rise when the cube
        leaves the push line."""
        cube, ee = self.pos("cube"), self.pos("ee")
        target = self.start if self.reached else self.goal
        d = (target - cube)[:2]
        dist = float(np.linalg.norm(d))
        u = d / max(dist, 1e-6)
        behind = cube[:2] - u * (HALF + FINGER_RADIUS + 0.01)  # where the finger starts a push along u
        if dist < 0.01:  # there: lift off and wait
            self._mode = "rise"
            return np.array([*ee[:2], HOVER_Z])
        if self._mode == "push":
            off_line = abs(float(u[0] * (ee[1] - cube[1]) - u[1] * (ee[0] - cube[0])))
            if off_line > 0.006 or float(np.dot(ee[:2] - cube[:2], u)) > -HALF:
                self._mode = "rise"
        if self._mode == "rise" and ee[2] >= HOVER_Z - 0.01:
            self._mode = "over"
        if self._mode == "over" and np.linalg.norm(ee[:2] - behind) < 0.008:
            self._mode = "down"
        if self._mode == "down" and ee[2] <= PUSH_Z + 0.008:
            self._mode = "push"
        if self._mode == "rise":
            return np.array([*ee[:2], HOVER_Z])
        if self._mode == "over":
            return np.array([*behind, HOVER_Z])
        if self._mode == "down":
            return np.array([*behind, PUSH_Z])
        # push towards the target, slowing down as the cube nears it
        return np.array([*(cube[:2] + u * (min(dist, 0.03) - HALF - FINGER_RADIUS)), PUSH_Z])
