"""rlmem environments: T-Maze, Rooms and POPGym (gym + torch-batched), MuJoCo vision manipulation
tasks (``envs.manipulation``), one vector-env entry point.

Importing ``envs`` registers ``rlmem/TMaze-v0``, ``rlmem/Rooms-v0``, ``rlmem/<PopgymClass>-v0`` and
``rlmem/<ManipulationTask>-v0`` (``envs.manipulation.TASKS``) with gymnasium.
:func:`make_vec` builds a :class:`envs.vector.VecEnv` from any registered id, on the torch-batched
implementation when one exists (``TORCH_VEC_ENVS``) or on gymnasium's vector envs otherwise.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any

import gymnasium as gym
import torch

from envs.manipulation import make_manipulation, register_manipulation
from envs.popgym import make_popgym, popgym_id, register_popgym
from envs.popgym_torch import TORCH_POPGYM
from envs.rooms import RoomsEnv, RoomsVec
from envs.tmaze import TMazeEnv, TMazeVec
from envs.vector import GymVecEnv, VecEnv
from envs.wrappers import (
    PlaceFromInfo,
    PrevActionReward,
    ReturnToGo,
    VecPrevActionReward,
    VecReturnToGo,
    add_observation_wrappers,
)

__all__ = [
    "TORCH_VEC_ENVS",
    "GymVecEnv",
    "PlaceFromInfo",
    "PrevActionReward",
    "ReturnToGo",
    "RoomsEnv",
    "RoomsVec",
    "TMazeEnv",
    "TMazeVec",
    "VecEnv",
    "VecPrevActionReward",
    "VecReturnToGo",
    "make_env",
    "make_manipulation",
    "make_popgym",
    "make_rooms",
    "make_tmaze",
    "make_vec",
    "registered_ids",
]

TMAZE_ID = "rlmem/TMaze-v0"
ROOMS_ID = "rlmem/Rooms-v0"

#: env id -> torch-batched class taking ``(num_envs, device=..., **env kwargs)``: T-Maze, Rooms, every POPGym env
TORCH_VEC_ENVS: dict[str, type] = {
    TMAZE_ID: TMazeVec, ROOMS_ID: RoomsVec, **{popgym_id(name): cls for name, cls in TORCH_POPGYM.items()}}

BACKENDS = ("auto", "torch", "gym")
_WRAPPER_KWARGS = ("prev_action", "prev_reward")


def make_tmaze(
    corridor_length: int = 10,
    variant: str = "elmur",
    prev_action: bool = False,
    prev_reward: bool = False,
    rtg_target: float | None = None,
) -> gym.Env:
    """Entry point of ``rlmem/TMaze-v0``: :class:`TMazeEnv`, optionally with previous action/reward and
    return-to-go conditioning (``rtg_target``, see :class:`envs.wrappers.ReturnToGo`)."""
    env: gym.Env = TMazeEnv(corridor_length=corridor_length, variant=variant)  # type: ignore[arg-type]
    return add_observation_wrappers(env, prev_action, prev_reward, rtg_target)


def make_rooms(
    rows: int = 2,
    cols: int = 2,
    colours: int = 4,
    visits: int = 6,
    dwell: int = 2,
    prev_action: bool = False,
    prev_reward: bool = False,
    rtg_target: float | None = None,
) -> gym.Env:
    """Entry point of ``rlmem/Rooms-v0``: :class:`RoomsEnv`, with the same optional wrappers as T-Maze."""
    env: gym.Env = RoomsEnv(rows=rows, cols=cols, colours=colours, visits=visits, dwell=dwell)
    return add_observation_wrappers(env, prev_action, prev_reward, rtg_target)


def _register() -> None:
    if TMAZE_ID not in gym.registry:
        gym.register(TMAZE_ID, entry_point="envs:make_tmaze")
    if ROOMS_ID not in gym.registry:
        gym.register(ROOMS_ID, entry_point="envs:make_rooms")
    register_popgym()
    register_manipulation()


_register()


def registered_ids() -> list[str]:
    """All registered ``rlmem/...`` env ids, sorted."""
    return sorted(env_id for env_id in gym.registry if env_id.startswith("rlmem/"))


def make_env(env_id: str, kwargs: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` for any id, plus the wrapper kwargs every id accepts:
    ``place_from_info=N`` moves ``info["place"]`` (one of N places) into the observation
    (:class:`envs.wrappers.PlaceFromInfo`, for ``env.place_key=place``)."""
    # Module-level so AsyncVectorEnv can pickle it by reference (the worker imports envs, which
    # registers the ids) -- a lambda would not carry the registration to a spawned worker.
    kwargs = dict(kwargs or {})
    places = kwargs.pop("place_from_info", None)
    env = gym.make(env_id, **kwargs)
    return PlaceFromInfo(env, places) if places is not None else env


