"""Structured configs (Hydra ConfigStore schemas) for ``python -m rlmem.train``.

The YAML files under ``conf/`` extend these schemas (``defaults: [<group>_schema]``), so a misspelt
key or a value of the wrong type fails before anything runs. Memory arguments live in
``model.memory_kwargs`` and are checked against the memory's constructor by ``rlmem.memory.build``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from rlmem.encoders import EncoderConfig


@dataclass
class EnvConfig:
    """Which environment, and how it is vectorized."""

    id: str = "rlmem/TMaze-v0"  # registered gymnasium id (rlmem/... or any other, e.g. CartPole-v1)
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make / the torch env
    backend: str = "auto"  # auto | torch (torch-batched env) | gym (gymnasium vector env)
    asynchronous: bool = False  # gym backend: one subprocess per env (AsyncVectorEnv)
    eval_envs: int = 0  # parallel envs of the trainers' evaluations (0: min(episodes, 64); rendering envs: fewer)
    place_key: str | None = None  # Dict-observation key of the agent's place (Discrete), for place-aware memories


@dataclass
class ModelConfig:
    """Policy architecture: encoder -> memory -> heads."""

    memory: str = "lstm"  # name in rlmem.memory.MEMORIES
    memory_kwargs: dict[str, Any] = field(default_factory=dict)  # constructor args of that memory
    encoder: EncoderConfig = field(default_factory=EncoderConfig)


@dataclass
class PPOConfig:
    """Recurrent PPO (CleanRL's names). One update = one rollout of num_envs x num_steps steps."""

    name: str = "ppo"
    total_steps: int = 500_000  # environment steps over all envs
    num_envs: int = 16  # parallel environments
    num_steps: int = 128  # rollout length per env
    seq_len: int = 32  # truncated-BPTT chunk length; must divide num_steps
    update_epochs: int = 4  # passes over the rollout per update
    num_minibatches: int = 4  # minibatches of whole chunks per epoch
    lr: float = 3e-4  # Adam learning rate
    anneal_lr: bool = True  # linear decay of lr to 0 over total_steps
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # GAE lambda
    clip_coef: float = 0.2  # policy ratio clip
    clip_vloss: bool = True  # clip the value update around the old value
    ent_coef: float = 0.01  # entropy bonus weight
    vf_coef: float = 0.5  # value loss weight
    max_grad_norm: float = 0.5  # global gradient-norm clip
    norm_adv: bool = True  # normalise advantages per minibatch
    target_kl: float | None = None  # stop the epoch loop early past this approx-KL (None: never)
    checkpoint_every: int = 20  # updates between checkpoints (the last update always saves)


@dataclass
class CollectSpec:
    """How the offline trainer creates its dataset when it is missing (as ``rlmem.collect`` would)."""

    policy: str = "oracle"  # oracle | checkpoint
    checkpoint: str | None = None  # for policy=checkpoint
    episodes: int = 1000  # episodes, split evenly over the grid
    grid: dict[str, list[Any]] = field(default_factory=dict)  # env kwargs to vary, e.g. corridor_length
    num_envs: int = 64
    seed: int = 12345


@dataclass
class OfflineConfig:
    """Segment-recurrent behaviour cloning (the ELMUR/RATE regime) on a Minari dataset."""

    name: str = "offline"
    dataset_id: str = MISSING  # Minari dataset id
    data_dir: str = "data"  # Minari root (MINARI_DATASETS_PATH)
    collect: CollectSpec | None = None  # create the dataset with this when it is missing
    context: int = 10  # K: steps per segment
    segments: int = 0  # S: segments per trajectory (0 = as many as the longest trajectory needs)
    batch_size: int = 128  # trajectories per batch
    updates: int = 2000  # batches to train on
    step_per_segment: bool = True  # optimizer step after every segment (ELMUR); False: one per batch
    detach: bool = True  # detach the memory between segments; False backpropagates through the whole trajectory
    loss: str = "auto"  # auto (ce for discrete, mse for Box) | ce | mse | nll (Gaussian log-likelihood)
    rtg_target: float | None = None  # condition on return-to-go: true RTG in training, this target at eval
    lr: float = 3e-4  # AdamW peak learning rate
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup: int = 100  # batches of linear warm-up
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    max_grad_norm: float = 1.0
    eval_every: int = 200  # updates between evaluations in the real env, and at the last (0: only the run's final one)
    eval_episodes: int = 100
    checkpoint_every: int = 200  # updates between checkpoints (the last update always saves)


@dataclass
class TrainConfig:
    """Top level of ``python -m rlmem.train``."""

    env: EnvConfig = MISSING
    model: ModelConfig = MISSING
    algo: Any = MISSING  # PPOConfig or OfflineConfig (the trainer is selected by algo.name)
    seed: int = 1  # seeds torch, numpy, python and the envs
    device: str = "cpu"  # cpu | cuda | cuda:N
    run_dir: str = MISSING  # where config, checkpoints, TensorBoard logs and eval.json go
    resume: bool = False  # continue from run_dir/checkpoints/latest.pt if it exists
    torch_threads: int = 0  # torch intra-op threads (0 = torch's default)
    progress: bool = True  # console progress bar
    eval_episodes: int = 100  # deterministic evaluation episodes after training (0 = none)
    time_budget_s: float | None = None  # stop training after this many seconds of this invocation (the update
    # in progress finishes, is saved and evaluated); None: run all updates. Schedules keep their full length.


def as_dataclass(node: Any) -> Any:
    """A config group node as its plain dataclass: ``DictConfig`` attribute access costs ~50 us, too slow for
    per-step loops."""
    return OmegaConf.to_object(node) if isinstance(node, DictConfig) else node


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="env", name="env_schema", node=EnvConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="algo", name="ppo_schema", node=PPOConfig)
    cs.store(group="algo", name="offline_schema", node=OfflineConfig)
