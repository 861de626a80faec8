"""POPGym (Morad et al. 2023) as batched torch envs: all 14 families of ``popgym.envs.ALL`` (42 envs).

Each class steps ``num_envs`` rows as tensors on one device with same-step autoreset (the ``envs.vector.VecEnv``
interface), with popgym 1.0.7's observation and action spaces, reward scale, episode lengths and termination rules
(``tests/test_popgym_torch.py`` checks them against popgym). ``make_vec("rlmem/<Name>-v0", n, backend="torch")``
builds them (``auto`` picks them too), adding the previous action where POPGym needs it, as the gym path does.

=========================  ===================================================================================
module                     families
=========================  ===================================================================================
``cards``                  Autoencode, RepeatFirst, RepeatPrevious, CountRecall, HigherLower
``concentration``          Concentration
``boards``                 Battleship, MineSweeper
``bandit``                 MultiarmedBandit
``control``                Position/Velocity/NoisyPositionOnly CartPole, Position/NoisyPositionOnly Pendulum
=========================  ===================================================================================
"""

from __future__ import annotations

from typing import Any

import torch

from envs.popgym_torch.bandit import MultiarmedBandit
from envs.popgym_torch.base import PopgymVec
from envs.popgym_torch.boards import Battleship, MineSweeper
from envs.popgym_torch.cards import Autoencode, CountRecall, HigherLower, RepeatFirst, RepeatPrevious
from envs.popgym_torch.concentration import Concentration
from envs.popgym_torch.control import CartPole, Pendulum

__all__ = ["LEVELS", "PopgymVec", "TORCH_POPGYM", "family_of"]

_EMH = ("Easy", "Medium", "Hard")

#: popgym class name -> (torch family, constructor kwargs): popgym 1.0.7's Easy / Medium / Hard settings
LEVELS: dict[str, tuple[type[PopgymVec], dict[str, Any]]] = {
    **{f"Autoencode{lv}": (Autoencode, {"num_decks": d}) for lv, d in zip(_EMH, (1, 2, 3), strict=True)},
    **{f"Battleship{lv}": (Battleship, {"board_size": b}) for lv, b in zip(_EMH, (8, 10, 12), strict=True)},
    **{f"Concentration{lv}": (Concentration, {"num_decks": d, "deck_type": k})
       for lv, d, k in zip(_EMH, (1, 2, 1), ("colors", "colors", "ranks"), strict=True)},
    **{f"CountRecall{lv}": (CountRecall, {"num_decks": d, "deck_type": k})
       for lv, d, k in zip(_EMH, (1, 2, 4), ("colors", "suits", "ranks"), strict=True)},
    **{f"HigherLower{lv}": (HigherLower, {"num_decks": d}) for lv, d in zip(_EMH, (1, 2, 3), strict=True)},
    **{f"MineSweeper{lv}": (MineSweeper, {"dims": dims, "num_mines": m})
       for lv, dims, m in zip(_EMH, ((4, 4), (6, 6), (8, 8)), (2, 6, 10), strict=True)},
    **{f"MultiarmedBandit{lv}": (MultiarmedBandit, {"num_bandits": k, "episode_length": L})
       for lv, k, L in zip(_EMH, (10, 20, 30), (200, 400, 600), strict=True)},
    **{f"PositionOnlyCartPole{lv}": (CartPole, {"observe": "position", "max_episode_length": L})
       for lv, L in zip(_EMH, (200, 400, 600), strict=True)},
    **{f"NoisyPositionOnlyCartPole{lv}": (CartPole, {"observe": "position", "noise_sigma": sd})
       for lv, sd in zip(_EMH, (0.1, 0.2, 0.3), strict=True)},
    **{f"VelocityOnlyCartPole{lv}": (CartPole, {"observe": "velocity", "max_episode_length": L})
       for lv, L in zip(_EMH, (200, 400, 600), strict=True)},
    **{f"PositionOnlyPendulum{lv}": (Pendulum, {"max_episode_length": L})
       for lv, L in zip(_EMH, (200, 150, 100), strict=True)},
    **{f"NoisyPositionOnlyPendulum{lv}": (Pendulum, {"noise_sigma": sd}) for lv, sd in zip(_EMH, (0.1, 0.2, 0.3),
                                                                                           strict=True)},
    **{f"RepeatFirst{lv}": (RepeatFirst, {"num_decks": d}) for lv, d in zip(_EMH, (1, 8, 16), strict=True)},
    **{f"RepeatPrevious{lv}": (RepeatPrevious, {"num_decks": d, "k": k})
       for lv, d, k in zip(_EMH, (1, 2, 3), (4, 32, 64), strict=True)},
}


def _level(name: str) -> type[PopgymVec]:
    """A class for one level, taking ``(num_envs, device)`` like the other torch envs of ``TORCH_VEC_ENVS``."""
    family, params = LEVELS[name]

    def __init__(self: PopgymVec, num_envs: int, device: torch.device | str = "cpu") -> None:
        family.__init__(self, num_envs, device=device, **params)

    doc = f"popgym's ``{name}`` as a batched torch env: ``{family.__name__}({params})``.\n\n{family.__doc__}"
    return type(name, (family,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


#: popgym class name -> torch class of that level, ``cls(num_envs, device=...)``
TORCH_POPGYM: dict[str, type[PopgymVec]] = {name: _level(name) for name in LEVELS}
globals().update(TORCH_POPGYM)  # envs.popgym_torch.RepeatFirstEasy etc.: importable, and picklable by reference


def family_of(name: str) -> type[PopgymVec]:
    """The torch family class behind a popgym class name (``"RepeatFirstEasy"`` -> ``RepeatFirst``)."""
    return LEVELS[name][0]
