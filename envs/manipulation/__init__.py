"""Vision-based memory manipulation tasks on MuJoCo: a table, a three-axis end-effector, cubes and cups, an RGB
camera. They follow MIKASA-Robo's task definitions (DESIGN.md, "Environments"), which need ManiSkill3 on a CUDA
GPU; these run anywhere MuJoCo runs (offscreen through EGL: the GPU's where present, Mesa's otherwise).

Registered ids (``TASKS``), each ``gym.make("rlmem/<Task>-v0", **kwargs)``; common kwargs: ``width``,
``height`` (64), ``proprio`` (True), ``reward_mode`` ("sparse" | "dense"), ``render_mode``, ``render_size``,
and the observation wrappers every rlmem env takes (``prev_action``, ``prev_reward``, ``rtg_target``).

=====================  ======  ==========  =============================================
id                     length  memory      task
=====================  ======  ==========  =============================================
RememberColor3/5/9-v0  60      object      touch the cube of the cue's colour (3/5/9 cubes)
RememberShape3-v0      60      object      touch the object of the cue's shape
ShellGameTouch-v0      90      spatial     touch the cup the ball went under
BunchOfColors3-v0      120     capacity    touch the 3 cubes shown together
SeqOfColors3-v0        120     sequential  touch the 3 cubes shown one by one, any order
ChainOfColors3-v0      120     sequential  ... in the order shown
TakeItBack-v0          180     spatial     push the cube onto the goal, then back to its unmarked start
=====================  ======  ==========  =============================================

Every task has a scripted privileged oracle (``env.unwrapped.oracle_action()``, 100% success).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

#: task name -> (class path, constructor kwargs)
TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "RememberColor3": ("envs.manipulation.remember:RememberColorEnv", {"n": 3}),
    "RememberColor5": ("envs.manipulation.remember:RememberColorEnv", {"n": 5}),
    "RememberColor9": ("envs.manipulation.remember:RememberColorEnv", {"n": 9}),
    "RememberShape3": ("envs.manipulation.remember:RememberShapeEnv", {}),
    "ShellGameTouch": ("envs.manipulation.shell_game:ShellGameTouchEnv", {}),
    "BunchOfColors3": ("envs.manipulation.colour_set:BunchOfColorsEnv", {}),
    "SeqOfColors3": ("envs.manipulation.colour_set:SeqOfColorsEnv", {}),
    "ChainOfColors3": ("envs.manipulation.colour_set:ChainOfColorsEnv", {}),
    "TakeItBack": ("envs.manipulation.take_it_back:TakeItBackEnv", {}),
}


def make_manipulation(task: str, prev_action: bool = False, prev_reward: bool = False,
                      rtg_target: float | None = None, **kwargs: Any) -> gym.Env:
    """Entry point of ``rlmem/<task>-v0``: the task's env (imported here, so MuJoCo loads only when a
    manipulation task is made), with rlmem's optional observation wrappers."""
    import importlib

    from envs.wrappers import add_observation_wrappers

    if task not in TASKS:
        raise ValueError(f"unknown manipulation task {task!r}; known: {sorted(TASKS)}")
    path, fixed = TASKS[task]
    clash = sorted(set(kwargs) & set(fixed))
    if clash:
        raise ValueError(f"{task} fixes {clash} ({fixed}); pick another registered id for other values")
    module, cls = path.split(":")
    env = getattr(importlib.import_module(module), cls)(**fixed, **kwargs)
    return add_observation_wrappers(env, prev_action, prev_reward, rtg_target)


def register_manipulation() -> None:
    for task in TASKS:
        env_id = f"rlmem/{task}-v0"
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="envs.manipulation:make_manipulation", kwargs={"task": task})
