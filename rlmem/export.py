"""``python -m rlmem.export checkpoint=PATH format=onnx out=FILE``: a trained policy as one ONNX step graph.

The graph is one policy step for a batch of any size, with the memory's state as explicit inputs and outputs:

    inputs   obs (or obs.<key> per entry of a Dict/Tuple space)   [B, ...]  float32 / int64 (Discrete) / uint8 images
             episode_start                                          [B] bool: resets happen inside the graph
             state.<name> per tensor of ``policy.initial_state``    [B, ...]
    outputs  action           greedy, env-ready (Box actions clipped to the space)
             logits           log-probabilities [B, n] (MultiDiscrete: [B, k, n], padded with -inf)
                              -- or mean and log_std for Box actions
             value            [B]
             next_state.<name>

Next to ``FILE`` it writes ``FILE``'s stem + ``.json`` (spaces, env id and kwargs, memory, the input/output and
state names, dtypes and per-row shapes) and ``.initial_state.npz`` (one row of every state tensor: repeat it over
the batch). Output dtypes and shapes are in the sidecar: ``action`` is int64 for discrete actions, float32 for
Box ones. A numpy-only loop (``examples/onnx_tmaze.py``)::

    sess = onnxruntime.InferenceSession("policy.onnx")
    state = {f"state.{k}": np.repeat(v, B, 0) for k, v in np.load("policy.initial_state.npz").items()}
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"obs": obs, "episode_start": start, **state})))
    state = {k.replace("next_state.", "state."): v for k, v in out.items() if k.startswith("next_state.")}

The step is traced with ``torch.export`` on the memories' sync-free paths (those an accelerator takes, with no
branch on a tensor's value); a memory using an op the ONNX exporter lacks fails with :class:`ExportError` naming it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import Tensor, nn

from rlmem.heads import DiagGaussian, MultiCategorical
from rlmem.policy import Policy
from rlmem.syncs import sync_free

FORMATS = ("onnx",)


class ExportError(RuntimeError):
    """The policy cannot be exported (the reason is in the message)."""


@dataclass
class ExportConfig:
    checkpoint: str = MISSING  # checkpoint file or run directory
    format: str = "onnx"  # onnx (the only format so far)
    out: str = ""  # the graph's path ("": <run dir>/policy.onnx)
    opset: int = 18  # ONNX opset


def obs_inputs(space: gym.Space, prefix: str = "obs") -> list[tuple[str, gym.Space]]:
    """The graph's observation inputs: one per leaf of a Dict/Tuple space (``obs.<key>``), else ``obs``."""
    if isinstance(space, gym.spaces.Dict):
        return [leaf for k, s in space.spaces.items() for leaf in obs_inputs(s, f"{prefix}.{k}")]
    if isinstance(space, gym.spaces.Tuple):
        return [leaf for i, s in enumerate(space.spaces) for leaf in obs_inputs(s, f"{prefix}.{i}")]
    return [(prefix, space)]