def _check_id(env_id: str) -> None:
    if env_id in gym.registry:
        return
    known = list(gym.registry)
    close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.6)
    hint = f" Did you mean one of {close}?" if close else ""
    raise gym.error.UnregisteredEnv(
        f"Unknown environment id {env_id!r}.{hint} "
        f"rlmem ids: envs.registered_ids() ({len(registered_ids())} ids)."
    )


def make_vec(
    env_id: str,
    num_envs: int,
    kwargs: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    backend: str = "auto",
    asynchronous: bool = False,
) -> VecEnv:
    """``num_envs`` copies of ``env_id`` behind the tensor :class:`VecEnv` interface.

    Args:
        env_id: a registered gymnasium id (``registered_ids()`` lists rlmem's).
        num_envs: number of rows.
        kwargs: env constructor kwargs (as for ``gym.make``), e.g. ``{"corridor_length": 100}``;
            ``prev_action`` / ``prev_reward`` / ``rtg_target`` work with both backends, ``place_from_info``
            (see :func:`make_env`) with the gym backend.
        device: where observations, rewards and flags live (and where torch envs step).
        backend: ``"torch"`` (a ``TORCH_VEC_ENVS`` class), ``"gym"`` (gymnasium vector env over
            ``gym.make(env_id, **kwargs)``), or ``"auto"`` (torch when available, else gym).
        asynchronous: gym backend only: one subprocess per env.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; expected one of {BACKENDS}.")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
    _check_id(env_id)
    kwargs = dict(kwargs or {})
    if backend == "auto":
        backend = "torch" if env_id in TORCH_VEC_ENVS else "gym"
    if backend == "gym":
        fns = [functools.partial(make_env, env_id, kwargs) for _ in range(num_envs)]
        return GymVecEnv(fns, device=device, asynchronous=asynchronous)

    if env_id not in TORCH_VEC_ENVS:
        raise ValueError(
            f"No torch-batched implementation of {env_id!r} (there are for T-Maze, Rooms and every POPGym id: "
            "envs.TORCH_VEC_ENVS). Use backend='gym' (or 'auto')."
        )
    if "place_from_info" in kwargs:
        raise ValueError("place_from_info wraps gymnasium envs: use backend='gym', or an observation key of the "
                         "torch env as env.place_key")
    cls = TORCH_VEC_ENVS[env_id]
    wrap = {k: bool(kwargs.pop(k)) for k in _WRAPPER_KWARGS if k in kwargs}
    if getattr(cls, "obs_requires_prev_action", False):  # as envs.popgym does for the gym backend
        wrap["prev_action"] = True
    rtg_target = kwargs.pop("rtg_target", None)
    accepted = set(inspect.signature(cls).parameters) - {"num_envs", "device"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"{cls.__name__} does not accept {unknown}; accepted: {sorted(accepted | set(_WRAPPER_KWARGS))}."
        )
    venv: VecEnv = cls(num_envs, device=device, **kwargs)
    if any(wrap.values()):
        venv = VecPrevActionReward(venv, **wrap)
    if rtg_target is not None:
        venv = VecReturnToGo(venv, rtg_target)
    return venv
