"""The scripted Concentration references (experiments/concentration_baselines.py) on the torch env."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import concentration_baselines as cb  # noqa: E402


def test_flipping_face_down_cards_beats_flipping_any_card():
    uniform = cb.mean_return("ConcentrationEasy", "uniform", episodes=32, num_envs=32)
    face_down = cb.mean_return("ConcentrationEasy", "face-down", episodes=32, num_envs=32)
    assert uniform < 0.0 < 0.3 < face_down  # pairs by colour: two face-down cards match about half the time
