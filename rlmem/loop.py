"""The training loop every trainer shares, and the interface a trainer implements to plug into it.

A trainer (``rlmem.algos``) supplies its data source and its update; the loop owns the rest:

    trainer = Trainer(cfg, world)                 # envs or dataset: spaces, env kwargs, number of iterations
    policy  = build_policy(cfg, spaces)           # the same on every rank (rank 0's weights broadcast)
    trainer.setup(policy)                         # optimiser, schedules
    resume?                                       # weights, optimiser, RNG, trainer counters
    for i in iterations:
        batch   = trainer.collect(policy, i)      # PPO: a rollout;  offline: a sampled batch
        metrics = trainer.update(policy, batch)   # tensors, reduced over ranks once per iteration
        summary = trainer.summarize(totals)       # scalars, progress fields, the memory's feedback score
        memory hooks, stop decision (agreed across ranks), evaluation, logging, checkpoint
    crash save on any exception

A trainer never knows which memory, env or encoder it runs, and never decides alone to stop.
"""

from __future__ import annotations

import abc
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import Tensor

from rlmem.distributed import World
from rlmem.evaluation import EvalResult
from rlmem.policy import Policy
from rlmem.run import Progress, Run, plural, rng_state, set_rng_state

log = logging.getLogger("rlmem")


@dataclass
class Metrics:
    """What an update reports, as tensors on any device, reduced across ranks by the loop in one collective.

    ``means`` are averaged over ranks (losses, diagnostics); ``sums`` are added (episode counts and returns)."""

    means: dict[str, Tensor] = field(default_factory=dict)
    sums: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Summary:
    """A trainer's reading of the reduced metrics: TensorBoard scalars, progress-bar fields, and the score of this
    iteration handed to ``Memory.feedback`` (None: no score this time)."""

    scalars: dict[str, float]
    postfix: dict[str, float]
    score: float | None = None


class Trainer(abc.ABC):
    """A trainer: its config schema, a data source and an update (see the module docstring).

    Subclasses set ``observation_space``, ``action_space``, ``env_kwargs`` (as recorded with the policy) and
    ``num_iterations`` in ``__init__``."""

    unit: ClassVar[str] = "step"  # what progress counts: env steps (PPO) or batches (offline)
    observation_space: gym.Space
    action_space: gym.Space
    env_kwargs: dict[str, Any]
    num_iterations: int

    @classmethod
    def prepare(cls, cfg: Any) -> None:  # noqa: B027 - optional hook
        """Once per run, before any trainer is built, on the main rank only (e.g. collect a missing dataset)."""
        return None

    @abc.abstractmethod
    def __init__(self, cfg: Any, world: World): ...

    @abc.abstractmethod
    def setup(self, policy: Policy) -> None:
        """Build the optimiser (and schedules) for ``policy``."""

    @abc.abstractmethod
    def collect(self, policy: Policy, iteration: int) -> Any:
        """The data of one iteration: a rollout, a batch."""

    @abc.abstractmethod
    def update(self, policy: Policy, batch: Any, iteration: int) -> Metrics:
        """Learn from ``batch``; optimiser steps go through :func:`optimize` (gradients averaged over ranks)."""

    @abc.abstractmethod
    def summarize(self, totals: dict[str, float], iteration: int) -> Summary:
        """Turn the reduced metrics (host floats) into scalars, progress fields and a feedback score."""

    @abc.abstractmethod
    def progress_at(self, iterations_done: int) -> int:
        """Progress units (``unit``) after that many iterations; also the x axis of TensorBoard."""

    def state_dict(self) -> dict[str, Any]:
        """Optimiser, schedules, counters: what ``resume`` needs beyond the weights and the RNG."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`state_dict`'s output."""

    def final_scalars(self) -> dict[str, float]:
        """Scalars logged once, after the last iteration (e.g. PPO's final MMER)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release envs and workers."""


def build_policy(cfg: Any, observation_space: gym.Space, action_space: gym.Space, env_kwargs: dict[str, Any]
                 ) -> Policy:
    """The policy a run config describes (``cfg.model``, ``cfg.env``, ``cfg.device``) for the given spaces."""
    return Policy.from_config(cfg.model, observation_space, action_space, env_id=cfg.env.id, env_kwargs=env_kwargs,
                              place_key=cfg.env.place_key, device=cfg.device)


