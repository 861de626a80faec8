"""Checkpoints: weights + resolved config + spaces, written atomically; ``load_policy``.

A checkpoint is one ``torch.save`` file holding the policy's architecture and weights, the
observation/action spaces (pickled gymnasium spaces), the env id/kwargs, the resolved run config and
the trainer's state (optimizer, counters, RNG) for ``resume``. It is written to a temporary file and
renamed over the old one, so a crash mid-write never leaves a truncated checkpoint.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from rlmem.policy import Policy

FORMAT = 1
LATEST = Path("checkpoints") / "latest.pt"


def save_checkpoint(path: str | Path, policy: Policy, config: dict[str, Any], trainer: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "arch": policy.arch,
        "observation_space": policy.observation_space,
        "action_space": policy.action_space,
        "env_id": policy.env_id,
        "env_kwargs": policy.env_kwargs,
        "config": config,
        "policy": policy.state_dict(),
        "trainer": trainer,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (-> its ``checkpoints/latest.pt``)."""
    p = Path(path)
    if p.is_dir():
        p = p / LATEST
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (expected a .pt file or a run dir with {LATEST})")
    return p


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = resolve_checkpoint(path)
    try:
        # Spaces are pickled gymnasium objects: only load checkpoints you trust.
        ckpt = torch.load(p, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError) as e:
        raise ValueError(f"checkpoint {p} is corrupt or not an rlmem checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{p} is not an rlmem checkpoint of format {FORMAT}")
    return ckpt


def policy_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu", weights: bool = True) -> Policy:
    """The checkpoint's policy in eval mode; ``weights=False`` leaves its architecture freshly initialised (the
    untrained control of a probe)."""
    a = ckpt["arch"]
    policy = Policy(
        ckpt["observation_space"],
        ckpt["action_space"],
        memory=a["memory"],
        memory_kwargs=a["memory_kwargs"],
        encoder=a["encoder"],
        place_key=a.get("place_key"),
        env_id=ckpt["env_id"],
        env_kwargs=ckpt["env_kwargs"],
        device=device,
    )
    if weights:
        policy.load_state_dict(ckpt["policy"])
    return policy.eval()


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> Policy:
    """Load a trained policy from a run directory or checkpoint file, ready for ``act``/``predict``."""
    import envs  # noqa: F401  (registers the rlmem env ids used by policy.make_env)

    return policy_from_checkpoint(load_checkpoint(path), device)
