"""Rooms: a place-memory task. Remember the colour of each room on a tour, then answer which colour a named
room had. A torch-batched env (``RoomsVec``) and its gymnasium twin (``RoomsEnv``, one row of the same code).

## Description

A ``rows x cols`` grid of rooms; each room holds an object of one of ``colours`` colours, drawn per episode
(rooms may share a colour). Exploration: the agent is walked through ``visits`` rooms, ``dwell`` steps in each,
moving to a uniformly drawn neighbouring room (4-neighbourhood) between visits; while inside a room it sees the
room's colour. Query: after ``visits * dwell`` steps the observation names one of the visited rooms (uniformly
drawn) and the agent answers with a colour. A memory-less policy answers at chance (1 / ``colours``).

Place memory matters when the tour is long: a FIFO memory of S steps holds the last S / ``dwell`` visits only,
while the query may name any room visited. ``conf/env/rooms_capacity.yaml`` is such a variant (9 rooms, 16
visits of 4 steps: a 16-step memory holds 4 visits).

## Spaces

Observation ``Dict``:

* ``"place"``: ``Discrete(rooms + 1)``: the room the agent is in; ``rooms`` during the query (it is in none).
* ``"view"``: ``Box(0, 1, (colours + rooms + 1,))``: one-hot colour of the current room (exploration) | one-hot
  of the queried room (query) | query flag.

Action ``Discrete(colours)``: ignored during exploration; the answer at the query.

## Rewards and episode end

Reward 1 for the right colour at the query, else 0; the episode terminates after the answer
(``visits * dwell + 1`` steps). ``info["success"]`` on the final step; ``info["place"]`` is the place of the
returned observation, as in the observation.

## Randomness

Counter-based (:mod:`envs.hashrng`): the start room, colours, moves and query of an episode are hashes of
(seed key, episode index, counter), so row ``i`` of ``RoomsVec`` after ``reset(seed=s)`` replays
``RoomsEnv`` after ``reset(seed=s + i)``.

## Version History

* v0: initial version.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from envs.hashrng import P, draw, episode_base
from envs.vector import EpisodeStats, VecEnv
from rlmem.syncs import cpu_fast_path

# counters of the per-episode hash (moves use 1..visits)
_START, _QUERY, _COLOUR0 = P - 1, P - 2, P - 4096  # colour of room r: _COLOUR0 + r


def _spaces(rooms: int, colours: int) -> tuple[spaces.Dict, spaces.Discrete]:
    obs = spaces.Dict({
        "place": spaces.Discrete(rooms + 1),
        "view": spaces.Box(0.0, 1.0, (colours + rooms + 1,), np.float32),
    })
    return obs, spaces.Discrete(colours)


class RoomsVec(VecEnv):
    """``num_envs`` Rooms episodes stepped as tensors on ``device`` (see the module docstring).

    Args:
        rows, cols: grid of rooms (at least 2 rooms).
        colours: number of object colours (and actions).
        visits: rooms visited during exploration (the start room is the first visit).
        dwell: steps spent in each visited room.
    """

    def __init__(self, num_envs: int, rows: int = 2, cols: int = 2, colours: int = 4, visits: int = 6,
                 dwell: int = 2, device: torch.device | str = "cpu"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
        if rows < 1 or cols < 1 or rows * cols < 2:
            raise ValueError(f"the grid needs at least 2 rooms, got rows={rows}, cols={cols}.")
        if rows * cols > 4094 or colours < 2 or visits < 1 or dwell < 1 or visits >= 2**20:
            # (colour counters of rooms 4094 and 4095 would be the query and start counters)
            raise ValueError("need rooms <= 4094, colours >= 2, 1 <= visits < 2**20 and dwell >= 1.")
        self.num_envs, self.device = int(num_envs), torch.device(device)
        self.rows, self.cols, self.rooms, self.colours = rows, cols, rows * cols, colours
        self.visits, self.dwell = visits, dwell
        self.explore_steps = visits * dwell
        self.episode_length = self.explore_steps + 1
        self.single_observation_space, self.single_action_space = _spaces(self.rooms, colours)
        self.stats = EpisodeStats(self.num_envs, self.device)
        n, dev, i64 = self.num_envs, self.device, torch.int64
        self._key: Tensor | None = None
        self._episode = torch.zeros(n, dtype=i64, device=dev)
        self._base = torch.zeros(n, dtype=i64, device=dev)
        self._t = torch.zeros(n, dtype=i64, device=dev)
        self._room = torch.zeros(n, dtype=i64, device=dev)
        self._colour = torch.zeros(n, self.rooms, dtype=i64, device=dev)  # (N, rooms)
        self._visited = torch.zeros(n, self.rooms, dtype=torch.bool, device=dev)  # (N, rooms)
        self._query = torch.zeros(n, dtype=i64, device=dev)
        # neighbours of every room in the order up, right, down, left; -1 off the grid
        r, c = torch.arange(self.rooms, device=dev).div(cols, rounding_mode="floor"), torch.arange(
            self.rooms, device=dev) % cols
        nb = torch.stack([r - 1, c + 0, r, c + 1, r + 1, c, r, c - 1], 1).view(self.rooms, 4, 2)
        ok = (nb[..., 0] >= 0) & (nb[..., 0] < rows) & (nb[..., 1] >= 0) & (nb[..., 1] < cols)
        self._nb = torch.where(ok, nb[..., 0] * cols + nb[..., 1], -1)  # (rooms, 4)

    # -- VecEnv API -------------------------------------------------------------------------------

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        n, dev = self.num_envs, self.device
        if seed is not None or self._key is None:
            if seed is None:
                seed = int(np.random.default_rng().integers(P))
            self._key = (torch.arange(n, dtype=torch.int64, device=dev) + int(seed) % P) % P
            self._episode.zero_()
        else:
            self._episode += 1
        self._begin(torch.ones(n, dtype=torch.bool, device=dev))
        self.stats.reset()
        obs = self._obs()
        return obs, {"place": obs["place"]}

    def step(self, action: Tensor) -> tuple[dict, Tensor, Tensor, Tensor, dict[str, Any]]:
        if self._key is None:
            raise RuntimeError("Call reset() before step().")
        action = torch.as_tensor(action, device=self.device).long().view(self.num_envs)
        ar = torch.arange(self.num_envs, device=self.device)
        answering = self._t == self.explore_steps
        correct = (action == self._colour[ar, self._query]) & answering
        reward = correct.float()
        terminated = answering
        truncated = torch.zeros_like(terminated)
        self._t = self._t + 1
        # exploration: move to a random neighbour at the start of each new visit
        move = (self._t % self.dwell == 0) & (self._t < self.explore_steps)
        nb = self._nb[self._room]  # (N, 4)
        ok = nb >= 0
        pick = draw(self._base, self._t // self.dwell) % ok.sum(1)  # (N,) index among the valid neighbours
        nxt = nb.gather(1, ((ok.long().cumsum(1) - 1 == pick[:, None]) & ok).long().argmax(1, keepdim=True))[:, 0]
        self._room = torch.where(move, nxt, self._room)
        self._visited[ar, self._room] |= self._t < self.explore_steps
        # the query names a visited room, drawn when exploration ends
        asking = self._t == self.explore_steps
        k = draw(self._base, _QUERY) % self._visited.sum(1).clamp(min=1)
        query = ((self._visited.long().cumsum(1) - 1 == k[:, None]) & self._visited).long().argmax(1)
        self._query = torch.where(asking, query, self._query)
        ep_ret, ep_len = self.stats.update(reward, terminated)
        final_obs = self._obs()
        obs = final_obs
        if not cpu_fast_path(self.device) or bool(terminated.any()):  # (a masked no-op on rows that go on)
            self._episode += terminated
            self._begin(terminated)
            obs = self._obs()
        info = {"final_obs": final_obs, "episode_return": ep_ret, "episode_length": ep_len,
                "success": torch.where(terminated, reward, torch.nan), "place": obs["place"]}
        return obs, reward, terminated, truncated, info

    # -- helpers ----------------------------------------------------------------------------------

    def _begin(self, rows: Tensor) -> None:
        """Start the current episode index of ``rows`` (bool ``[N]``)."""
        assert self._key is not None
        base = episode_base(self._key, self._episode)
        self._base = torch.where(rows, base, self._base)
        room = draw(base, _START) % self.rooms
        colour = draw(base[:, None], _COLOUR0 + torch.arange(self.rooms, device=self.device)) % self.colours
        self._t = self._t.masked_fill(rows, 0)
        self._room = torch.where(rows, room, self._room)
        self._colour = torch.where(rows[:, None], colour, self._colour)
        first = torch.nn.functional.one_hot(room, self.rooms).bool()
        self._visited = torch.where(rows[:, None], first, self._visited)

    def _obs(self) -> dict[str, Tensor]:
        ar = torch.arange(self.num_envs, device=self.device)
        asking = self._t == self.explore_steps  # (N,)
        see = torch.nn.functional.one_hot(self._colour[ar, self._room], self.colours) * ~asking[:, None]
        ask = torch.nn.functional.one_hot(self._query, self.rooms) * asking[:, None]
        view = torch.cat([see, ask, asking[:, None].long()], 1).float()  # (N, colours + rooms + 1)
        return {"place": torch.where(asking, self.rooms, self._room), "view": view}

    def oracle_action(self) -> Tensor:
        """The right colour at the query (privileged state); 0 during exploration. int64 ``[N]``."""
        ar = torch.arange(self.num_envs, device=self.device)
        return torch.where(self._t == self.explore_steps, self._colour[ar, self._query], 0)


class RoomsEnv(gym.Env[dict, np.int64]):
    """The gymnasium twin of :class:`RoomsVec` (one row of it on the CPU); see the module docstring."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, rows: int = 2, cols: int = 2, colours: int = 4, visits: int = 6, dwell: int = 2):
        super().__init__()
        self._vec = RoomsVec(1, rows=rows, cols=cols, colours=colours, visits=visits, dwell=dwell)
        self.observation_space, self.action_space = _spaces(self._vec.rooms, colours)
        self.episode_length = self._vec.episode_length
        self._pending: dict | None = None  # first observation of the episode the vec env already started
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None:
            obs, _ = self._vec.reset(seed=seed)
        elif self._pending is not None:  # the vec env began the next episode when the last one ended
            obs = self._pending
        elif not self._started:
            obs, _ = self._vec.reset(seed=int(self.np_random.integers(P)))
        else:  # reset mid-episode: the next episode index
            obs, _ = self._vec.reset()
        self._pending, self._started = None, True
        out = self._numpy(obs)
        return out, {"place": int(out["place"])}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict[str, Any]]:
        if not self._started or self._pending is not None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        a = int(action)
        if not 0 <= a < self._vec.colours:
            raise ValueError(f"Invalid action {action!r}; expected 0..{self._vec.colours - 1}.")
        obs, reward, terminated, truncated, info = self._vec.step(torch.tensor([a]))
        done = bool(terminated[0])
        out = self._numpy(info["final_obs"] if done else obs)
        if done:
            self._pending = obs
        extra: dict[str, Any] = {"place": int(out["place"])}
        if done:
            extra["success"] = bool(info["success"][0] > 0)
        return out, float(reward[0]), done, bool(truncated[0]), extra

    @staticmethod
    def _numpy(obs: dict[str, Tensor]) -> dict[str, Any]:
        return {"place": np.int64(obs["place"][0]), "view": obs["view"][0].numpy()}

    def oracle_action(self) -> int:
        return int(self._vec.oracle_action()[0])
