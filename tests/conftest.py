"""Shared fixtures: tiny configs composed through Hydra exactly as the CLI does."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from rlmem.config import register_configs

CONF = str(Path(__file__).resolve().parent.parent / "conf")
register_configs()
torch.set_num_threads(1)  # tests run many tiny models: threading only adds overhead here
os.environ.setdefault("MUJOCO_GL", "egl")


def make_cfg(*overrides: str):
    """The composed and validated run config for ``overrides`` (like the command line)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=["progress=false", *overrides])


SMALL_SIZES = {
    "elmur": ["model.memory_kwargs.d_model=16", "model.memory_kwargs.segment_len=4"],
    "gtrxl": ["model.memory_kwargs.d_model=16", "model.memory_kwargs.window=4"],
    "hcam": ["model.memory_kwargs.d_model=16", "model.memory_kwargs.chunk_len=4", "model.memory_kwargs.num_chunks=2"],
    "sat": ["model.memory_kwargs.d_model=16", "model.memory_kwargs.capacity=4"],
    "xlstm": ["model.memory_kwargs.d_model=16", "model.memory_kwargs.num_heads=2"],
}


def small_model(memory: str) -> list[str]:
    """Overrides selecting ``model=<memory>`` (its config group) with a small width."""
    return [f"model={memory}", *SMALL_SIZES.get(memory, ["model.memory_kwargs.hidden_size=16"])]


@pytest.fixture
def cfg_factory():
    return make_cfg


class ConstantRewardEnv(gym.Env):
    """Reward 1 every step, a constant observation, and *truncation* after ``horizon`` steps.

    The infinite-horizon value is ``1 / (1 - gamma)``; a trainer that mistakes truncation for
    termination learns the much smaller finite-horizon sums instead.
    """

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, horizon: int = 5):
        self.horizon, self.t = horizon, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 1.0, False, self.t >= self.horizon, {}


if "rlmem-test/ConstantReward-v0" not in gym.registry:
    gym.register("rlmem-test/ConstantReward-v0", entry_point=ConstantRewardEnv)


class AllSpacesEnv(gym.Env):
    """Dict observation with an image, a vector, Discrete and MultiDiscrete parts; configurable action
    space. Reward favours actions near the target shown in the first observation only."""

    def __init__(self, action: str = "box"):
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (12, 12, 3), np.uint8),
            "vec": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
            "disc": gym.spaces.Discrete(3),
            "multi": gym.spaces.MultiDiscrete([2, 5]),
        })
        self.action_space = {
            "box": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "discrete": gym.spaces.Discrete(3),
            "multidiscrete": gym.spaces.MultiDiscrete([3, 2]),
        }[action]
        self.t = 0

    def _obs(self):
        o = self.observation_space.sample()
        o["vec"] = np.full(3, self.target if self.t == 0 else 0.0, np.float32)
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t, self.target = 0, float(self.np_random.choice([-0.5, 0.5]))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        a = np.asarray(action, dtype=np.float32).reshape(-1)[0]
        return self._obs(), -abs(float(a) - self.target), False, self.t >= 6, {"success": abs(a - self.target) < 0.3}


if "rlmem-test/AllSpaces-v0" not in gym.registry:
    gym.register("rlmem-test/AllSpaces-v0", entry_point=AllSpacesEnv)
