"""A run's record: seeding, the run directory, TensorBoard scalars, progress output, checkpoints and resume.

A run directory holds ``config.yaml`` (the resolved config the run was trained with), ``checkpoints/latest.pt``,
``tb/`` and ``eval.json``. Nothing is written into it before :meth:`Run.open`, which the training loop calls
once a resume has been accepted: a refused ``resume=true`` leaves the directory as it was.
"""

from __future__ import annotations

import json
import logging
import random
import sys
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


class ResumeError(ValueError):
    """``resume=true`` refused: the run's config or world size changed."""


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


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "ch", "sh", "x")) else "s")


class Progress:
    """Training progress on the console: a tqdm bar on a terminal; in a log file (no TTY), one line every
    ``log_every_s`` seconds and at the end instead of a redraw per update."""

    def __init__(self, total: int, unit: str, enabled: bool = True, start: int = 0, log_every_s: float = 30.0):
        self.total, self.unit, self.n = total, unit, start
        self.tty = enabled and sys.stderr.isatty()
        self.enabled, self.log_every_s = enabled, log_every_s
        self._t0, self._n0, self._last_log = time.perf_counter(), start, -float("inf")
        self.bar = tqdm(total=total, initial=start, unit=unit, dynamic_ncols=True, disable=not self.tty)

    def rate(self) -> float:
        """Units per second since this process started (or resumed)."""
        return (self.n - self._n0) / max(time.perf_counter() - self._t0, 1e-9)

    def update(self, n: int, postfix: dict[str, float]) -> float:
        """Advance to ``n`` units; returns the rate."""
        self.bar.update(n - self.n)
        self.n = n
        rate = self.rate()
        fields = {f"{plural(self.unit)}/s": f"{rate:,.1f}" if rate < 100 else f"{rate:,.0f}",
                  **{k: f"{v:.3g}" for k, v in postfix.items()}}
        if self.tty:
            self.bar.set_postfix(fields, refresh=False)
        elif self.enabled and (time.perf_counter() - self._last_log >= self.log_every_s or n >= self.total):
            self._last_log = time.perf_counter()
            log.info("%s %s/%s (%.0f%%) %s", self.unit, f"{n:,}", f"{self.total:,}", 100 * n / max(self.total, 1),
                     " ".join(f"{k}={v}" for k, v in fields.items()))
        return rate

    def close(self) -> None:
        self.bar.close()


class Run:
    """A run directory (see the module docstring).

    Args:
        run_dir: the directory (created by :meth:`open`).
        config: the resolved run config (saved with the run and in every checkpoint).
        writes: False on every rank but the main one of a distributed run: nothing is written.
    """

    def __init__(self, run_dir: str | Path, config: dict[str, Any], writes: bool = True):
        self.dir = Path(run_dir)
        self.config = config
        self.writes = writes
        self.writer: SummaryWriter | None = None
        self.step = 0  # the x axis of the last scalars written

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / LATEST

    def checkpoint_for_resume(self, world_size: int) -> dict[str, Any] | None:
        """The latest checkpoint if its config matches this run's (``ResumeError`` naming the changes if not), or
        None when there is none. Reads only."""
        if not self.checkpoint_path.is_file():
            log.info("resume: no checkpoint in %s, starting fresh", self.dir)
            return None
        ckpt = load_checkpoint(self.checkpoint_path, map_location="cpu")
        old, new = _flatten(ckpt["config"]), _flatten(self.config)
        diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
        if diff:
            changes = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise ResumeError(f"cannot resume {self.checkpoint_path}: the config changed ({changes})")
        trained = ckpt["trainer"].get("world_size", 1)
        if trained != world_size:
            raise ResumeError(f"cannot resume {self.checkpoint_path}: it was trained with {trained} process(es), "
                              f"this run has {world_size} (the global batch would change)")
        return ckpt

    def open(self) -> None:
        """Start writing: ``config.yaml`` and the TensorBoard writer (on the writing rank)."""
        if not self.writes:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(self.config)))
        self.writer = SummaryWriter(str(self.dir / "tb"))

    def save(self, policy: Policy, trainer: dict[str, Any]) -> Path | None:
        if not self.writes:
            return None
        return save_checkpoint(self.checkpoint_path, policy, self.config, trainer)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.step = step
        if self.writer is not None:
            for tag, v in values.items():
                self.writer.add_scalar(tag, v, step)

    def write_json(self, name: str, data: dict[str, Any]) -> Path | None:
        if not self.writes:
            return None
        p = self.dir / name
        p.write_text(json.dumps(data, indent=2))
        return p

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
