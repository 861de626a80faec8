"""POPGym's Concentration (popgym 1.0.7) as a batched torch env.

A shuffled deck lies face down; each step flips one card. Two flipped cards of the same value (colour for Easy and
Medium, rank for Hard) stay face up for ``+1/(cards/2)``; otherwise both turn back for ``2 * -1/L``. Flipping a
card that is already face up costs ``-1/L`` per card in play and turns the cards in play back. ``L = ceil(2n -
n/(2n-1))`` steps at most (``n`` cards); the episode terminates when every card is face up.

Obs ``MultiDiscrete([D + 1] * cards)``: each position's value if it is face up or in play (the step's flips are
shown before they turn back), else ``D`` (face down). Action ``Discrete(cards)``. POPGym gives the previous action.

Injection: ``reset(options={"deck": LongTensor[N, cards]})`` lays out card ids by position (popgym's ``deck.idx``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor

from envs.popgym_torch.base import State
from envs.popgym_torch.cards import DECK_SIZE, KINDS, _CardGame
from envs.vector import Obs


class Concentration(_CardGame):
    """Batched Concentration (module docstring)."""

    obs_requires_prev_action = True

    def __init__(self, num_envs: int, num_decks: int = 1, deck_type: str = "ranks",
                 device: torch.device | str = "cpu"):
        super().__init__(num_envs, num_decks, device)
        if deck_type not in ("colors", "ranks"):  # suits: 13 cards of a suit cannot all be paired
            raise ValueError(f"deck_type must be colors or ranks, got {deck_type!r}")
        self._value, self.num_values = KINDS[deck_type]
        n = DECK_SIZE * self.num_decks
        self.max_episode_length = math.ceil(2 * n - (n / (2 * n - 1)))
        self.single_observation_space = spaces.MultiDiscrete([self.num_values + 1] * self.num_cards)
        self.single_action_space = spaces.Discrete(self.num_cards)
        self._success = 1.0 / (self.num_cards // 2)
        self._failure = -1.0 / self.max_episode_length

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        values = self._value(self._deck(n, options))  # by position
        zeros = torch.zeros(n, dtype=torch.int64, device=self.device)
        state = {"values": values, "face_up": torch.zeros_like(values, dtype=torch.bool),
                 "first": zeros - 1, "up": zeros, "t": zeros}  # first: the position flipped before, -1 if none
        return state, torch.full_like(values, self.num_values)

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        # Written with one gather/scatter per card in play instead of full-width ops where possible: the width
        # (52 or 104 positions) makes those the cost of a step.
        s = self.state
        values, face_up, first = s["values"], s["face_up"], s["first"]
        truncated = s["t"] >= self.max_episode_length - 1
        has_first = first >= 0
        first_at, act = first.clamp(min=0).unsqueeze(1), action.unsqueeze(1)
        value_first, value_act = values.gather(1, first_at), values.gather(1, act)
        up_first, up_act = face_up.gather(1, first_at).squeeze(1), face_up.gather(1, act).squeeze(1)

        obs = torch.where(face_up, values, self.num_values)  # the flips of this step are shown too
        obs.scatter_(1, first_at, torch.where(has_first.unsqueeze(1), value_first, obs.gather(1, first_at)))
        obs.scatter_(1, act, value_act)

        already_up = up_act | (has_first & up_first)
        match = has_first & (value_first == value_act).squeeze(1) & (first != action)
        pair_found = ~already_up & match
        face_up.scatter_(1, first_at, (up_first | pair_found).unsqueeze(1))
        face_up.scatter_(1, act, (up_act | pair_found).unsqueeze(1))
        s["up"] = s["up"] + 2 * pair_found
        in_play = 1 + has_first.long()
        reward = torch.where(
            already_up, self._failure * in_play,
            torch.where(has_first, torch.where(match, self._success, 2 * self._failure), 0.0))
        s["first"] = torch.where(already_up | has_first, -1, action)  # a second flip ends the turn
        s["t"] = s["t"] + 1
        return obs, reward.float(), pair_found & (s["up"] == self.num_cards), truncated
