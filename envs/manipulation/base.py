"""``TableTopEnv``: what every manipulation task shares (scene, control, camera observation, rewards,
termination, oracle plumbing); a task subclass says what is on the table and when, what counts as success,
and where its oracle goes.

## Control

Actions are end-effector position deltas ``a in [-1, 1]^3``: the setpoint of the end-effector's position
controller becomes its current position plus ``a * max_delta`` (metres; default 0.03), clipped to the
workspace, and the physics runs ``frame_skip`` steps of 5 ms (default 10: 20 control steps per second).
Relative to the *current* position, as ManiSkill's ``pd_ee_delta_pos``, so a blocked end-effector does not
wind up a far setpoint.

## Observations

``Dict``: ``"rgb"``: ``Box(0, 255, (height, width, 3), uint8)`` from the fixed camera (64x64 by default);
with ``proprio=True`` also ``"proprio"``: ``Box((6,), float32)``, the end-effector position (m, within the
workspace) and velocity (m/s, clipped to +-2).

## Rewards

``reward_mode="sparse"``: 1 on the step that succeeds, else 0. ``"dense"``: 1 on success, else a task-defined
shaping term in [0, 0.5] (progress towards the right object once the choice is visible), so a successful
episode always out-earns a failed one step for step.

## Episode end

Terminates on success and on a task-defined failure (touching a wrong object); truncates after
``max_steps`` (the task's episode length). ``info["success"]`` is set on every step (True only on the step that
succeeds), ``info["phase"]`` names the task phase, ``info["t"]`` is the step index.

Rendering uses MuJoCo's offscreen renderer (``MUJOCO_GL=egl``, which this module sets before importing mujoco:
the GPU's EGL where there is one,
Mesa's software one otherwise); it is created lazily, so an env can be built in one process and stepped in
another. ``render()`` (``render_mode="rgb_array"``) returns a ``render_size`` square frame from the same
camera, for videos.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym

# MuJoCo reads MUJOCO_GL once, at its first import: headless offscreen rendering needs EGL (the GPU's, or Mesa's
# software one). Set here, where mujoco is first imported, not on `import envs`: a process that never builds a
# manipulation env keeps its environment as it was.
os.environ.setdefault("MUJOCO_GL", "egl")
# Mesa's software rasterizer splits each frame over one thread per core; a 64x64 frame is too small for that to
# pay, and vectorized envs render in parallel processes anyway (experiments/bench_manipulation_fps.py).
os.environ.setdefault("LP_NUM_THREADS", "1")

import mujoco  # noqa: E402  (after MUJOCO_GL)
import numpy as np
from gymnasium import spaces

from envs.manipulation.scene import (
    EE_START,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
    Prop,
    SceneSpec,
    build_mjcf,
)

MAX_SPEED = 2.0  # m/s, bound of the proprioceptive velocity
_HIDDEN_GROUP = 5  # geoms of hidden props move to this group, which the renderer does not draw
# contact bits: finger collides with everything; kinematic props collide only with the finger
_TABLE_BITS, _KIN_BITS = 1, 2


class TableTopEnv(gym.Env[dict, np.ndarray]):
    """Base class; see the module docstring. Subclasses set ``max_steps`` and implement :meth:`_props`,
    :meth:`_reset_task`, :meth:`_update_task`, :meth:`_status` and :meth:`_oracle_goal`.

    Args:
        width, height: observation image size.
        proprio: add the end-effector position and velocity to the observation.
        reward_mode: ``"sparse"`` or ``"dense"``.
        render_mode: ``None`` or ``"rgb_array"``.
        render_size: side of :meth:`render`'s frames.
        max_delta: metres the setpoint moves per unit of action.
        frame_skip: physics steps (5 ms) per control step.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}
    max_steps: int = 60

    def __init__(self, width: int = 64, height: int = 64, proprio: bool = True, reward_mode: str = "sparse",
                 render_mode: str | None = None, render_size: int = 256, max_delta: float = 0.03,
                 frame_skip: int = 10):
        if reward_mode not in ("sparse", "dense"):
            raise ValueError(f"reward_mode={reward_mode!r}: expected 'sparse' or 'dense'")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: expected None or 'rgb_array'")
        if min(width, height, render_size) < 8 or frame_skip < 1 or max_delta <= 0:
            raise ValueError("need width, height, render_size >= 8, frame_skip >= 1 and max_delta > 0")
        self.width, self.height, self.proprio = width, height, proprio
        self.reward_mode, self.render_mode, self.render_size = reward_mode, render_mode, render_size
        self.max_delta, self.frame_skip = max_delta, frame_skip
        props = self._props()
        spec = SceneSpec(props=props, width=max(width, render_size), height=max(height, render_size))
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(spec))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._free = {p.name: p.free for p in props}
        self.top = {p.name: p.top for p in props}
        self._geoms = {p.name: [m.geom(f"{p.name}/{i}").id for i in range(len(p.geoms))] for p in props}
        for p in props:
            for g in self._geoms[p.name]:
                m.geom_contype[g] = 0 if not p.collide else _TABLE_BITS if p.free else _KIN_BITS
                m.geom_conaffinity[g] = _TABLE_BITS if p.free and p.collide else 0
        self._finger = m.geom("finger").id
        m.geom_contype[self._finger], m.geom_conaffinity[self._finger] = _TABLE_BITS, _TABLE_BITS | _KIN_BITS
        self._bits = (m.geom_contype.copy(), m.geom_conaffinity.copy())
        self._ee_qpos = np.array([m.joint(f"ee_{a}").qposadr[0] for a in "xyz"])
        self._ee_dof = np.array([m.joint(f"ee_{a}").dofadr[0] for a in "xyz"])
        self._body = {p.name: m.body(p.name).id for p in props}
        self._mocap = {p.name: int(m.body_mocapid[self._body[p.name]]) for p in props if not p.free}
        self._qadr = {p.name: m.joint(p.name).qposadr[0] for p in props if p.free}
        self._vadr = {p.name: m.joint(p.name).dofadr[0] for p in props if p.free}
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._vopt = mujoco.MjvOption()
        self._vopt.geomgroup[_HIDDEN_GROUP] = 0
        self.t = 0
        obs: dict[str, spaces.Space[Any]] = {"rgb": spaces.Box(0, 255, (height, width, 3), np.uint8)}
        if proprio:  # position within the workspace (joint limits), velocity clipped to +-MAX_SPEED
            self._proprio_low = np.concatenate([WORKSPACE_LOW, np.full(3, -MAX_SPEED)]).astype(np.float32)
            self._proprio_high = np.concatenate([WORKSPACE_HIGH, np.full(3, MAX_SPEED)]).astype(np.float32)
            obs["proprio"] = spaces.Box(self._proprio_low, self._proprio_high, dtype=np.float32)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)

    # ------------------------------------------------------------------ task hooks
    def _props(self) -> list[Prop]:
        raise NotImplementedError

    def _reset_task(self) -> None:
        """Draw the episode (from ``self.np_random``) and arrange the props for step 0."""
        raise NotImplementedError

    def _update_task(self) -> None:
        """After the physics of a step: change what is shown for step ``self.t`` (the observation to come)."""

    def _status(self) -> tuple[bool, bool, float]:
        """``(success, failure, shaping in [0, 1])`` after the physics of a step."""
        raise NotImplementedError

    def _oracle_goal(self) -> np.ndarray | None:
        """Where the oracle's end-effector should go now (privileged state); ``None``: stay."""
        raise NotImplementedError

    def phase(self) -> str:
        return "task"

    # ------------------------------------------------------------------ helpers for tasks
    def set_pose(self, name: str, pos: np.ndarray | tuple[float, ...]) -> None:
        """Place a prop (kinematic: its mocap target; free: its pose, at rest)."""
        if self._free[name]:
            a, v = self._qadr[name], self._vadr[name]
            self.data.qpos[a:a + 3] = pos
            self.data.qpos[a + 3:a + 7] = (1.0, 0.0, 0.0, 0.0)
            self.data.qvel[v:v + 6] = 0.0
        else:
            self.data.mocap_pos[self._mocap[name]] = pos

    def pos(self, name: str) -> np.ndarray:
        """A prop's (or ``"ee"``'s) current position."""
        if name == "ee":
            return self.data.qpos[self._ee_qpos].copy()
        if self._free[name]:
            return self.data.qpos[self._qadr[name]:self._qadr[name] + 3].copy()
        return self.data.mocap_pos[self._mocap[name]].copy()

    def set_rgba(self, name: str, rgba: tuple[float, ...] | np.ndarray) -> None:
        for g in self._geoms[name]:
            self.model.geom_rgba[g, :len(rgba)] = rgba

    def show(self, name: str, visible: bool = True) -> None:
        """Show or hide a prop (hidden: not drawn, no contacts)."""
        for g in self._geoms[name]:
            self.model.geom_group[g] = 0 if visible else _HIDDEN_GROUP
            self.model.geom_contype[g] = self._bits[0][g] if visible else 0
            self.model.geom_conaffinity[g] = self._bits[1][g] if visible else 0

    def visible(self, name: str) -> bool:
        return bool(self.model.geom_group[self._geoms[name][0]] != _HIDDEN_GROUP)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._ee_qpos] = EE_START
        self.data.ctrl[:3] = EE_START
        self.t = 0
        for name in self._geoms:
            self.show(name, True)
        self._reset_task()
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {"success": False, "phase": self.phase(), "t": 0}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        a = np.asarray(action, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"non-finite action {a}")
        a = np.clip(a, -1.0, 1.0)
        self.data.ctrl[:3] = np.clip(self.pos("ee") + a * self.max_delta, WORKSPACE_LOW, WORKSPACE_HIGH)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        success, failure, shaping = self._status()
        self.t += 1
        if not (success or failure):
            self._update_task()
            mujoco.mj_forward(self.model, self.data)
        if self.reward_mode == "sparse":
            reward = float(success)
        else:
            reward = 1.0 if success else 0.5 * float(np.clip(shaping, 0.0, 1.0))
        terminated = success or failure
        truncated = not terminated and self.t >= self.max_steps
        return self._obs(), reward, terminated, truncated, {"success": success, "phase": self.phase(), "t": self.t}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._frame(self.render_size, self.render_size)

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    def oracle_action(self) -> np.ndarray:
        """The scripted expert's action (privileged state): head for :meth:`_oracle_goal` at full speed."""
        goal = self._oracle_goal()
        if goal is None:
            return np.zeros(3, np.float32)
        return np.clip((np.asarray(goal) - self.pos("ee")) / self.max_delta, -1.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ internals
    def _frame(self, h: int, w: int) -> np.ndarray:
        r = self._renderers.get((h, w))
        if r is None:
            try:
                r = self._renderers[(h, w)] = mujoco.Renderer(self.model, h, w)
            except mujoco.FatalError as e:  # MuJoCo picks its GL backend once, when it is first imported
                raise RuntimeError(
                    f"MuJoCo cannot render offscreen (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): it was imported "
                    "before rlmem's manipulation envs set MUJOCO_GL=egl. Export MUJOCO_GL=egl, or build the env before "
                    "importing mujoco."
                ) from e
        r.update_scene(self.data, camera="cam", scene_option=self._vopt)
        return r.render()

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {"rgb": self._frame(self.height, self.width)}
        if self.proprio:
            raw = np.concatenate([self.pos("ee"), self.data.qvel[self._ee_dof]]).astype(np.float32)
            obs["proprio"] = np.clip(raw, self._proprio_low, self._proprio_high)
        return obs
