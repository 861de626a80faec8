"""POPGym's board games (popgym 1.0.7) as batched torch envs: Battleship and MineSweeper.

Boards are ``[N, rows, cols]`` tensors; an action ``(row, col)`` is read and written through the flat cell index
with ``gather`` / ``scatter``. Both games need the previous action in the observation (POPGym's flag).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor

from envs.popgym_torch.base import PopgymVec, State, at
from envs.vector import Obs


def _cell(action: Tensor, cols: int) -> Tensor:
    """``(row, col)`` actions ``[N, 2]`` -> flat cell indices ``[N]``."""
    return action[:, 0] * cols + action[:, 1]


class Battleship(PopgymVec):
    """Battleship on a hidden ``B x B`` board: each step fires at a cell (popgym ``Battleship``).

    Obs ``Discrete(2)``: 1 on a hit (a ship cell not fired at before). Action ``MultiDiscrete([B, B])``. Reward
    ``1/H`` per hit and ``-1/(B^2 - H)`` per miss (``H`` ship cells); the episode terminates when every ship cell
    was hit and is truncated after ``B^2`` shots.

    Ships are placed one after the other as popgym does (uniform start cell and direction, redrawn while the ship
    leaves the board or overlaps another). That rejection sampler accepts each valid placement with the same
    probability, so here every ship is drawn uniformly among the valid (axis, top-left cell) placements at once.
    Injection: ``reset(options={"ships": LongTensor[N, ships, 3]})``, each ship as (axis, row, col) of its
    top-left cell, axis 0 vertical (along rows), 1 horizontal.
    """

    obs_requires_prev_action = True
    reset_options = ("ships",)

    def __init__(self, num_envs: int, board_size: int = 10, ship_sizes: Sequence[int] = (2, 3, 3, 4),
                 device: torch.device | str = "cpu"):
        super().__init__(num_envs, device)
        self.board_size, self.ship_sizes = int(board_size), tuple(int(s) for s in ship_sizes)
        self.max_episode_length = self.board_size ** 2
        self.needed_hits = sum(self.ship_sizes)
        self.single_observation_space = spaces.Discrete(2)
        self.single_action_space = spaces.MultiDiscrete([self.board_size, self.board_size])
        self._hit = 1.0 / self.needed_hits
        self._miss = -1.0 / (self.max_episode_length - self.needed_hits)
        b = torch.arange(self.board_size, device=self.device)
        self._rows, self._cols = b.view(1, -1, 1), b.view(1, 1, -1)

    def _ship_cells(self, axis: Tensor, r: Tensor, c: Tensor, size: int) -> Tensor:
        """Bool ``[n, B, B]``: the cells of ships of ``size`` with top-left cells ``(r, c)`` along ``axis``."""
        r, c, vertical = r.view(-1, 1, 1), c.view(-1, 1, 1), (axis == 0).view(-1, 1, 1)
        along_rows = (self._rows >= r) & (self._rows < r + size) & (self._cols == c)
        along_cols = (self._cols >= c) & (self._cols < c + size) & (self._rows == r)
        return torch.where(vertical, along_rows, along_cols)

    def _place(self, board: Tensor, size: int) -> Tensor:
        """One (axis, row, col) per board, uniform among the placements inside the board that overlap no ship."""
        n, b = board.shape[0], self.board_size
        occupied = board.float().unsqueeze(1)  # [n, 1, B, B]
        kernel = torch.ones(1, 1, size, 1, device=self.device)
        # overlap of every placement, by its top-left cell; outside the board counts as overlap
        vertical = F.pad(F.conv2d(occupied, kernel), (0, 0, 0, size - 1), value=1.0)
        horizontal = F.pad(F.conv2d(occupied, kernel.transpose(2, 3)), (0, size - 1, 0, 0), value=1.0)
        free = torch.cat((vertical, horizontal), dim=1).view(n, -1) == 0  # [n, 2 * B * B]
        pick = (self._rand(n, 2 * b * b) * free).argmax(dim=1)  # uniform among the free ones
        return torch.stack((pick // (b * b), pick % (b * b) // b, pick % b), dim=1)

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        b = self.board_size
        board = torch.zeros(n, b, b, dtype=torch.bool, device=self.device)
        injected = (self._option(options, "ships", (n, len(self.ship_sizes), 3), torch.int64)
                    if "ships" in options else None)
        ships = []
        for i, size in enumerate(self.ship_sizes):
            ship = injected[:, i] if injected is not None else self._place(board, size)
            board = board | self._ship_cells(ship[:, 0], ship[:, 1], ship[:, 2], size)
            ships.append(ship)
        zeros = torch.zeros(n, dtype=torch.int64, device=self.device)
        state = {"board": board.view(n, -1), "fired": torch.zeros(n, b * b, dtype=torch.bool, device=self.device),
                 "ships": torch.stack(ships, dim=1), "hits": zeros, "t": zeros}
        return state, zeros.clone()

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        cell = _cell(action, self.board_size).unsqueeze(1)
        hit = (s["board"].gather(1, cell) & ~s["fired"].gather(1, cell)).squeeze(1)
        s["fired"].scatter_(1, cell, True)
        s["hits"] = s["hits"] + hit
        s["t"] = s["t"] + 1
        reward = torch.where(hit, self._hit, self._miss)
        return hit.long(), reward, s["hits"] == self.needed_hits, s["t"] >= self.max_episode_length


CLEAR, MINE, VIEWED = 0, 1, 2


class MineSweeper(PopgymVec):
    """MineSweeper on a hidden board (popgym ``MineSweeper``).

    Obs ``Discrete(min(mines + 1, 10))``: the number of mines among the clicked cell and its 8 neighbours.
    Action ``MultiDiscrete([rows, cols])``. Reward ``1/S`` for a new free cell (``S`` free cells), ``-0.5/(S - 2)``
    for one clicked before, ``-0.5 - 1/S`` for a mine, which terminates the episode; clicking every free cell also
    terminates it, and it is truncated after ``S`` steps.

    Injection: ``reset(options={"mines": LongTensor[N, mines]})``, the flat cells of the mines (distinct).
    """

    obs_requires_prev_action = True
    reset_options = ("mines",)

    def __init__(self, num_envs: int, dims: tuple[int, int] = (4, 4), num_mines: int = 2,
                 device: torch.device | str = "cpu"):
        super().__init__(num_envs, device)
        self.dims, self.num_mines = (int(dims[0]), int(dims[1])), int(num_mines)
        self.num_cells = self.dims[0] * self.dims[1]
        self.max_episode_length = self.num_cells - self.num_mines
        self.single_observation_space = spaces.Discrete(min(self.num_mines + 1, 10))
        self.single_action_space = spaces.MultiDiscrete(list(self.dims))
        self._success = 1.0 / self.max_episode_length
        self._fail = -0.5 - self._success
        self._bad = -0.5 / (self.max_episode_length - 2)
        self._kernel = torch.ones(1, 1, 3, 3, device=self.device)

    def _fresh(self, n: int, options: Mapping[str, Any]) -> tuple[State, Obs]:
        if "mines" in options:
            mines = self._option(options, "mines", (n, self.num_mines), torch.int64)
        else:
            mines = self._rand(n, self.num_cells).argsort(dim=1)[:, : self.num_mines]
        grid = torch.zeros(n, self.num_cells, dtype=torch.int64, device=self.device).scatter(1, mines, MINE)
        around = F.conv2d(grid.view(n, 1, *self.dims).float(), self._kernel, padding=1)
        zeros = torch.zeros(n, dtype=torch.int64, device=self.device)
        state = {"grid": grid, "around": around.view(n, -1).long(), "t": zeros}
        return state, zeros.clone()

    def _step(self, action: Tensor) -> tuple[Obs, Tensor, Tensor, Tensor]:
        s = self.state
        cell = _cell(action, self.dims[1]).unsqueeze(1)
        square = s["grid"].gather(1, cell).squeeze(1)
        mine = square == MINE
        s["grid"] = s["grid"].scatter(1, cell, torch.where(mine, MINE, VIEWED).unsqueeze(1))
        reward = torch.where(mine, self._fail, torch.where(square == VIEWED, self._bad, self._success))
        s["t"] = s["t"] + 1
        terminated = mine | (s["grid"] != CLEAR).all(dim=1)
        truncated = (s["t"] == self.max_episode_length) & ~terminated
        return at(s["around"], cell.squeeze(1)), reward, terminated, truncated
