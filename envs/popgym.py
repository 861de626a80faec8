"""POPGym (Morad et al. 2023) under versioned rlmem ids: ``rlmem/<ClassName>-v0``.

Every class of ``popgym.envs.ALL`` (42 envs: 14 families x Easy/Medium/Hard) is built directly
from its class: ``gym.make`` of POPGym's own ids breaks its wrappers (see DESIGN.md). Native
observation spaces are kept (Tuple / MultiDiscrete / Box; the policy encodes them).

* Battleship, Concentration, MineSweeper and MultiarmedBandit are only solvable with the previous
  action in the observation (the POPGym paper runs them that way): ``prev_action`` is forced on.
* CountRecall and MultiarmedBandit are wrapped in :class:`envs.wrappers.CopyInfo` (a fresh ``info``
  per call; see there why). Only those: the deep copy costs ~30 us per vector step of 8 envs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import popgym.envs as popgym_envs

from envs.wrappers import CopyInfo, add_observation_wrappers

#: families whose ``info`` objects are mutated after being returned
COPY_INFO_FAMILIES: tuple[str, ...] = ("CountRecall", "MultiarmedBandit")
#: family base classes whose envs always get the previous action
PREV_ACTION_FAMILIES: tuple[str, ...] = ("Battleship", "Concentration", "MineSweeper", "MultiarmedBandit")

POPGYM_CLASSES: dict[str, type[gym.Env]] = {cls.__name__: cls for cls in popgym_envs.ALL}


def needs_prev_action(name: str) -> bool:
    """Whether POPGym env ``name`` (a class name) requires the previous action in its observation."""
    return _in_family(name, PREV_ACTION_FAMILIES)


def _in_family(name: str, families: tuple[str, ...]) -> bool:
    return any(issubclass(POPGYM_CLASSES[name], getattr(popgym_envs, family)) for family in families)


def popgym_id(name: str) -> str:
    return f"rlmem/{name}-v0"


def make_popgym(
    name: str, prev_action: bool = False, prev_reward: bool = False, rtg_target: float | None = None, **kwargs: Any
) -> gym.Env:
    """Build POPGym env class ``name`` (e.g. ``"RepeatPreviousEasy"``), optionally with the previous
    action/reward in the observation (``prev_action`` is forced on where POPGym requires it).
    Extra ``kwargs`` go to the class constructor."""
    if name not in POPGYM_CLASSES:
        raise ValueError(f"Unknown POPGym env {name!r}; known: {sorted(POPGYM_CLASSES)}")
    env: gym.Env = POPGYM_CLASSES[name](**kwargs)
    if _in_family(name, COPY_INFO_FAMILIES):
        env = CopyInfo(env)
    return add_observation_wrappers(env, prev_action or needs_prev_action(name), prev_reward, rtg_target)


def register_popgym() -> list[str]:
    """Register every POPGym env as ``rlmem/<ClassName>-v0``; returns the ids."""
    ids = []
    for name in POPGYM_CLASSES:
        env_id = popgym_id(name)
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="envs.popgym:make_popgym", kwargs={"name": name})
        ids.append(env_id)
    return ids
