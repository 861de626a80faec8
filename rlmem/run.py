"""What every trainer shares: seeding, the run directory, TensorBoard + progress logging, resume."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rlmem.checkpoint import LATEST, load_checkpoint, save_checkpoint
from rlmem.policy import Policy

log = logging.getLogger("rlmem")

# Keys allowed to change when resuming (everything else must match the stored config).
RESUMABLE_CHANGES = {"algo.total_steps", "algo.updates", "resume", "progress", "device", "torch_threads",
                     "eval_episodes", "time_budget_s"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}."))
    return out


class Run:
    """A run directory: ``config.yaml``, ``checkpoints/latest.pt``, ``tb/`` and ``eval.json``.

    Args:
        run_dir: the directory (created if missing).
        config: the resolved run config (saved with the run and in every checkpoint).
        progress: show a console progress bar (its length and unit are set by the trainer, ``set_total``).
    """

    def __init__(self, run_dir: str | Path, config: dict[str, Any], progress: bool = True):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        (self.dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        self.writer = SummaryWriter(str(self.dir / "tb"))
        self.bar = tqdm(unit="step", dynamic_ncols=True, disable=not progress)
        self._t0, self._step0 = time.perf_counter(), 0
        self.step = 0  # the trainer's last reported step (x axis of the scalars)

    def set_total(self, total: int, unit: str = "step") -> None:
        self.bar.total, self.bar.unit = total, unit

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / LATEST

    def resume(self, policy: Policy, optimizer: torch.optim.Optimizer | None) -> dict[str, Any] | None:
        """Restore weights, optimizer and RNG from the latest checkpoint; returns the trainer state."""
        if not self.checkpoint_path.is_file():
            log.info("resume: no checkpoint in %s, starting fresh", self.dir)
            return None
        ckpt = load_checkpoint(self.checkpoint_path, map_location=policy.device)
        old, new = _flatten(ckpt["config"]), _flatten(self.config)
        diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
        if diff:
            changes = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise ValueError(f"cannot resume {self.checkpoint_path}: the config changed ({changes})")
        policy.check_spaces(ckpt["observation_space"], ckpt["action_space"])
        policy.load_state_dict(ckpt["policy"])
        trainer = ckpt["trainer"]
        if optimizer is not None and "optimizer" in trainer:
            optimizer.load_state_dict(trainer["optimizer"])
        if "rng" in trainer:
            set_rng_state(trainer["rng"])
        self._step0 = self.step = trainer.get("global_step", 0)
        self.bar.update(self._step0)
        log.info("resumed from %s at step %d", self.checkpoint_path, self._step0)
        return trainer

    def save(self, policy: Policy, trainer: dict[str, Any]) -> Path:
        return save_checkpoint(self.checkpoint_path, policy, self.config, {**trainer, "rng": rng_state()})

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, step)

    def progress(self, step: int, postfix: dict[str, float]) -> float:
        """Advance the bar to ``step``; returns the steps/s since the start of this process."""
        self.bar.update(step - self.bar.n)
        self.step = step
        sps = (step - self._step0) / max(time.perf_counter() - self._t0, 1e-9)
        self.bar.set_postfix({"sps": f"{sps:,.0f}", **{k: f"{v:.3g}" for k, v in postfix.items()}}, refresh=False)
        return sps

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        p = self.dir / name
        p.write_text(json.dumps(data, indent=2))
        return p

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
