"""Place reaches place-aware memories (SAT) from the env's observation, through the policy and both trainers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from envs import RoomsVec, make_env, make_vec
from rlmem import load_policy
from rlmem.collect import CollectConfig, collect
from rlmem.config import EnvConfig
from rlmem.policy import Policy
from rlmem.train import train
from tests.conftest import small_model

ROOMS = ["env=rooms", "env.kwargs.visits=3"]


def test_policy_routes_the_place_to_place_aware_memories_only():
    venv = RoomsVec(4, visits=3)
    obs_space, act_space = venv.single_observation_space, venv.single_action_space
    sat = Policy(obs_space, act_space, memory="sat", memory_kwargs={"d_model": 16, "capacity": 4}, place_key="place")
    assert sat.memory.place_input and sat.place_key == "place"
    lstm = Policy(obs_space, act_space, memory="lstm", memory_kwargs={"hidden_size": 8}, place_key="place")
    assert lstm.place_key is None  # not place-aware: the place is only encoded with the observation
    no_place = Policy(obs_space, act_space, memory="sat", memory_kwargs={"d_model": 16, "place_input": True})
    assert not no_place.memory.place_input  # the policy, not the config, decides what the last column is
    with pytest.raises(ValueError, match="Discrete entry 'room'"):
        Policy(obs_space, act_space, memory="sat", memory_kwargs={"d_model": 16}, place_key="room")
    # the memory stores each step under the place the env reported
    obs, _ = venv.reset(seed=0)
    state, start, places = sat.initial_state(4), torch.ones(4, dtype=torch.bool), []
    for _ in range(4):
        places.append(obs["place"])
        action, state = sat.act(obs, state, start)
        obs, *_ = venv.step(action)
        start = torch.zeros(4, dtype=torch.bool)
    assert torch.equal(state["place"], torch.stack(places, 1))


def test_ppo_trains_sat_on_rooms_and_the_allocator_gets_feedback(cfg_factory, tmp_path):
    cfg = cfg_factory(*small_model("sat"), *ROOMS, "algo.total_steps=1024", "algo.num_envs=8", "algo.num_steps=16",
                      "algo.seq_len=8", "algo.num_minibatches=2", "algo.update_epochs=1", "eval_episodes=8",
                      f"run_dir={tmp_path}")
    result = train(cfg)
    assert result["episodes"] == 8
    policy = load_policy(tmp_path)
    assert policy.place_key == "place" and policy.memory.place_input
    assert bool(policy.memory.ama_q.ne(0).any())  # feedback reached the allocator
    assert int(policy.memory.ama_choice) == int(policy.memory.ama_q.argmax())  # settled at the end


def test_offline_trains_sat_on_rooms_oracle_data(cfg_factory, tmp_path):
    env = EnvConfig(id="rlmem/Rooms-v0", kwargs={"visits": 3}, place_key="place")
    collect(OmegaConf.structured(CollectConfig(env=env, dataset_id="test/rooms-oracle-v0", episodes=64,
                                               data_dir=str(tmp_path / "data"))))
    cfg = cfg_factory(*small_model("sat"), *ROOMS, "algo=offline", "algo.dataset_id=test/rooms-oracle-v0",
                      "algo.context=7",
                      "algo.updates=4", "algo.batch_size=8", "algo.eval_every=0", "algo.eval_episodes=8",
                      "eval_episodes=8", f"algo.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}")
    result = train(cfg)
    assert result["episodes"] == 8
    assert load_policy(tmp_path / "run").memory.place_input


class InfoPlaceEnv(gym.Env):
    """Reports its place only in ``info["place"]``: the agent walks places 0, 1, 2, 0, ... for 6 steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {"place": 0}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 0.0, False, self.t >= 6, {"place": self.t % 3}


if "rlmem-test/InfoPlace-v0" not in gym.registry:
    gym.register("rlmem-test/InfoPlace-v0", entry_point=InfoPlaceEnv)


def test_place_from_info_reaches_the_memory(cfg_factory, tmp_path):
    venv = make_vec("rlmem-test/InfoPlace-v0", 2, {"place_from_info": 3}, backend="gym")
    assert venv.single_observation_space["place"] == gym.spaces.Discrete(3)
    obs, _ = venv.reset(seed=0)
    sat = Policy(venv.single_observation_space, venv.single_action_space, memory="sat",
                 memory_kwargs={"d_model": 16, "capacity": 8}, place_key="place")
    state, start = sat.initial_state(2), torch.ones(2, dtype=torch.bool)
    for _ in range(4):
        action, state = sat.act(obs, state, start)
        obs, *_ = venv.step(action)
        start = torch.zeros(2, dtype=torch.bool)
    assert state["place"][:, :4].tolist() == [[0, 1, 2, 0]] * 2
    with pytest.raises(ValueError, match="backend='gym'"):
        make_vec("rlmem/Rooms-v0", 2, {"place_from_info": 3}, backend="torch")
    with pytest.raises(ValueError, match="outside"):
        env = make_env("rlmem-test/InfoPlace-v0", {"place_from_info": 2})
        env.reset(seed=0)
        env.step(0), env.step(0)
    # through the config, PPO and the saved policy's env
    train(cfg_factory(*small_model("sat"), "env=gym", "env.id=rlmem-test/InfoPlace-v0",
                      "+env.kwargs.place_from_info=3", "env.place_key=place", "algo.total_steps=64",
                      "algo.num_envs=2", "algo.num_steps=16", "algo.seq_len=8", "algo.num_minibatches=1",
                      "algo.update_epochs=1", "eval_episodes=2", f"run_dir={tmp_path}"))
    policy = load_policy(tmp_path)
    assert policy.memory.place_input and "place" in policy.make_env().observation_space.spaces
