"""Counter-based randomness shared by the gymnasium envs and their torch-batched twins.

Every random quantity of an episode is an integer hash of ``(seed key, episode index, counter)`` computed
with the same int64 arithmetic on numpy scalars and torch tensors, so a batched env reproduces the gym env
row by row (row ``i`` after ``reset(seed=s)`` is the gym env after ``reset(seed=s + i)``).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from torch import Tensor

# Every intermediate value stays below 2**63: inputs are < 2**31, so ``(base + counter) * A`` < 2**32 * 2**31
# and the modulus brings values back under 2**31.
P = 2_147_483_647  # 2**31 - 1 (prime)
_A1 = 1_103_515_245
_A2 = 1_664_525_021

ArrayT = TypeVar("ArrayT", np.int64, Tensor)


def draw(base: ArrayT, counter: ArrayT | int) -> ArrayT:
    """Hash ``base + counter`` (both in ``[0, 2**31)``) to ``[0, 2**31)``.

    Written with operators only, so numpy int64 scalars and int64 tensors run exactly the same arithmetic.
    """
    z = ((base + counter) * _A1) % P
    z = z ^ (z >> 15)
    z = (z * _A2) % P
    return z ^ (z >> 13)


def episode_base(key: ArrayT, episode: ArrayT | int) -> ArrayT:
    """Per-episode hash state from the seed key (reduced mod P) and the episode index."""
    return draw(draw(key, 0), episode)
