"""The card games of POPGym (popgym 1.0.7) as batched torch envs: Autoencode, RepeatFirst, RepeatPrevious,
CountRecall and HigherLower.

A deck is popgym's ``Deck``: ``52 * num_decks`` card ids, card ``c`` has suit ``c % 4``, rank ``(c % 52) // 4``
and colour ``c % 2``. Each row holds its shuffled deck as the **dealing order** ``deck[:, p]`` (the ``p``-th card
dealt; popgym deals from the end of its ``idx`` array, so popgym's ``idx`` is ``deck.flip(1)``). Only the values
a game reads are kept (suits, ranks or colours), as int64 ``[N, cards]``.

Injection (parity tests): ``reset(options={"deck": LongTensor[N, cards]})`` plays the given dealing orders of card
ids in the first episode of every row; CountRecall also takes ``"query_deck"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from gymnasium import spaces
from torch import Tensor

from envs.popgym_torch.base import PopgymVec, State, at
from envs.vector import Obs

DECK_SIZE, SUITS, RANKS, COLOURS = 52, 4, 13, 2


def suit(card: Tensor) -> Tensor:
    return card % 4


def rank(card: Tensor) -> Tensor:
    return (card % DECK_SIZE) // 4


def colour(card: Tensor) -> Tensor:
    return card % 2


KINDS = {"suits": (suit, SUITS), "ranks": (rank, RANKS), "colors": (colour, COLOURS)}


class _CardGame(PopgymVec):
    """Shared by the card games: decks of ``num_decks * 52`` cards, drawn or injected."""

    reset_options: ClassVar[tuple[str, ...]] = ("deck",)

    def __init__(self, num_envs: int, num_decks: int, device: torch.device | str = "cpu"):
        super().__init__(num_envs, device)
        self.num_decks = int(num_decks)
        self.num_cards = DECK_SIZE * self.num_decks
        self._never = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)  # never written

    def _deck(self, n: int, options: Mapping[str, Any], key: str = "deck") -> Tensor:
        """Dealing orders of card ids ``[n, cards]``: uniform random permutations, or ``options[key]``."""
        if key in options:
            deck = self._option(options, key, (n, self.num_cards), torch.int64)
            ids = torch.arange(self.num_cards, device=self.device).expand(n, -1)
            if not torch.equal(deck.sort(dim=1).values, ids):
                raise ValueError(f"options[{key!r}]: every row must be a permutation of 0..{self.num_cards - 1}")
            return deck
        return self._rand(n, self.num_cards).argsort(dim=1)


class RepeatFirst(_CardGame):
    """Output the suit of the first card at every step (popgym ``RepeatFirst``).

    Obs ``Discrete(4)``: the suit dealt. Action ``Discrete(4)``. Reward ``+-1/(cards - 1)`` per step; the episode
    terminates after ``cards - 1`` steps.
    """

    def __init__(self, num_envs: int, num_decks: int = 1, device: torch.device | str = "cpu"):
        super().__init__(num_envs, num_decks, device)
        self.max_episode_length = self.num_cards - 1
        self.single_observation_space = spaces.Discrete(SUITS)
        self.single_action_space = spaces.Discrete(SUITS)
        self._scale = 1.0 / (self.num_cards - 1)

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        suits = suit(self._deck(n, options))
        first = suits[:, 0].clone()
        pos = torch.ones(n, dtype=torch.int64, device=self.device)  # cards dealt
        return {"suits": suits, "first": first, "pos": pos}, first.clone()

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        reward = torch.where(action == s["first"], self._scale, -self._scale)
        terminated = s["pos"] == self.num_cards - 1  # one card left in the deck: deal it and stop
        card = at(s["suits"], s["pos"])
        s["pos"] = s["pos"] + 1
        return card, reward, terminated, self._never


class RepeatPrevious(_CardGame):
    """Output the suit of the card dealt ``k`` steps ago (popgym ``RepeatPrevious``).

    Obs ``Discrete(4)``: the suit dealt. Action ``Discrete(4)``. From the ``k``-th step on, reward
    ``+-1/(cards - k)``; the episode terminates after ``cards - 1`` steps.
    """

    def __init__(self, num_envs: int, num_decks: int = 1, k: int = 4, device: torch.device | str = "cpu"):
        super().__init__(num_envs, num_decks, device)
        if not 0 < k < self.num_cards:
            raise ValueError(f"k must be in 1..{self.num_cards - 1}, got {k}")
        self.k = int(k)
        self.max_episode_length = self.num_cards - 1
        self.single_observation_space = spaces.Discrete(SUITS)
        self.single_action_space = spaces.Discrete(SUITS)
        self._scale = 1.0 / (self.num_cards - self.k)

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        suits = suit(self._deck(n, options))
        # answers[:, p]: the suit the agent must name at its step p + 1 (the card k steps back), -1 before step k
        answers = torch.cat((suits.new_full((n, self.k - 1), -1), suits[:, : self.num_cards - self.k + 1]), dim=1)
        pos = torch.ones(n, 1, dtype=torch.int64, device=self.device)
        return {"suits": suits, "answers": answers, "pos": pos}, suits[:, 0].clone()

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        pos = s["pos"]  # [N, 1]: cards dealt
        answer = s["answers"].gather(1, pos - 1).squeeze(1)
        reward = torch.where(action == answer, self._scale, -self._scale) * (answer >= 0)
        terminated = pos.squeeze(1) == self.num_cards - 1
        card = s["suits"].gather(1, pos).squeeze(1)
        s["pos"] = pos + 1
        return card, reward, terminated, self._never


class Autoencode(_CardGame):
    """Watch the deck being dealt, then recite its suits in reverse order (popgym ``Autoencode``).

    Obs ``Tuple(Discrete(2), Discrete(4))``: (mode: 1 watch, 0 play; the suit dealt, 0 while playing). Action
    ``Discrete(4)``. Watching ``cards - 1`` steps earns 0; each of the ``cards`` play steps earns ``+-1/cards``.
    """

    def __init__(self, num_envs: int, num_decks: int = 1, device: torch.device | str = "cpu"):
        super().__init__(num_envs, num_decks, device)
        self.max_episode_length = 2 * self.num_cards - 1
        self.single_observation_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(SUITS)))
        self.single_action_space = spaces.Discrete(SUITS)
        self._scale = 1.0 / self.num_cards

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        suits = suit(self._deck(n, options))
        ones = torch.ones(n, dtype=torch.int64, device=self.device)
        state = {"suits": suits, "pos": ones, "watch": ones.bool()}  # pos: cards in the dealt pile
        return state, (ones.clone(), suits[:, 0].clone())

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        pos, watch = s["pos"], s["watch"]
        # watching: deal one more card; playing: the agent names the top of the dealt pile, which is removed
        top = at(s["suits"], pos - 1)
        reward = torch.where(action == top, self._scale, -self._scale) * ~watch
        terminated = ~watch & (pos == 1)
        new_pos = torch.where(watch, pos + 1, pos - 1)
        dealt = at(s["suits"], (new_pos - 1).clamp_(min=0))
        s["watch"] = watch & (new_pos < self.num_cards)
        s["pos"] = new_pos
        obs = (s["watch"].long(), dealt * watch)
        return obs, reward, terminated, self._never


class CountRecall(_CardGame):
    """Count how often the queried value was dealt so far (popgym ``CountRecall``).

    Two decks are shuffled: values are dealt from one, queries from the other. Obs ``MultiDiscrete([D, D])``:
    (value dealt, value queried), ``D`` distinct values of ``deck_type``. Action ``Discrete(cards // D + 1)``: the
    count of the previous query among the values dealt before this step. Reward ``+-1/(cards - 1)``; the episode
    terminates after ``cards - 1`` steps. Injection: ``deck`` (values) and ``query_deck``.
    """

    reset_options = ("deck", "query_deck")

    def __init__(self, num_envs: int, num_decks: int = 1, deck_type: str = "colors",
                 device: torch.device | str = "cpu"):
        super().__init__(num_envs, num_decks, device)
        if deck_type not in KINDS:
            raise ValueError(f"deck_type must be one of {sorted(KINDS)}, got {deck_type!r}")
        self._value, self.num_values = KINDS[deck_type]
        max_count = self.num_cards // self.num_values
        self.max_episode_length = self.num_cards - 1
        self.single_observation_space = spaces.MultiDiscrete([self.num_values] * 2)
        self.single_action_space = spaces.Discrete(max_count + 1)
        self._scale = 1.0 / self.max_episode_length

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        values = self._value(self._deck(n, options))
        queries = self._value(self._deck(n, options, "query_deck"))
        counts = torch.zeros(n, self.num_values, dtype=torch.int64, device=self.device)
        counts.scatter_(1, values[:, :1], 1)
        state = {"values": values, "queries": queries, "counts": counts,
                 "pos": torch.ones(n, dtype=torch.int64, device=self.device)}
        return state, torch.stack((values[:, 0], queries[:, 0]), dim=1)

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        pos = s["pos"]
        prev_query = at(s["queries"], pos - 1)
        answer = at(s["counts"], prev_query)  # before this step's card is dealt
        value, query = at(s["values"], pos), at(s["queries"], pos)
        s["counts"] = s["counts"].scatter_add(1, value.unsqueeze(1), torch.ones_like(value).unsqueeze(1))
        s["pos"] = pos + 1
        reward = torch.where(action == answer, self._scale, -self._scale)
        terminated = s["pos"] == self.num_cards
        return torch.stack((value, query), dim=1), reward, terminated, self._never


class HigherLower(_CardGame):
    """Guess whether the next card ranks higher or lower than the current one (popgym ``HigherLower``).

    Obs ``Discrete(13)``: the rank of the current card. Action ``Discrete(2)``: 0 higher, 1 lower. Reward
    ``+-1/cards`` (0 on equal ranks); the episode terminates after ``cards - 1`` steps.
    """

    def __init__(self, num_envs: int, num_decks: int = 1, device: torch.device | str = "cpu"):
        super().__init__(num_envs, num_decks, device)
        self.max_episode_length = self.num_cards - 1
        self.single_observation_space = spaces.Discrete(RANKS)
        self.single_action_space = spaces.Discrete(2)
        self._scale = 1.0 / self.num_cards

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        ranks = rank(self._deck(n, options))
        return {"ranks": ranks, "pos": torch.ones(n, dtype=torch.int64, device=self.device)}, ranks[:, 0].clone()

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        pos = s["pos"]
        current, nxt = at(s["ranks"], pos - 1), at(s["ranks"], pos)
        right = (nxt > current) == (action == 0)
        reward = torch.where(right, self._scale, -self._scale) * (nxt != current)
        terminated = pos == self.num_cards - 1
        s["pos"] = pos + 1
        return nxt, reward, terminated, self._never
