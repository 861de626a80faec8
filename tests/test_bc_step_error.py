"""The BC diagnostic's pieces (experiments/bc_step_error.py) on synthetic data and stand-in policies."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import bc_step_error as diag  # noqa: E402


class Fixed:
    """A stand-in policy: its greedy actions and final state are given."""

    def __init__(self, actions: torch.Tensor, state: dict[str, torch.Tensor] | None = None):
        self.actions, self.state = actions, state or {}

    def initial_state(self, n: int) -> dict[str, torch.Tensor]:
        return self.state

    def __call__(self, obs, state, episode_start):
        t = episode_start.shape[1]
        return SimpleNamespace(mode=lambda: self.actions[:, :t]), None, self.state


def test_step_errors_score_each_step_and_leave_padding_out():
    actions = torch.zeros(2, 3, 2)
    pred = actions.clone()
    pred[0, 1] = torch.tensor([1.0, 2.0])  # episode 0 misses step 1 by 1^2 + 2^2
    pred[1, 2] = 9.0  # episode 1 has 2 steps: its step 2 is padding
    err = diag.step_errors(Fixed(pred), torch.zeros(2, 3, 1), actions, torch.tensor([3, 2]))
    assert err[0].tolist() == [0.0, 5.0, 0.0]
    assert err[1, :2].tolist() == [0.0, 0.0] and err[1, 2].isnan()


def test_the_mean_action_baseline_is_the_spread_of_a_step():
    actions = torch.tensor([[[1.0], [0.0]], [[-1.0], [0.0]], [[0.0], [5.0]]])  # step 1 of episode 2 is padding
    base = diag.mean_action_error(actions, torch.tensor([2, 2, 1]))
    assert torch.allclose(base, torch.tensor([2 / 3, 0.0]))
    discrete = diag.mean_action_error(torch.tensor([[1], [1], [2], [1]]), torch.tensor([1, 1, 1, 1]))
    assert discrete.tolist() == [0.25]


def test_cue_colours_read_the_cue_pixels():
    palette = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.75, 0.15], [0.1, 0.25, 0.95]])
    rgb = torch.full((3, 8, 16, 16, 3), 128, dtype=torch.uint8)  # a grey table
    for i, label in enumerate([2, 0, 1]):
        rgb[i, 0, 6:10, 6:10] = (palette[label] * 255).to(torch.uint8)
    assert diag.cue_colours(rgb, palette).tolist() == [2, 0, 1]


def test_the_probe_finds_a_stored_label_and_not_a_random_one():
    torch.manual_seed(0)
    labels = torch.randint(3, (400,))
    noise = torch.randn(400, 16)
    stored = Fixed(torch.zeros(400, 4, 1), {"h": noise + 3 * torch.nn.functional.one_hot(labels, 16).float()})
    assert diag.probe_accuracy(stored, torch.zeros(400, 4, 1), labels, steps=4) > 0.95
    assert diag.probe_accuracy(Fixed(torch.zeros(400, 4, 1), {"h": noise}), torch.zeros(400, 4, 1), labels,
                               steps=4) < 0.6
