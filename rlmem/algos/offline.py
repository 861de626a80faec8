"""Offline sequence behaviour cloning, segment-recurrent (the ELMUR / RATE training regime): a batch sampler and an
update, plugged into the shared loop (``rlmem.loop``).

Reads top to bottom: loss -> schedule -> trainer: dataset (collected before training if missing, by
``rlmem.collection.ensure_dataset``) -> per batch: sample trajectories, cut them into ``segments`` consecutive
segments of ``context`` steps, run them in order with the memory state carried (and detached) between segments, a
masked behaviour-cloning loss and an optimizer step per segment. The loop evaluates in the real env every
``eval_every`` batches and checkpoints.

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
* Distributed: every rank draws the same global batch of ``world_size x batch_size`` trajectories and trains on its
  own slice (as ``torch.utils.data.DistributedSampler`` shards), and a segment's loss is normalised by the valid
  steps of the global batch, so N ranks of ``batch_size`` B train exactly as one rank of N x B (up to float
  summation order). The number of segments a batch needs is known to every rank from the global draw: all ranks
  make the same number of optimizer steps, hence of gradient all-reduces.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor

from envs import make_vec
from rlmem.collection import ensure_dataset
from rlmem.config import OfflineConfig, as_dataclass
from rlmem.data import Trajectories, load_trajectories
from rlmem.distributed import World
from rlmem.heads import Dist
from rlmem.loop import Metrics, Summary, Trainer, optimize
from rlmem.policy import Policy
from rlmem.tree import Nested, tree_map

log = logging.getLogger("rlmem")


def bc_loss(dist: Dist, actions: Tensor, mask: Tensor, kind: str, discrete: bool,
            count: Tensor | float | None = None) -> dict[str, Tensor]:
    """Masked behaviour-cloning loss over ``[B, K]`` steps; ``loss_*`` terms are summed by the trainer.

    ``count``: the normaliser (default: this batch's valid steps, ``mask.sum()``, at least 1)."""
    n = mask.sum().clamp(min=1) if count is None else torch.as_tensor(count, dtype=mask.dtype, device=mask.device)
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


@dataclass
class Batch:
    """A rank's slice of one global batch of trajectories, padded to ``segments x context`` steps."""

    obs: Nested  # (B, S*K, ...)
    actions: Tensor  # (B, S*K, ...)
    lengths: Tensor  # (B,) valid steps per trajectory
    segments: int  # segments the longest trajectory of the *global* batch needs (the same on every rank)
    counts: list[float]  # valid steps of the global batch in each segment (at least 1), divided by world size


class OfflineTrainer(Trainer):
    """Segment-recurrent behaviour cloning in the shared loop: ``collect`` samples a batch, ``update`` trains on it."""

    unit = "batch"

    @classmethod
    def prepare(cls, cfg: Any) -> None:
        algo = as_dataclass(cfg.algo)
        ensure_dataset(cfg.env, algo.dataset_id, algo.data_dir, algo.collect, cfg.device)

    def __init__(self, cfg: Any, world: World):
        self.world = world
        self.algo: OfflineConfig = as_dataclass(cfg.algo)
        algo = self.algo
        if not algo.detach and algo.step_per_segment:
            raise ValueError("algo.detach=false backpropagates through the whole trajectory: it needs "
                             "algo.step_per_segment=false (one optimizer step per batch)")
        self.device = device = torch.device(cfg.device)
        self.env_kwargs = dict(cfg.env.kwargs)
        if algo.rtg_target is not None:  # the env adds obs["rtg"] (envs.wrappers.ReturnToGo) at evaluation
            self.env_kwargs["rtg_target"] = algo.rtg_target

        # -- data, checked against the env it is meant for ----------------------------------------------
        probe = make_vec(cfg.env.id, 1, self.env_kwargs, device="cpu", backend=cfg.env.backend)
        self.observation_space, self.action_space = probe.single_observation_space, probe.single_action_space
        probe.close()
        raw_space = self.observation_space
        if algo.rtg_target is not None:  # a Dict {"obs": the env's own observation, "rtg": ...}
            assert isinstance(raw_space, gym.spaces.Dict)
            raw_space = raw_space["obs"]
        data: Trajectories = load_trajectories(algo.dataset_id, algo.data_dir, raw_space, self.action_space)
        if algo.rtg_target is not None:
            # returns-to-go of the recorded episodes: g_t = sum_{t' >= t} r_t' (zero on padding)
            rtg = data.rewards.flip(1).cumsum(1).flip(1)
            data.obs = {"obs": data.obs, "rtg": rtg.unsqueeze(-1)}
        self.K = K = algo.context
        self.S = S = algo.segments or math.ceil(data.max_len / K)
        if data.max_len > S * K:
            log.warning("trajectories up to %d steps are cut to segments x context = %d", data.max_len, S * K)
        self.data_obs = tree_map(lambda o: _fit_time(o, S * K).to(device), data.obs)
        self.data_act = _fit_time(data.actions, S * K).to(device)
        self.lengths_cpu = data.lengths.clamp(max=S * K)  # the sampler's arithmetic stays on the host
        self.lengths = self.lengths_cpu.to(device)
        self.num_episodes = data.num_episodes
        self.discrete = self.data_act.dtype == torch.int64
        self.kind = ("ce" if self.discrete else "mse") if algo.loss == "auto" else algo.loss
        if self.kind == "ce" and not self.discrete:
            raise ValueError("algo.loss=ce needs discrete actions; use mse or nll for Box actions")
        self.num_iterations = algo.updates
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed)  # the same draws on every rank
        log.info("offline BC: %s, %d trajectories (<= %d steps), %d segments of %d", algo.dataset_id,
                 data.num_episodes, data.max_len, S, K)

    def setup(self, policy: Policy) -> None:
        algo = self.algo
        self.optimizer = torch.optim.AdamW(policy.parameters(), lr=algo.lr, betas=(algo.betas[0], algo.betas[1]),
                                           weight_decay=algo.weight_decay)
        # Scheduled per update (batch), not per optimizer step: batches of short trajectories fill fewer
        # segments, so steps per batch vary while the schedule must not.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(algo.warmup, algo.updates, algo.min_lr_ratio))

    def progress_at(self, iterations_done: int) -> int:
        return iterations_done

    def collect(self, policy: Policy, iteration: int) -> Batch:
        B, W, K = self.algo.batch_size, self.world.size, self.K
        idx_all = torch.randint(self.num_episodes, (W * B,), generator=self.gen)  # the global batch (host)
        idx = idx_all[self.world.rank * B:(self.world.rank + 1) * B]
        len_all = self.lengths_cpu[idx_all]
        segments = min(self.S, math.ceil(int(len_all.max()) / K))
        counts = [max(float((len_all - s * K).clamp(0, K).sum()), 1.0) / W for s in range(segments)]
        idx = idx.to(self.device)
        return Batch(tree_map(lambda o: o[idx], self.data_obs), self.data_act[idx], self.lengths[idx], segments,
                     counts)

    def update(self, policy: Policy, batch: Batch, iteration: int) -> Metrics:
        algo, K, B = self.algo, self.K, self.algo.batch_size
        policy.train()
        state = policy.initial_state(B)
        sums: dict[str, Tensor] = {}
        total: Tensor | float = 0.0
        grad_norm = torch.zeros(())
        for s in range(batch.segments):
            t = torch.arange(s * K, (s + 1) * K, device=self.device)
            mask = (t[None, :] < batch.lengths[:, None]).float()  # (B, K) valid steps
            episode_start = torch.zeros(B, K, dtype=torch.bool, device=self.device)
            episode_start[:, 0] = s == 0  # memory re-initialised per trajectory
            seg_obs = tree_map(lambda o, s=s: o[:, s * K:(s + 1) * K], batch.obs)
            dist, _, state = policy(seg_obs, state, episode_start)
            terms = bc_loss(dist, batch.actions[:, s * K:(s + 1) * K], mask, self.kind, self.discrete,
                            batch.counts[s])
            loss = sum(v for k, v in terms.items() if k.startswith("loss_"))
            if algo.detach:  # truncated BPTT between segments
                state = {k: v.detach() for k, v in state.items()}
            if algo.step_per_segment:
                grad_norm = optimize(self.world, policy, self.optimizer, loss, algo.max_grad_norm)  # type: ignore[arg-type]
            else:
                total = total + loss
            for k, v in terms.items():
                share = v.detach() / self.S
                sums[k] = sums[k] + share if k in sums else share
        if not algo.step_per_segment:
            grad_norm = optimize(self.world, policy, self.optimizer, total, algo.max_grad_norm)  # type: ignore[arg-type]
        self.scheduler.step()
        return Metrics(means={**sums, "grad_norm": grad_norm})

    def summarize(self, totals: dict[str, float], iteration: int) -> Summary:
        scalars = {f"losses/{k}": v for k, v in totals.items()}
        scalars["charts/learning_rate"] = float(self.scheduler.get_last_lr()[0])
        score = -sum(v for name, v in totals.items() if name.startswith("loss_"))  # the paper's AMA reward
        return Summary(scalars, {"loss": totals.get("loss_bc", float("nan"))}, score)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "sampler": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "sampler" in state:
            self.gen.set_state(state["sampler"])



def _fit_time(x: Tensor, length: int) -> Tensor:
    """Cut or zero-pad the time axis (dim 1) to ``length``."""
    if x.shape[1] >= length:
        return x[:, :length]
    pad = x.new_zeros((x.shape[0], length - x.shape[1], *x.shape[2:]))
    return torch.cat([x, pad], 1)
