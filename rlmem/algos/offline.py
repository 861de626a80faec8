"""Offline sequence behaviour cloning, segment-recurrent (the ELMUR / RATE training regime).

Reads top to bottom: dataset (collected first if missing) -> policy -> per batch: sample trajectories,
cut them into ``segments`` consecutive segments of ``context`` steps, run them in order with the memory
state carried (and detached) between segments, a masked behaviour-cloning loss and an optimizer step
per segment -> periodic evaluation in the real env -> checkpoints.

* Memory is re-initialised per trajectory (``episode_start`` at its first step) and detached between
  segments, as ELMUR and RATE train; ``step_per_segment=false`` accumulates the segment losses into
  one optimizer step per batch instead. Detached, no loss reaches a memory *write* whose result is only read
  by a later segment (ELMUR's write path: its weights stay at their initial values); ``detach=false`` (with
  ``step_per_segment=false``) backpropagates through the whole trajectory so that writes are learned.
* Padding (trajectories shorter than ``segments x context``) is masked out of the loss and of its
  normaliser: the mean is over valid steps only.
* Losses: cross-entropy for discrete actions (``-log pi(a|h)``), MSE of the mean action or Gaussian
  negative log-likelihood for Box actions.
* AdamW, linear warm-up then cosine decay to ``lr * min_lr_ratio``, scheduled per batch.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from envs import make_vec
from rlmem.config import OfflineConfig
from rlmem.data import Trajectories, dataset_exists, load_trajectories
from rlmem.evaluation import evaluate_env
from rlmem.heads import Dist
from rlmem.policy import Policy
from rlmem.run import Run
from rlmem.tree import tree_map

log = logging.getLogger("rlmem")


def bc_loss(dist: Dist, actions: Tensor, mask: Tensor, kind: str, discrete: bool) -> dict[str, Tensor]:
    """Masked behaviour-cloning loss over ``[B, K]`` steps; ``loss_*`` terms are summed by the trainer."""
    n = mask.sum().clamp(min=1)
    if kind == "mse":
        err = (dist.mode() - actions).square()
        per_step = err.flatten(2).sum(-1) if err.dim() > 2 else err
    else:  # ce (discrete) and nll (Gaussian) are both -log pi(a|h)
        per_step = -dist.log_prob(actions)
    terms = {"loss_bc": (per_step * mask).sum() / n}
    with torch.no_grad():
        if discrete:
            hit = dist.mode() == actions
            hit = hit.flatten(2).all(-1) if hit.dim() > 2 else hit
            terms["accuracy"] = (hit.float() * mask).sum() / n
        else:
            terms["action_mse"] = ((dist.mode() - actions).square().flatten(2).mean(-1) * mask).sum() / n
    return terms


def lr_lambda(warmup: int, total: int, min_ratio: float):
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def ensure_dataset(cfg: Any, algo: OfflineConfig) -> None:
    """Collect the dataset first when it is missing and ``algo.collect`` says how."""
    if dataset_exists(algo.dataset_id, algo.data_dir) or algo.collect is None:
        return
    from rlmem.collect import collect

    c = algo.collect
    log.info("dataset %s is missing: collecting %d episodes with %s", algo.dataset_id, c.episodes, c.policy)
    collect(OmegaConf.create({
        "env": OmegaConf.to_container(cfg.env) if isinstance(cfg.env, DictConfig) else cfg.env,
        "policy": c.policy, "checkpoint": c.checkpoint, "episodes": c.episodes, "dataset_id": algo.dataset_id,
        "data_dir": algo.data_dir, "grid": dict(c.grid), "num_envs": c.num_envs, "seed": c.seed,
        "device": cfg.device}))  # the other CollectConfig fields take their defaults


def train_offline(cfg: Any, run: Run) -> Policy:
    """Train with the resolved run config ``cfg`` (env/model/algo/seed/device); returns the policy."""
    algo: OfflineConfig = OmegaConf.to_object(cfg.algo) if isinstance(cfg.algo, DictConfig) else cfg.algo
    if not algo.detach and algo.step_per_segment:
        raise ValueError("algo.detach=false backpropagates through the whole trajectory: it needs "
                         "algo.step_per_segment=false (one optimizer step per batch)")
    device = torch.device(cfg.device)
    env_kwargs = dict(cfg.env.kwargs)
    if algo.rtg_target is not None:  # the env adds obs["rtg"] (envs.wrappers.ReturnToGo) at evaluation
        env_kwargs["rtg_target"] = algo.rtg_target

    # -- data, checked against the env it is meant for --------------------------------------------
    ensure_dataset(cfg, algo)
    probe = make_vec(cfg.env.id, 1, env_kwargs, device="cpu", backend=cfg.env.backend)
    obs_space, act_space = probe.single_observation_space, probe.single_action_space
    probe.close()
    raw_space = obs_space["obs"] if algo.rtg_target is not None else obs_space
    data: Trajectories = load_trajectories(algo.dataset_id, algo.data_dir, raw_space, act_space)
    if algo.rtg_target is not None:
        # returns-to-go of the recorded episodes: g_t = sum_{t' >= t} r_t' (zero on padding)
        rtg = data.rewards.flip(1).cumsum(1).flip(1)
        data.obs = {"obs": data.obs, "rtg": rtg.unsqueeze(-1)}
    K = algo.context
    S = algo.segments or math.ceil(data.max_len / K)
    if data.max_len > S * K:
        log.warning("trajectories up to %d steps are cut to segments x context = %d", data.max_len, S * K)
    data_obs = tree_map(lambda o: _fit_time(o, S * K).to(device), data.obs)
    data_act = _fit_time(data.actions, S * K).to(device)
    lengths = data.lengths.clamp(max=S * K).to(device)
    discrete = data_act.dtype == torch.int64
    kind = ("ce" if discrete else "mse") if algo.loss == "auto" else algo.loss
    if kind == "ce" and not discrete:
        raise ValueError("algo.loss=ce needs discrete actions; use mse or nll for Box actions")

    # -- policy and optimiser ---------------------------------------------------------------------
    policy = Policy(obs_space, act_space, memory=cfg.model.memory, memory_kwargs=dict(cfg.model.memory_kwargs),
                    encoder=dict(cfg.model.encoder), place_key=cfg.env.place_key, env_id=cfg.env.id,
                    env_kwargs=env_kwargs, device=device)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=algo.lr, betas=tuple(algo.betas),
                                  weight_decay=algo.weight_decay)
    # Scheduled per update (batch), not per optimizer step: batches of short trajectories fill fewer
    # segments, so steps per batch vary while the schedule must not.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(algo.warmup, algo.updates, algo.min_lr_ratio))
    run.set_total(algo.updates, "batch")
    trainer = run.resume(policy, optimizer) if cfg.resume else None
    if trainer:
        scheduler.load_state_dict(trainer["scheduler"])
    start = trainer["global_step"] if trainer else 0
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    if trainer and "sampler" in trainer:
        gen.set_state(trainer["sampler"])
    log.info("offline BC: %s, %d trajectories (<= %d steps), %d segments of %d, %s with %d parameters",
             algo.dataset_id, data.num_episodes, data.max_len, S, K, cfg.model.memory,
             sum(p.numel() for p in policy.parameters()))

    def save(done: int) -> None:
        run.save(policy, {"global_step": done, "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "sampler": gen.get_state()})

    update = start
    t0 = time.perf_counter()
    deadline = t0 + budget if (budget := getattr(cfg, "time_budget_s", None)) is not None else math.inf
    try:
        for update in range(start, algo.updates):
            policy.train()
            idx = torch.randint(data.num_episodes, (algo.batch_size,), generator=gen).to(device)
            obs_b = tree_map(lambda o, idx=idx: o[idx], data_obs)  # (B, S*K, ...)
            act_b, len_b = data_act[idx], lengths[idx]
            state = policy.initial_state(algo.batch_size)
            stats: dict[str, float] = {}
            total: Tensor | float = 0.0
            for s in range(S):
                t = torch.arange(s * K, (s + 1) * K, device=device)
                mask = (t[None, :] < len_b[:, None]).float()  # (B, K) valid steps
                if not bool(mask.any()):
                    break
                episode_start = torch.zeros(algo.batch_size, K, dtype=torch.bool, device=device)
                episode_start[:, 0] = s == 0  # memory re-initialised per trajectory
                seg_obs = tree_map(lambda o, s=s: o[:, s * K:(s + 1) * K], obs_b)
                dist, _, state = policy(seg_obs, state, episode_start)
                terms = bc_loss(dist, act_b[:, s * K:(s + 1) * K], mask, kind, discrete)
                loss = sum(v for k, v in terms.items() if k.startswith("loss_"))
                if algo.detach:  # truncated BPTT between segments
                    state = {k: v.detach() for k, v in state.items()}
                if algo.step_per_segment:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[union-attr]
                    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), algo.max_grad_norm)
                    optimizer.step()
                else:
                    total = total + loss
                for k, v in terms.items():
                    stats[k] = stats.get(k, 0.0) + float(v.detach()) / S
            if not algo.step_per_segment:
                optimizer.zero_grad(set_to_none=True)
                total.backward()  # type: ignore[union-attr]
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), algo.max_grad_norm)
                optimizer.step()
            scheduler.step()
            done = update + 1
            scalars = {f"losses/{k}": v for k, v in stats.items()}
            scalars |= {"losses/grad_norm": float(grad_norm), "charts/learning_rate": scheduler.get_last_lr()[0],
                        "perf/updates_per_s": (done - start) / (time.perf_counter() - t0)}
            postfix = {"loss": stats.get("loss_bc", float("nan"))}
            score = -sum(v for name, v in stats.items() if name.startswith("loss_"))  # the paper's AMA reward
            scalars |= {f"memory/{k}": v for k, v in policy.memory.feedback(score).items()}
            last = done == algo.updates or time.perf_counter() >= deadline
            if last:
                policy.memory.on_train_end()
            if algo.eval_every and (done % algo.eval_every == 0 or last):
                res, _ = evaluate_env(policy, cfg.env.id, env_kwargs, algo.eval_episodes, backend=cfg.env.backend,
                                      asynchronous=cfg.env.asynchronous, num_envs=cfg.env.eval_envs,
                                      seed=cfg.seed + done)
                scalars["eval/mean_return"] = res.mean_return
                postfix["eval_ret"] = res.mean_return
                if res.success_rate is not None:
                    scalars["eval/success_rate"] = postfix["eval_succ"] = res.success_rate
            run.progress(done, postfix)
            run.scalars(done, scalars)
            if done % max(algo.checkpoint_every, 1) == 0 or last:
                save(done)
            if last and done < algo.updates:
                log.info("time budget of %.0f s spent after %d of %d updates", budget, done, algo.updates)
                break
    except BaseException:
        log.warning("interrupted at update %d: saving %s", update, run.checkpoint_path)
        save(update)
        raise
    policy.eval()
    return policy


def _fit_time(x: Tensor, length: int) -> Tensor:
    """Cut or zero-pad the time axis (dim 1) to ``length``."""
    if x.shape[1] >= length:
        return x[:, :length]
    pad = x.new_zeros((x.shape[0], length - x.shape[1], *x.shape[2:]))
    return torch.cat([x, pad], 1)
