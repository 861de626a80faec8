"""``python -m rlmem.train env=... model=... algo=ppo seed=S device=cpu run_dir=DIR [overrides]``.

Hydra composes ``conf/config.yaml`` with the groups env/, model/, algo/ and experiment/ over the structured schemas
of ``rlmem.config``; ``-m`` sweeps put every run in its own directory (``hydra/launcher=submitit_local`` or
``submitit_slurm`` runs them as separate jobs). Under ``torchrun --nproc_per_node=N -m rlmem.train ...`` the N
processes train one policy together (``rlmem.distributed``).

A user error (unknown env id, missing dataset, refused resume, bad value) ends with one line on stderr and exit
status 2; ``HYDRA_FULL_ERROR=1`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlmem.config import register_configs

log = logging.getLogger("rlmem")
register_configs()
# conf/hydra/launcher/submitit_*.yaml are validated against the plugin's schemas of the same names (a misspelt
# launcher key fails); Hydra warns that matching by name is deprecated, but naming the schema explicitly fails here:
# Hydra's plugin scan imports the plugin's config module a second time, and the two schema classes do not match.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_\w+' is validated against ConfigStore schema")


def train(cfg: Any) -> dict[str, Any]:
    """Train from a resolved run config (``DictConfig`` or dataclass-like); returns the final evaluation (on the
    main process; ``{}`` elsewhere)."""
    import envs  # noqa: F401  (registers rlmem env ids)
    from rlmem import distributed
    from rlmem.algos import TRAINERS
    from rlmem.loop import build_policy, eval_scalars, evaluate, train_loop
    from rlmem.run import Run, seed_everything

    if cfg.algo.name not in TRAINERS:
        raise KeyError(f"unknown trainer algo.name={cfg.algo.name!r}; available: {sorted(TRAINERS)}")
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    world = distributed.init(cfg.device)
    try:
        cfg.device = str(world.device(cfg.device))  # cuda -> cuda:LOCAL_RANK under torchrun
        trainer_cls = TRAINERS[cfg.algo.name]
        if world.is_main:
            trainer_cls.prepare(cfg)  # e.g. collect a missing dataset, once
        world.barrier()
        seed_everything(cfg.seed + world.rank)  # rank 0 of any run draws as a single process would
        config: dict[str, Any] = (OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
                                  if isinstance(cfg, DictConfig) else dict(cfg))
        run = Run(cfg.run_dir, config, writes=world.is_main)
        try:
            trainer = trainer_cls(cfg, world)
            policy = build_policy(cfg, trainer.observation_space, trainer.action_space, trainer.env_kwargs)
            policy = train_loop(cfg, trainer, policy, run, world)
            result: dict[str, Any] = {}
            if cfg.eval_episodes > 0 and world.is_main:
                res = evaluate(cfg, policy, cfg.eval_episodes, cfg.seed + 10_000)
                result = res.as_dict()
                run.write_json("eval.json", result)
                run.scalars(run.step, eval_scalars(res))
                log.info("evaluation over %d episodes: return %.3f +- %.3f, success %s", res.episodes,
                         res.mean_return, res.std_return, res.success_rate)
        finally:
            run.close()
        # no barrier here: after the loop's last collective (the final checkpoint) the other ranks may leave while
        # rank 0 evaluates, so the evaluation is not bounded by the collective timeout
    finally:
        distributed.shutdown()
    return result


#: errors a user causes with a command line; reported in one line (the traceback with HYDRA_FULL_ERROR=1)
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, TypeError, FileNotFoundError, FileExistsError,
                                                OmegaConfBaseException)


def report_user_errors(fn: Any, *args: Any) -> Any:
    """Call ``fn``; a user error becomes ``error: <message>`` on stderr and exit status 2."""
    import gymnasium as gym

    errors: tuple[type[BaseException], ...] = (*USER_ERRORS, gym.error.Error)
    try:
        return fn(*args)
    except errors as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {msg} ({type(e).__name__}; HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
        sys.exit(2)


def interrupt_on_stop_signals() -> None:
    """Make SIGINT and SIGTERM raise ``KeyboardInterrupt``, so that the loop saves the interrupted iteration
    (``train_loop``) whichever way a run is stopped: Ctrl-C, ``kill``, a scheduler's or ``torchrun``'s SIGTERM.

    SIGINT is set even where the process was started with it ignored: bash starts a background job of a script
    (``nohup python -m rlmem.train ... &``) with SIGINT ignored, and Python keeps an ignored SIGINT, so a
    ``kill -INT`` would otherwise do nothing. Only the command line installs these; ``train()`` leaves a caller's
    handlers alone."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent.parent / "conf"),
            config_name="config")
def main(cfg: DictConfig) -> float:
    cfg.run_dir = HydraConfig.get().runtime.output_dir  # per-job dir, also under -m sweeps
    result = report_user_errors(train, cfg)
    return float(result.get("mean_return", float("nan")))


if __name__ == "__main__":
    interrupt_on_stop_signals()
    main()
