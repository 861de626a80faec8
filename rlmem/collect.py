"""``python -m rlmem.collect env=... policy=oracle|checkpoint=PATH episodes=N dataset_id=ID``.

Rolls a policy out on the vectorized env and writes a Minari dataset (``rlmem.collection``, ``rlmem.data``):

* ``policy=oracle``: the env's privileged oracle (``VecEnv.oracle_action``, e.g. T-Maze's);
* ``checkpoint=PATH``: a trained rlmem policy (run dir or checkpoint file), sampled or greedy.

``grid.<kwarg>=[v1,v2,...]`` splits the episodes evenly over env kwargs, e.g. T-Maze corridor lengths
(the ELMUR/RATE oracle data mixes lengths up to 30 steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from rlmem.collection import collect_dataset, collect_episodes, resolve_policy
from rlmem.config import EnvConfig, register_configs

__all__ = ["CollectConfig", "collect", "collect_episodes", "main"]


@dataclass
class CollectConfig:
    env: EnvConfig = MISSING
    policy: str = "oracle"  # oracle | checkpoint
    checkpoint: str | None = None  # run dir or checkpoint file (sets policy=checkpoint)
    deterministic: bool = False  # greedy actions for checkpoint policies
    episodes: int = 1000  # episodes to write (split evenly over the grid)
    dataset_id: str = MISSING  # Minari id, e.g. tmaze/elmur-oracle-v0
    data_dir: str = "data"  # Minari root
    grid: dict[str, list[Any]] = field(default_factory=dict)  # env kwargs to vary: {corridor_length: [8, 18]}
    num_envs: int = 64  # parallel envs while collecting
    seed: int = 0
    overwrite: bool = False  # replace an existing dataset
    lossless: bool = True  # False lets Minari JPEG-encode image observations
    device: str = "cpu"
    author: str | None = None  # optional Minari metadata
    author_email: str | None = None
    code_permalink: str | None = None


def collect(cfg: Any) -> Path:
    """Collect and write the dataset described by a ``CollectConfig`` (or a mapping of its fields, missing
    ones taking their defaults); returns its path."""
    cfg = OmegaConf.merge(OmegaConf.structured(CollectConfig), cfg)  # defaults and type checks
    policy = resolve_policy(cfg.policy, cfg.checkpoint, cfg.device)
    return collect_dataset(
        cfg.env.id, dict(cfg.env.kwargs), cfg.dataset_id, cfg.episodes, policy, grid=dict(cfg.grid),
        data_dir=cfg.data_dir, backend=cfg.env.backend, asynchronous=cfg.env.asynchronous, num_envs=cfg.num_envs,
        seed=cfg.seed, deterministic=cfg.deterministic, device=cfg.device,
        algorithm_name=None if policy is None else f"rlmem:{cfg.checkpoint}", overwrite=cfg.overwrite,
        lossless=cfg.lossless, author=cfg.author, author_email=cfg.author_email, code_permalink=cfg.code_permalink)


register_configs()
ConfigStore.instance().store(name="collect_schema", node=CollectConfig)


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent.parent / "conf"),
            config_name="collect")
def main(cfg: DictConfig) -> None:
    collect(cfg)


if __name__ == "__main__":
    main()
