"""Offline trajectories as Minari datasets: write (``rlmem.collect``), load and validate (trainers).

Datasets live under a local Minari root (``data_dir``, default ``data/``; Minari reads it from
``MINARI_DATASETS_PATH``, which :func:`minari_root` sets for the duration of a call). Minari's
``DataCollector`` needs jax, so episodes are written with ``minari.create_dataset_from_buffers``
(DESIGN.md, "Libraries"). Loading fails with a clear message when the dataset is missing, unreadable
or recorded with other spaces than the environment it is meant for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlmem.tree import Nested, tree_map


@dataclass
class Episode:
    """One episode: ``observations`` has one more step than ``actions`` (the final observation)."""

    observations: Any  # array [T+1, ...] or dict/tuple of them
    actions: np.ndarray  # [T, ...]
    rewards: np.ndarray  # [T]
    terminations: np.ndarray  # [T] bool
    truncations: np.ndarray  # [T] bool
    infos: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.rewards)


@dataclass
class Trajectories:
    """Episodes padded to a common length, as tensors ``[E, T_max, ...]`` (observations without the
    final one: ``obs[e, t]`` is what the policy saw when it took ``actions[e, t]``)."""

    obs: Nested
    actions: Tensor
    rewards: Tensor  # float32 [E, T_max]
    lengths: Tensor  # int64 [E]
    observation_space: gym.Space
    action_space: gym.Space

    @property
    def num_episodes(self) -> int:
        return int(self.lengths.numel())

    @property
    def max_len(self) -> int:
        return int(self.rewards.shape[1])


@contextlib.contextmanager
def minari_root(data_dir: str | Path | None) -> Iterator[Path]:
    """Point Minari at ``data_dir`` (created if missing) for the duration of the block."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    root = Path(data_dir or old or "data").resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def dataset_exists(dataset_id: str, data_dir: str | Path | None = None) -> bool:
    with minari_root(data_dir) as root:
        return (root / dataset_id / "data").is_dir()


def write_dataset(
    dataset_id: str,
    episodes: Sequence[Episode],
    env: gym.Env | str,
    data_dir: str | Path | None = None,
    algorithm_name: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
    lossless: bool = True,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
) -> Path:
    """Write ``episodes`` as Minari dataset ``dataset_id`` (e.g. ``"tmaze/elmur-oracle-v0"``).

    ``lossless=False`` lets Minari JPEG-encode image observations (smaller, lossy). The author and code
    metadata are optional (Minari's warnings about them being unset are silenced).
    """
    import warnings

    import minari
    from minari.data_collector import EpisodeBuffer

    if not episodes:
        raise ValueError("no episodes to write")
    env_obj = gym.make(env) if isinstance(env, str) else env
    with minari_root(data_dir) as root:
        target = root / dataset_id
        if target.exists() and not overwrite:
            raise FileExistsError(f"dataset {dataset_id!r} already exists in {root} (pass overwrite=true)")
        buffers = [
            EpisodeBuffer(id=i, observations=tree_map(lambda x: list(np.asarray(x)), ep.observations),
                          actions=list(ep.actions),
                          rewards=list(np.asarray(ep.rewards, dtype=np.float64)),
                          terminations=list(np.asarray(ep.terminations, dtype=bool)),
                          truncations=list(np.asarray(ep.truncations, dtype=bool)), infos=ep.infos)
            for i, ep in enumerate(episodes)
        ]
        # Written under a staging root and renamed into place, so that no reader (another process loading or
        # checking for this dataset) ever sees a half-written one.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
        try:
            with minari_root(staging), warnings.catch_warnings():
                warnings.filterwarnings("ignore", r"`(code_permalink|author|author_email)` is set to None")
                minari.create_dataset_from_buffers(
                    dataset_id, buffers, env=env_obj, eval_env=env_obj, algorithm_name=algorithm_name,
                    description=description, author=author, author_email=author_email,
                    code_permalink=code_permalink, observation_space=env_obj.observation_space,
                    action_space=env_obj.action_space, jpeg_encoding=not lossless)
            for ns in Path(dataset_id).parents:  # Minari's namespace metadata, where the root lacks it
                meta = Path(ns, "namespace_metadata.json")
                if ns != Path(".") and (staging / meta).exists() and not (root / meta).exists():
                    (root / ns).mkdir(parents=True, exist_ok=True)
                    shutil.copy(staging / meta, root / meta)
            if target.exists():  # overwrite (checked above), or another writer finished first
                if not overwrite:
                    raise FileExistsError(f"dataset {dataset_id!r} already exists in {root} (pass overwrite=true)")
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging / dataset_id, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