def optimize(world: World, policy: Policy, optimizer: torch.optim.Optimizer, loss: Tensor,
             max_grad_norm: float) -> Tensor:
    """One optimiser step on ``loss``: backward, gradients averaged over ranks, norm clipped; returns the norm."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    world.average_gradients(policy.parameters())
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    optimizer.step()
    return grad_norm


def _reduce(world: World, metrics: Metrics) -> dict[str, float]:
    """Means averaged and sums added over ranks in one collective, then to the host once."""
    names = [*metrics.means, *metrics.sums]
    if not names:
        return {}
    tensors = [*metrics.means.values(), *metrics.sums.values()]
    values = torch.stack([v.detach().float().reshape(()).to(tensors[0].device) for v in tensors])
    if world.distributed:
        values = values.to(world.comm_device)
        scale = torch.cat([torch.full((len(metrics.means),), 1.0 / world.size), torch.ones(len(metrics.sums))])
        world.sum_(values)
        values = values * scale.to(values.device)
    return dict(zip(names, values.tolist(), strict=True))


def train_loop(cfg: Any, trainer: Trainer, policy: Policy, run: Run, world: World) -> Policy:
    """Train ``policy`` with ``trainer`` under the run config ``cfg``; returns the trained policy (in eval mode)."""
    world.broadcast_([*policy.parameters(), *policy.buffers()])  # every rank starts from rank 0's weights
    trainer.setup(policy)
    start = 0
    ckpt = _checkpoint_for_resume(run, world) if cfg.resume else None
    if ckpt is not None:
        policy.check_spaces(ckpt["observation_space"], ckpt["action_space"])
        policy.load_state_dict(ckpt["policy"])
        state = ckpt["trainer"]
        trainer.load_state_dict(state)
        rngs = state.get("rng_ranks")
        if rngs is not None and len(rngs) == world.size:
            set_rng_state(rngs[world.rank])
        elif world.is_main and state.get("rng") is not None:  # a crash save keeps rank 0's streams only
            set_rng_state(state["rng"])
        # checkpoints before the shared loop counted PPO updates as "update" and offline batches as "global_step"
        start = state.get("iteration", state.get("update", state.get("global_step", 0)))
        run.step = trainer.progress_at(start)
        log.info("resumed from %s at iteration %d", run.checkpoint_path, start)
    run.open()  # the resume was accepted (or none was asked for): the run's record may be written now

    progress = Progress(trainer.progress_at(trainer.num_iterations), trainer.unit, cfg.progress and world.is_main,
                        start=trainer.progress_at(start))
    budget = cfg.time_budget_s
    deadline = time.perf_counter() + budget if budget is not None else math.inf
    eval_every = getattr(cfg.algo, "eval_every", 0)
    checkpoint_every = max(getattr(cfg.algo, "checkpoint_every", 1), 1)

    def save(done: int, all_ranks: bool) -> None:
        # RNG state of every rank, so that a resumed distributed run continues each rank's streams; gathering is a
        # collective, so a crash save (other ranks may be gone) keeps rank 0's only
        rngs = world.gather_objects(rng_state()) if all_ranks else [rng_state()]
        run.save(policy, {**trainer.state_dict(), "iteration": done, "global_step": trainer.progress_at(done),
                          "world_size": world.size, "rng": rngs[0], "rng_ranks": rngs if all_ranks else None})

    log.info("%s: %s with %s, %d parameters, %d iterations, %d process(es)", cfg.algo.name, cfg.env.id,
             cfg.model.memory, sum(p.numel() for p in policy.parameters()), trainer.num_iterations, world.size)
    it = start
    try:
        for it in range(start, trainer.num_iterations):
            t0 = time.perf_counter()
            batch = trainer.collect(policy, it)
            t1 = time.perf_counter()
            totals = _reduce(world, trainer.update(policy, batch, it))
            done = it + 1
            summary = trainer.summarize(totals, it)
            scalars = {**summary.scalars, "perf/collect_s": t1 - t0, "perf/update_s": time.perf_counter() - t1}
            if summary.score is not None:
                scalars |= {f"memory/{k}": v for k, v in policy.memory.feedback(summary.score).items()}
                world.broadcast_(policy.memory.buffers())  # a hook's own randomness must not split the ranks
            last = done == trainer.num_iterations or world.any(time.perf_counter() >= deadline)
            if last:
                policy.memory.on_train_end()
            if eval_every and (done % eval_every == 0 or last) and world.is_main:
                scalars |= eval_scalars(evaluate(cfg, policy, cfg.algo.eval_episodes, cfg.seed + done))
                summary.postfix |= {k.split("/")[1]: v for k, v in scalars.items() if k.startswith("eval/")}
            rate = progress.update(trainer.progress_at(done), summary.postfix)
            scalars[f"perf/{plural(trainer.unit)}_per_s"] = rate
            run.scalars(trainer.progress_at(done), scalars)
            if done % checkpoint_every == 0 or last:
                save(done, all_ranks=True)
            if last:
                if done < trainer.num_iterations:
                    log.info("time budget of %.0f s spent after %d of %d iterations", budget, done,
                             trainer.num_iterations)
                break
    except BaseException:
        if world.is_main:  # keep what was learned: weights at the interrupted iteration (re-run on resume)
            log.warning("interrupted at iteration %d: saving %s", it, run.checkpoint_path)
            save(it, all_ranks=False)
        raise
    finally:
        progress.close()
        trainer.close()
    run.scalars(run.step, trainer.final_scalars())
    policy.eval()
    return policy


def _checkpoint_for_resume(run: Run, world: World) -> dict[str, Any] | None:
    """The checkpoint to resume from, as rank 0 reads and accepts it, on every rank (ranks need not share a
    filesystem or agree on a run dir); a refusal is raised on every rank."""
    if not world.distributed:
        return run.checkpoint_for_resume(world.size)
    found: Any = None
    if world.is_main:
        try:
            found = run.checkpoint_for_resume(world.size)
        except (ValueError, FileNotFoundError) as e:  # ResumeError included
            found = e
    found = world.broadcast_object(found)
    if isinstance(found, BaseException):
        raise found
    return found


def evaluate(cfg: Any, policy: Policy, episodes: int, seed: int) -> EvalResult:
    """Deterministic evaluation in the run's env with the policy's own env kwargs (a trainer may add some, e.g.
    offline ``rtg_target``), in eval mode (no dropout)."""
    from rlmem.evaluation import evaluate_env

    was_training = policy.training
    policy.eval()
    try:
        res, _ = evaluate_env(policy, cfg.env.id, dict(policy.env_kwargs), episodes, backend=cfg.env.backend,
                              asynchronous=cfg.env.asynchronous, num_envs=cfg.env.eval_envs, seed=seed)
    finally:
        policy.train(was_training)
    return res


def eval_scalars(res: EvalResult) -> dict[str, float]:
    """An evaluation as ``eval/*`` scalars."""
    out = {"eval/mean_return": res.mean_return}
    if res.success_rate is not None:
        out["eval/success_rate"] = res.success_rate
    return out
