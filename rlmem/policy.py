"""The policy: observation encoder -> memory -> action head + value head.

``Policy`` is what trainers optimise and what other RL code imports (``rlmem.load_policy``):

    state = policy.initial_state(batch_size)
    action, state = policy.act(obs, state, episode_start, deterministic=False)
    action, state = policy.predict(observation, state=None, episode_start=None, deterministic=False)

``predict`` has stable-baselines3's signature and numpy in/out, so sb3's ``evaluate_policy(policy,
vec_env)`` runs on it as-is. Actor and critic share one memory.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlmem.encoders import EncoderConfig, build_encoder
from rlmem.heads import Dist, _layer_init, build_head
from rlmem.memory import MEMORIES, State, build
from rlmem.tree import Nested, first_leaf, tree_map


class Policy(nn.Module):
    """Recurrent actor-critic over any registered memory.

    Args:
        observation_space, action_space: the single-env gymnasium spaces.
        memory: name in ``rlmem.memory.MEMORIES``.
        memory_kwargs: arguments of that memory (e.g. ``hidden_size``).
        encoder: how observations are encoded (``EncoderConfig`` or its fields as a dict).
        place_key: key of a ``Discrete`` entry of a ``Dict`` observation space holding the agent's place. A
            place-aware memory (one whose constructor takes ``place_input``, e.g. ``sat``) gets it as an extra
            last input column and ``place_input=True``; other memories ignore it. Either way the place is also
            encoded with the rest of the observation.
        env_id, env_kwargs: the registered gymnasium id and kwargs the policy was trained on, kept so
            foreign code can rebuild the env (``policy.make_env()``).
        device: where the policy will run; it is built there, and a memory whose constructor takes ``device``
            (``xlstm``: its sLSTM kernels) gets it. None: CPU, movable with ``.to()`` as any module.
    """

    _low: Tensor  # buffers, registered for Box action spaces only
    _high: Tensor

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        memory: str = "lstm",
        memory_kwargs: dict[str, Any] | None = None,
        encoder: EncoderConfig | dict[str, Any] | None = None,
        place_key: str | None = None,
        env_id: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        enc_cfg = encoder if isinstance(encoder, EncoderConfig) else EncoderConfig(**(encoder or {}))
        self.observation_space, self.action_space = observation_space, action_space
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs or {})
        self.arch: dict[str, Any] = {"memory": memory, "memory_kwargs": dict(memory_kwargs or {}),
                                     "encoder": asdict(enc_cfg), "place_key": place_key}
        self.encoder = build_encoder(observation_space, enc_cfg)
        mem_kwargs = dict(self.arch["memory_kwargs"])
        cls = MEMORIES.get(memory)  # (an unknown name fails in build, naming the registered ones)
        place_aware = cls is not None and "place_input" in inspect.signature(cls.__init__).parameters
        self.place_key = place_key if place_aware else None
        if place_aware:
            mem_kwargs["place_input"] = place_key is not None  # the policy decides what the last column is
        if device is not None and cls is not None and "device" in inspect.signature(cls.__init__).parameters:
            mem_kwargs["device"] = torch.device(device)
        if self.place_key is not None:
            if not isinstance(observation_space, gym.spaces.Dict) or not isinstance(
                    observation_space.spaces.get(self.place_key), gym.spaces.Discrete):
                raise ValueError(f"place_key={place_key!r} needs a Dict observation space with a Discrete entry "
                                 f"{place_key!r}; got {observation_space}")
        self.memory = build(memory, self.encoder.output_size + int(self.place_key is not None), **mem_kwargs)
        self.actor = build_head(action_space, self.memory.output_size)
        self.critic = _layer_init(nn.Linear(self.memory.output_size, 1), 1.0)
        self._box = isinstance(action_space, gym.spaces.Box)
        if isinstance(action_space, gym.spaces.Box):
            self.register_buffer("_low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("_high", torch.as_tensor(action_space.high, dtype=torch.float32))
        if device is not None:
            self.to(device)

    @classmethod
    def from_config(
        cls,
        model: Any,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_id: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        place_key: str | None = None,
        device: torch.device | str | None = None,
    ) -> Policy:
        """The policy a model config (``rlmem.config.ModelConfig``: ``memory``, ``memory_kwargs``, ``encoder``)
        describes, for these spaces."""
        return cls(observation_space, action_space, memory=model.memory, memory_kwargs=dict(model.memory_kwargs),
                   encoder=dict(model.encoder), place_key=place_key, env_id=env_id, env_kwargs=env_kwargs,
                   device=device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        return self.memory.initial_state(batch_size, device or self.device)

    # -- sequences [B, T] (training) ---------------------------------------------------------------
    def forward(
        self, obs: Nested, state: State, episode_start: Tensor, need_state: bool = True
    ) -> tuple[Dist, Tensor, State | None]:
        """``obs`` with leading ``[B, T]`` -> action distribution, value ``[B, T]``, new state."""
        x = self.encoder(obs)
        if self.place_key is not None:  # the place id as the memory's last input column
            place = cast("dict[str, Tensor]", obs)[self.place_key]  # place_key implies a Dict observation space
            x = torch.cat([x, place.to(x.dtype).unsqueeze(-1)], -1)
        h, state = self.memory(x, state, episode_start, need_state=need_state)
        return self.actor(h), self.critic(h).squeeze(-1), state

    # -- single steps [B] (rollouts, deployment) ---------------------------------------------------
    def step(
        self, obs: Nested, state: State, episode_start: Tensor, deterministic: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, State]:
        """One step for a batch: raw action (unclipped), its log-prob, value ``[B]``, new state."""
        obs_bt = tree_map(lambda o: o.unsqueeze(1), obs)
        dist, value, state = self(obs_bt, state, episode_start.view(-1, 1))
        action = dist.mode() if deterministic else dist.sample()
        return action[:, 0], dist.log_prob(action)[:, 0], value[:, 0], state

    def to_env_action(self, action: Tensor) -> Tensor:
        """Clip Box actions to the action space (the raw sample is what PPO's ratio uses)."""
        return torch.clamp(action, self._low, self._high) if self._box else action

    @torch.inference_mode()
    def act(
        self, obs: Any, state: State, episode_start: Tensor | np.ndarray | None = None, deterministic: bool = False
    ) -> tuple[Tensor, State]:
        """Env-ready actions for a batch of observations ``[B, ...]``: tensors, or numpy arrays as gymnasium's
        vector envs return them (moved to the policy's device).

        Runs in ``torch.inference_mode`` (deployment speed): the returned action and state are inference
        tensors; ``clone()`` them to use in autograd."""
        if not isinstance(first_leaf(obs), Tensor):
            from envs.vector import obs_to_tensor  # (here: `import rlmem` imports no env family)

            obs = obs_to_tensor(obs, self.observation_space, self.device)
        if episode_start is None:
            episode_start = torch.zeros(first_leaf(obs).shape[0], dtype=torch.bool, device=self.device)
        start = torch.as_tensor(episode_start, device=self.device).to(torch.bool)
        action, _, _, state = self.step(obs, state, start, deterministic)
        return self.to_env_action(action), state

    @torch.no_grad()
    def value(self, obs: Nested, state: State, episode_start: Tensor) -> Tensor:
        obs_bt = tree_map(lambda o: o.unsqueeze(1), obs)
        _, v, _ = self(obs_bt, state, episode_start.view(-1, 1), need_state=False)
        return v[:, 0]

    def predict(
        self,
        observation: Any,
        state: State | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, State]:
        """stable-baselines3's ``predict``: numpy observation (batched or single) -> numpy action.

        ``state=None`` starts new episodes; pass back the returned state with ``episode_start`` (the
        vector env's previous ``dones``) on later calls.
        """
        from envs.vector import obs_to_tensor

        single = not _is_batched(observation, self.observation_space)
        if single:
            observation = _add_batch_dim(observation)
        obs = obs_to_tensor(observation, self.observation_space, self.device)
        n = first_leaf(obs).shape[0]
        if state is None:
            state = self.initial_state(n)
            episode_start = np.ones(n, dtype=bool)
        start = torch.as_tensor(
            np.zeros(n, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool)
        ).to(self.device)
        action, state = self.act(obs, state, start.view(n), deterministic)
        out = action.cpu().numpy()
        return (out[0] if single else out), state

    def check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Raise ``ValueError`` naming both spaces when an env does not match this policy."""
        for what, mine, theirs in (
            ("observation", self.observation_space, observation_space),
            ("action", self.action_space, action_space),
        ):
            if mine != theirs:
                raise ValueError(
                    f"{what} space mismatch: the policy was trained on {mine} "
                    f"but the environment has {theirs}"
                )

    def make_env(self, **overrides: Any) -> gym.Env:
        """The env this policy was trained on (``envs.make_env``: ``gymnasium.make`` plus wrapper kwargs; kwargs
        overridable)."""
        if self.env_id is None:
            raise ValueError("this policy records no env_id")
        import envs  # (registers rlmem ids)

        return envs.make_env(self.env_id, {**self.env_kwargs, **overrides})


def _is_batched(obs: Any, space: gym.Space) -> bool:
    if isinstance(space, gym.spaces.Dict):
        k = next(iter(space.spaces))
        return _is_batched(obs[k], space.spaces[k])
    if isinstance(space, gym.spaces.Tuple):
        return _is_batched(obs[0], space.spaces[0])
    assert space.shape is not None  # every space an encoder accepts has a shape
    return np.asarray(obs).ndim > len(space.shape)


def _add_batch_dim(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: _add_batch_dim(v) for k, v in obs.items()}
    if isinstance(obs, tuple | list):
        return tuple(_add_batch_dim(v) for v in obs)
    return np.asarray(obs)[None]
