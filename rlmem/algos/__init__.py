"""Trainers, selected by ``algo.name``: each is a ``rlmem.loop.Trainer`` (a data source and an update) that the
shared loop runs."""

from __future__ import annotations

from rlmem.algos.offline import OfflineTrainer
from rlmem.algos.ppo import PPOTrainer
from rlmem.loop import Trainer

TRAINERS: dict[str, type[Trainer]] = {"ppo": PPOTrainer, "offline": OfflineTrainer}