@contextlib.contextmanager
def dataset_lock(dataset_id: str, data_dir: str | Path | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``dataset_id`` in ``data_dir`` for the block (an ``flock`` on a file beside the
    datasets), so that processes collecting the same missing dataset at once collect it only once."""
    with minari_root(data_dir) as root, open(root / f".{dataset_id.replace('/', '--')}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_trajectories(
    dataset_id: str,
    data_dir: str | Path | None = None,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
) -> Trajectories:
    """Load a Minari dataset into padded tensors; check its spaces against the given ones.

    Raises ``FileNotFoundError`` (missing, listing the local datasets), ``ValueError`` (unreadable or
    corrupt, or spaces that differ from the environment's: the message names both).
    """
    import minari

    with minari_root(data_dir) as root:
        if not (root / dataset_id / "data").is_dir():
            local = sorted(minari.list_local_datasets())
            raise FileNotFoundError(
                f"no dataset {dataset_id!r} in {root}; local datasets: {local or 'none'}. "
                f"Create one with `python -m rlmem.collect ... dataset_id={dataset_id}`")
        try:
            ds = minari.load_dataset(dataset_id)
            episodes = list(ds.iterate_episodes())
        except Exception as e:  # h5py/json errors of many kinds: report them as one clear error
            raise ValueError(f"dataset {dataset_id!r} in {root} is corrupt or unreadable: {e}") from e
    for what, theirs, mine in (("observation", ds.observation_space, observation_space),
                               ("action", ds.action_space, action_space)):
        if mine is not None and theirs != mine:
            raise ValueError(f"dataset {dataset_id!r} has {what} space {theirs}, "
                             f"but the environment has {mine}")
    if not episodes:
        raise ValueError(f"dataset {dataset_id!r} holds no episodes")
    lengths = np.array([len(ep.rewards) for ep in episodes])
    t_max = int(lengths.max())
    obs = _pad_nested([ep.observations for ep in episodes], ds.observation_space, t_max, drop_last=True)
    actions = _pad([np.asarray(ep.actions) for ep in episodes], t_max)
    rewards = _pad([np.asarray(ep.rewards, dtype=np.float32) for ep in episodes], t_max)
    act_dtype = torch.float32 if isinstance(ds.action_space, gym.spaces.Box) else torch.int64
    return Trajectories(
        obs=obs, actions=torch.as_tensor(actions).to(act_dtype), rewards=torch.as_tensor(rewards),
        lengths=torch.as_tensor(lengths, dtype=torch.int64), observation_space=ds.observation_space,
        action_space=ds.action_space)


def _pad(arrays: list[np.ndarray], t_max: int) -> np.ndarray:
    first = arrays[0]
    out = np.zeros((len(arrays), t_max, *first.shape[1:]), dtype=first.dtype)
    for i, a in enumerate(arrays):  # once per dataset load, not on a training path
        out[i, : len(a)] = a
    return out


def _pad_nested(obs: list[Any], space: gym.Space, t_max: int, drop_last: bool) -> Nested:
    if isinstance(space, gym.spaces.Dict):
        return {k: _pad_nested([o[k] for o in obs], s, t_max, drop_last) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_pad_nested([o[i] for o in obs], s, t_max, drop_last) for i, s in enumerate(space.spaces))
    arrays = [np.asarray(o)[:-1] if drop_last else np.asarray(o) for o in obs]
    padded = _pad(arrays, t_max)
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return torch.as_tensor(padded.astype(np.int64))
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8:
        return torch.as_tensor(padded)
    return torch.as_tensor(padded.astype(np.float32))
