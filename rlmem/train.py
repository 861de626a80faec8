"""``python -m rlmem.train env=... model=... algo=ppo seed=S device=cpu run_dir=DIR [overrides]``.

Hydra composes ``conf/config.yaml`` with the groups env/, model/, algo/ and experiment/ over the
structured schemas of ``rlmem.config``; ``-m`` sweeps put every run in its own directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rlmem.config import register_configs

log = logging.getLogger("rlmem")
register_configs()


def train(cfg: Any) -> dict[str, Any]:
    """Train from a resolved config (``DictConfig`` or dataclass-like); returns the final evaluation."""
    import envs  # noqa: F401  (registers rlmem env ids)
    from rlmem.algos import TRAINERS
    from rlmem.evaluation import evaluate_env
    from rlmem.run import Run, seed_everything

    if cfg.algo.name not in TRAINERS:
        raise KeyError(f"unknown trainer algo.name={cfg.algo.name!r}; available: {sorted(TRAINERS)}")
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    config = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    run = Run(cfg.run_dir, config, progress=cfg.progress)
    try:
        policy = TRAINERS[cfg.algo.name](cfg, run)
        result: dict[str, Any] = {}
        if cfg.eval_episodes > 0:
            # the policy's own env kwargs: a trainer may add some (e.g. offline rtg_target)
            res, _ = evaluate_env(policy, cfg.env.id, dict(policy.env_kwargs), cfg.eval_episodes,
                                  backend=cfg.env.backend, asynchronous=cfg.env.asynchronous,
                                  num_envs=cfg.env.eval_envs, seed=cfg.seed + 10_000)
            result = res.as_dict()
            run.write_json("eval.json", result)
            scal = {"eval/mean_return": res.mean_return}
            if res.success_rate is not None:
                scal["eval/success_rate"] = res.success_rate
            run.scalars(run.step, scal)
            log.info("evaluation over %d episodes: return %.3f +- %.3f, success %s", res.episodes,
                     res.mean_return, res.std_return, res.success_rate)
    finally:
        run.close()
    return result


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent.parent / "conf"),
            config_name="config")
def main(cfg: DictConfig) -> float:
    cfg.run_dir = HydraConfig.get().runtime.output_dir  # per-job dir, also under -m sweeps
    result = train(cfg)
    return float(result.get("mean_return", float("nan")))


if __name__ == "__main__":
    main()
