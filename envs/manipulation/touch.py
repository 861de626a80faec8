"""``TouchTask``: the choice mechanics of the touch tasks (RememberColor/Shape, ShellGameTouch, Seq/ChainOfColors).

The agent *touches* a candidate by bringing the finger to rest at the candidate's touch point (just above it):
within ``reach`` metres of it with the end-effector slower than ``static_speed`` -- MIKASA-Robo's "TCP near
the object and robot static". Only visible candidates during the choice phase count.

Deviation from MIKASA-Robo: there, touching a wrong object has no consequence and success may come at any
step (its ``success_once`` metric), so a policy that visits every object in turn succeeds without memory.
Here the first touch that is not allowed ends the episode as a failure, so a memory-less policy scores at
chance (1 / number of candidates).
"""

from __future__ import annotations

import numpy as np

from envs.manipulation.base import TableTopEnv

CLEARANCE = 0.02  # finger centre above an object's top at its touch point


class TouchTask(TableTopEnv):
    """Subclasses fill ``self.candidates`` (prop names) in ``_props``; by default one candidate,
    ``self.candidates[self.target]``, is right (success), any other is wrong (failure), and the oracle goes to
    the right one once the choice phase begins. Dense shaping: ``1 - tanh(shaping_scale * d)``, ``d`` the
    finger's distance to the right candidate's touch point, in the choice phase."""

    reach: float = 0.035
    static_speed: float = 0.03
    choice_start: int = 10
    shaping_scale: float = 10.0
    target: int = 0

    candidates: list[str]

    def touch_point(self, name: str) -> np.ndarray:
        p = self.pos(name)
        p[2] += self.top[name] + CLEARANCE
        return p

    def touched(self) -> str | None:
        """The candidate the finger rests at, if any (choice phase only)."""
        if self.t < self.choice_start:
            return None
        ee = self.pos("ee")
        if float(np.linalg.norm(self.data.qvel[self._ee_dof])) > self.static_speed:
            return None
        for name in self.candidates:
            if self.visible(name) and np.linalg.norm(ee - self.touch_point(name)) <= self.reach:
                return name
        return None

    def phase(self) -> str:
        return "choice" if self.t >= self.choice_start else "cue"

    def _status(self) -> tuple[bool, bool, float]:
        hit = self.touched()
        right = self.candidates[self.target]
        shaping = 0.0
        if self.t >= self.choice_start:
            shaping = 1.0 - np.tanh(self.shaping_scale * np.linalg.norm(self.pos("ee") - self.touch_point(right)))
        return hit == right, hit is not None and hit != right, float(shaping)

    def _oracle_goal(self) -> np.ndarray | None:
        return self.touch_point(self.candidates[self.target]) if self.t >= self.choice_start else None
