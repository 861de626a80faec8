"""Memories behind one contract (see ``rlmem.memory.base``); import registers them all."""

from rlmem.memory import elmur, gru, gtrxl, hcam, lstm, mlp, sat, xlstm  # noqa: F401  (registration side effects)
from rlmem.memory.base import MEMORIES, Memory, State, build, register

__all__ = ["MEMORIES", "Memory", "State", "build", "register"]
