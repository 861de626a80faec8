"""``python -m rlmem.evaluate checkpoint=PATH episodes=N [env.kwargs.corridor_length=100 ...]``.

Loads a checkpoint (file or run directory), rebuilds its env from the stored config with any ``env.*``
overrides (e.g. a longer corridor than in training), runs ``episodes`` deterministic episodes, prints
a table and writes JSON (``output=``, default ``<run dir>/eval_<env>.json``). ``record=episode.mp4`` (or
``.gif``) also plays ``record_episodes`` episodes one after another and writes their rendered frames (envs
with ``render_mode="rgb_array"``, e.g. the manipulation tasks). Overrides are checked against the schema: a
misspelt key fails with the list of valid ones.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlmem.config import EnvConfig


@dataclass
class EvalConfig:
    checkpoint: str = MISSING  # checkpoint file or run directory
    episodes: int = 100  # episodes to run (spread evenly over the parallel envs)
    num_envs: int = 0  # parallel envs (0: env.eval_envs, else min(episodes, 64); T-Maze balanced: one per episode)
    deterministic: bool = True  # greedy actions
    balanced: bool = True  # use the env's balanced reset options when it has them (T-Maze: half up)
    seed: int = 0  # env seed
    device: str = "cpu"
    output: str = ""  # JSON path ("" = next to the checkpoint)
    record: str = ""  # also record episodes to this video file (.mp4 or .gif; "" = none); the env must render
    record_episodes: int = 1  # episodes in the video (seeds seed, seed+1, ...)
    record_fps: int = 20
    env: EnvConfig = field(default_factory=EnvConfig)  # defaults to the checkpoint's env


def parse(argv: list[str]) -> Any:
    from rlmem.checkpoint import load_checkpoint

    base = OmegaConf.structured(EvalConfig)
    try:
        cli = OmegaConf.from_dotlist(argv)
        if "checkpoint" not in cli:
            raise SystemExit("usage: python -m rlmem.evaluate checkpoint=PATH [episodes=N] [env.kwargs.K=V ...]")
        ckpt = load_checkpoint(cli.checkpoint)
        # The policy's own env kwargs (they include trainer-added ones such as rtg_target).
        env_cfg = {**ckpt["config"].get("env", {"id": ckpt["env_id"]}), "kwargs": ckpt["env_kwargs"]}
        cfg = OmegaConf.merge(base, {"env": env_cfg}, cli)
    except OmegaConfBaseException as e:
        raise SystemExit(f"bad argument: {e}") from None
    return cfg, ckpt


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from rlmem.checkpoint import policy_from_checkpoint, resolve_checkpoint
    from rlmem.evaluation import evaluate_env

    cfg, ckpt = parse(sys.argv[1:] if argv is None else argv)
    policy = policy_from_checkpoint(ckpt, cfg.device)
    kwargs = dict(cfg.env.kwargs)
    res, balanced = evaluate_env(policy, cfg.env.id, kwargs, cfg.episodes, backend=cfg.env.backend,
                                 asynchronous=cfg.env.asynchronous, num_envs=cfg.num_envs or cfg.env.eval_envs,
                                 balanced=cfg.balanced, deterministic=cfg.deterministic, seed=cfg.seed)
    out = {"checkpoint": str(resolve_checkpoint(cfg.checkpoint)), "env_id": cfg.env.id, "env_kwargs": kwargs,
           "deterministic": cfg.deterministic, "balanced": balanced, **res.as_dict()}
    succ = "n/a" if res.success_rate is None else f"{res.success_rate:.3f}"
    print(f"{'env':<28} {'episodes':>8} {'mean return':>12} {'std':>8} {'success':>8} {'mean len':>9}")
    print(f"{cfg.env.id:<28} {res.episodes:>8d} {res.mean_return:>12.3f} {res.std_return:>8.3f} "
          f"{succ:>8} {res.mean_length:>9.1f}")
    if kwargs:
        print("env kwargs:", json.dumps(kwargs))
    if cfg.record:
        from rlmem.video import record_episodes

        out["recording"] = record_episodes(policy, cfg.env.id, kwargs, cfg.record, cfg.record_episodes,
                                           cfg.record_fps, cfg.seed, cfg.deterministic)
        print(f"recorded {cfg.record_episodes} episode(s) to {cfg.record}")
    path = Path(cfg.output) if cfg.output else _default_output(cfg.checkpoint, cfg.env.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return out


def _default_output(checkpoint: str, env_id: str) -> Path:
    p = Path(checkpoint)
    run_dir = p if p.is_dir() else p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return run_dir / f"eval_{env_id.replace('/', '_')}.json"


if __name__ == "__main__":
    main()