def input_dtype(space: gym.Space) -> np.dtype:
    """The dtype the policy reads a leaf observation in (as ``envs.vector.obs_to_tensor`` converts it)."""
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return np.dtype(np.int64)
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8:
        return np.dtype(np.uint8)
    return np.dtype(np.float32)


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A JSON description of a gymnasium space (bounds as one number where they are uniform)."""

    def bound(a: np.ndarray) -> Any:
        return a.flat[0].item() if a.size and (a == a.flat[0]).all() else a.tolist()

    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(s) for s in space.spaces]}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype), "low": bound(space.low),
                "high": bound(space.high)}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    raise ExportError(f"cannot describe observation/action space {space}")


class StepGraph(nn.Module):
    """``Policy`` as the flat function the graph computes: (obs leaves, episode_start, state tensors) -> (action,
    distribution parameters, value, next state tensors). Greedy actions, as ``policy.act(deterministic=True)``."""

    def __init__(self, policy: Policy):
        super().__init__()
        self.policy = policy
        self.obs_names = [name for name, _ in obs_inputs(policy.observation_space)]
        self.state_names = list(policy.initial_state(1))
        self.dist_names = ["mean", "log_std"] if isinstance(policy.action_space, gym.spaces.Box) else ["logits"]

    @property
    def input_names(self) -> list[str]:
        return [*self.obs_names, "episode_start", *(f"state.{n}" for n in self.state_names)]

    @property
    def output_names(self) -> list[str]:
        return ["action", *self.dist_names, "value", *(f"next_state.{n}" for n in self.state_names)]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        n_obs = len(self.obs_names)
        leaves = dict(zip(self.obs_names, inputs[:n_obs], strict=True))
        obs = _nest(self.policy.observation_space, "obs", leaves)
        start = inputs[n_obs]
        state = dict(zip(self.state_names, inputs[n_obs + 1 :], strict=True))
        dist, value, new = self.policy(_add_time(obs), state, start[:, None])
        assert new is not None
        action = self.policy.to_env_action(dist.mode()[:, 0])
        if isinstance(dist, DiagGaussian):
            params: list[Tensor] = [dist.mean[:, 0], dist.log_std[:, 0]]
        else:
            cat = cast("MultiCategorical", dist)
            logp = cat.logp[:, 0]  # (B, k, n)
            params = [logp[:, 0] if cat.squeeze else logp]
        return (action, *params, value[:, 0], *(new[n] for n in self.state_names))


def _nest(space: gym.Space, prefix: str, leaves: dict[str, Tensor]) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {k: _nest(s, f"{prefix}.{k}", leaves) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_nest(s, f"{prefix}.{i}", leaves) for i, s in enumerate(space.spaces))
    return leaves[prefix]


def _add_time(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: _add_time(v) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(_add_time(v) for v in obs)
    return obs[:, None]


def example_inputs(policy: Policy, batch: int = 2) -> tuple[Tensor, ...]:
    """Inputs of the right dtypes and shapes for ``StepGraph`` (random observations in the space, a mix of episode
    starts, the initial state)."""
    g = torch.Generator().manual_seed(0)
    obs = []
    for _, space in obs_inputs(policy.observation_space):
        sample = np.stack([space.sample() for _ in range(batch)]).astype(input_dtype(space), copy=False)
        obs.append(torch.as_tensor(sample))
    start = torch.rand(batch, generator=g) < 0.5
    return (*obs, start, *policy.initial_state(batch, "cpu").values())


def export_onnx(policy: Policy, out: str | Path, opset: int = 18) -> Path:
    """Write ``policy`` as an ONNX step graph to ``out``, with its JSON sidecar and initial state (module docstring).

    Raises :class:`ExportError` when the exporter cannot convert the policy (e.g. an op without an ONNX form)."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs both)
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx and onnxscript ({e}): pip install 'rlmem[export]'") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    policy = copy.deepcopy(policy).to("cpu").eval()  # (the caller's policy keeps its device and mode)
    graph = StepGraph(policy)
    args = example_inputs(policy)
    with torch.no_grad(), sync_free():
        example_out = graph(*args)
    batch = torch.export.Dim("batch", min=1)
    dynamic = (tuple({0: batch} for _ in args),)  # (forward takes *inputs: one tuple)
    log = io.StringIO()
    try:
        with torch.no_grad(), sync_free(), contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, args, str(out), dynamo=True, input_names=graph.input_names,
                              output_names=graph.output_names, dynamic_shapes=dynamic, opset_version=opset,
                              external_data=False)
    except Exception as e:  # the exporter raises many types, chained; the innermost one names the op
        root: BaseException = e
        while root.__cause__ is not None:
            root = root.__cause__
        reason = next((line for line in str(root).splitlines() if line.strip()), type(root).__name__)
        raise ExportError(f"the policy (memory {policy.arch['memory']!r}) cannot be exported to ONNX: {reason}") from e

    s0 = policy.initial_state(1, "cpu")
    arrays: dict[str, Any] = {k: v.numpy() for k, v in s0.items()}
    np.savez(_sibling(out, ".initial_state.npz"), **arrays)
    obs_leaves = obs_inputs(policy.observation_space)
    sidecar = {
        "format": "onnx",
        "opset": opset,
        "graph": out.name,
        "initial_state": _sibling(out, ".initial_state.npz").name,
        "env_id": policy.env_id,
        "env_kwargs": policy.env_kwargs,
        "memory": policy.arch["memory"],
        "memory_kwargs": policy.arch["memory_kwargs"],
        "observation_space": space_to_json(policy.observation_space),
        "action_space": space_to_json(policy.action_space),
        "inputs": [{"name": n, "dtype": str(input_dtype(s)), "shape": ["batch", *(s.shape or ())]}
                   for n, s in obs_leaves]
        + [{"name": "episode_start", "dtype": "bool", "shape": ["batch"]}]
        + [{"name": f"state.{k}", "dtype": str(v.numpy().dtype), "shape": ["batch", *v.shape[1:]]}
           for k, v in s0.items()],
        "outputs": [{"name": n, "dtype": str(o.detach().numpy().dtype), "shape": ["batch", *o.shape[1:]]}
                    for n, o in zip(graph.output_names, example_out, strict=True)],
        "state": {k: {"dtype": str(v.numpy().dtype), "shape": list(v.shape[1:])} for k, v in s0.items()},
    }
    _sibling(out, ".json").write_text(json.dumps(sidecar, indent=2, default=str))
    return out


def _sibling(out: Path, suffix: str) -> Path:
    return out.with_name(out.stem + suffix)


def main(argv: list[str] | None = None) -> Path:
    from rlmem.checkpoint import policy_from_checkpoint

    argv = sys.argv[1:] if argv is None else argv
    try:
        cli = OmegaConf.from_dotlist(argv)
        if "checkpoint" not in cli:
            raise SystemExit("usage: python -m rlmem.export checkpoint=PATH [format=onnx] [out=FILE] [opset=18]")
        cfg = OmegaConf.merge(OmegaConf.structured(ExportConfig), cli)
    except OmegaConfBaseException as e:
        raise SystemExit(f"bad argument: {e}") from None
    if cfg.format not in FORMATS:
        raise SystemExit(f"unknown format {cfg.format!r}; supported: {list(FORMATS)}")
    from rlmem.checkpoint import load_checkpoint, resolve_checkpoint

    try:
        ckpt = load_checkpoint(cfg.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    path = resolve_checkpoint(cfg.checkpoint)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    out = Path(cfg.out) if cfg.out else run_dir / "policy.onnx"
    try:
        export_onnx(policy_from_checkpoint(ckpt), out, cfg.opset)
    except ExportError as e:
        raise SystemExit(f"export failed: {e}") from None
    print(f"wrote {out} (+ {_sibling(out, '.json').name}, {_sibling(out, '.initial_state.npz').name})")
    return out


if __name__ == "__main__":
    main()
