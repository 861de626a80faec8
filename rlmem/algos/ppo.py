"""Recurrent PPO (Schulman et al. 2017) for any memory behind the contract: a rollout collector and an update,
plugged into the shared loop (``rlmem.loop``).

Reads top to bottom: loss -> GAE -> rollout collector -> trainer (update on sequence chunks, logging).

* Rollout: ``num_envs x num_steps`` steps stored batch-first ``[N, T]`` on the policy's device. The memory state at
  the start of every ``seq_len`` chunk is stored (truncated BPTT starts there). A step makes no host sync on an
  accelerator (``rlmem.syncs``): episode statistics stay tensors until the loop reduces them once per update.
* Truncation is not termination: when an episode is truncated, ``gamma * V(final_obs)`` (computed with the
  episode's own memory state) is added to the last reward, as sb3 does (DLR-RM/sb3#633). On an accelerator it is
  computed every step and selected with ``torch.where``; on CPU only on steps where some row was truncated.
* Update: the rollout is cut into ``N * T / seq_len`` chunks; minibatches hold whole chunks; each chunk starts from
  its stored state and resets wherever ``episode_start`` is set. Gradients are averaged over ranks.
* Distributed: each rank steps its own ``num_envs`` envs (rows seeded as rows ``rank * num_envs ...`` of one big
  vector env); ``total_steps`` counts env steps over all ranks; the ``target_kl`` early stop uses the KL averaged
  over ranks, so every rank leaves the epoch loop together.
* Loss terms come back named; ``loss_*`` are summed, the rest are diagnostics (TorchRL's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from envs import make_vec
from rlmem.config import PPOConfig, as_dataclass
from rlmem.distributed import World
from rlmem.loop import Metrics, Summary, Trainer, optimize
from rlmem.memory import State
from rlmem.policy import Policy
from rlmem.syncs import cpu_fast_path
from rlmem.tree import Nested, tree_map


def ppo_loss(
    dist_logp: Tensor,
    entropy: Tensor,
    new_value: Tensor,
    old_logp: Tensor,
    old_value: Tensor,
    advantages: Tensor,
    returns: Tensor,
    cfg: PPOConfig,
) -> dict[str, Tensor]:
    """Clipped surrogate + (clipped) value loss + entropy bonus, over flattened steps."""
    log_ratio = dist_logp - old_logp
    ratio = log_ratio.exp()
    if cfg.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
    v_err = (new_value - returns).square()
    if cfg.clip_vloss:
        v_clipped = old_value + (new_value - old_value).clamp(-cfg.clip_coef, cfg.clip_coef)
        v_err = torch.max(v_err, (v_clipped - returns).square())
    ent = entropy.mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()  # k3 estimator (Schulman's blog "Approximating KL")
        clipfrac = ((ratio - 1).abs() > cfg.clip_coef).float().mean()
    return {
        "loss_policy": pg,
        "loss_value": cfg.vf_coef * 0.5 * v_err.mean(),
        "loss_entropy": -cfg.ent_coef * ent,
        "entropy": ent.detach(),
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
    }


def gae(
    rewards: Tensor, values: Tensor, dones: Tensor, next_value: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over ``[N, T]``; ``dones[:, t]``: the episode ended at step t."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    nonterminal = 1.0 - dones.float()
    for t in reversed(range(rewards.shape[1])):
        nxt = next_value if t == rewards.shape[1] - 1 else values[:, t + 1]
        delta = rewards[:, t] + gamma * nxt * nonterminal[:, t] - values[:, t]
        last = delta + gamma * lam * nonterminal[:, t] * last
        adv[:, t] = last
    return adv, adv + values


def check_config(cfg: PPOConfig) -> None:
    if cfg.num_steps % cfg.seq_len:
        raise ValueError(f"algo.seq_len={cfg.seq_len} must divide algo.num_steps={cfg.num_steps}")
    chunks = cfg.num_envs * cfg.num_steps // cfg.seq_len
    if cfg.num_minibatches > chunks:
        raise ValueError(
            f"algo.num_minibatches={cfg.num_minibatches} exceeds the {chunks} chunks per rollout "
            f"(num_envs * num_steps / seq_len)"
        )


@dataclass
class Rollout:
    """``num_envs x num_steps`` steps, batch-first ``[N, T, ...]``, with the memory state at each chunk start."""

    obs: Nested
    starts: Tensor  # bool: step t begins an episode
    actions: Tensor
    logprobs: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor
    chunk_states: State  # (N, C, ...): the state each seq_len chunk starts from
    episodes: dict[str, Tensor]  # sums over the episodes that ended in the rollout (0-dim tensors)


class RolloutCollector:
    """Steps ``algo.num_envs`` envs with a policy and returns :class:`Rollout` batches (no host sync per step).

    Args:
        cfg: the run config (``env``, ``algo``, ``device``, ``seed``).
        rank: this process's place among the training processes (its env rows' seeds).
    """

    def __init__(self, cfg: Any, rank: int = 0):
        self.algo: PPOConfig = as_dataclass(cfg.algo)
        check_config(self.algo)
        self.device = torch.device(cfg.device)
        self.env_kwargs = dict(cfg.env.kwargs)
        self.envs = make_vec(cfg.env.id, self.algo.num_envs, self.env_kwargs, device=self.device,
                             backend=cfg.env.backend, asynchronous=cfg.env.asynchronous)
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        self.row_offset = rank * self.algo.num_envs
        self.obs: Nested = {}  # set by start()

    def start(self, policy: Policy, seed: int) -> None:
        """Reset the envs (row ``i`` of this rank seeded ``seed + rank * num_envs + i``) and the memory."""
        self.obs, _ = self.envs.reset(seed=seed + self.row_offset)
        self.start_flags = torch.ones(self.algo.num_envs, dtype=torch.bool, device=self.device)
        self.state = policy.initial_state(self.algo.num_envs)

    @torch.no_grad()
    def step(self, policy: Policy) -> dict[str, Any]:
        """One step of every env; returns what the rollout stores of it."""
        obs, start = self.obs, self.start_flags
        with torch.inference_mode():  # ~25% cheaper than no_grad; stacking in collect makes normal tensors again
            action, logp, value, self.state = policy.step(obs, self.state, start)
        self.obs, reward, term, trunc, info = self.envs.step(policy.to_env_action(action))
        # Bootstrap a truncated tail from the final observation, continuing the episode's memory (self.state is
        # the state after this step, before any reset).
        if not cpu_fast_path(self.device) or bool(trunc.any()):
            v_final = policy.value(info["final_obs"], self.state, torch.zeros_like(trunc))
            reward = torch.where(trunc, reward + self.algo.gamma * v_final, reward)
        self.start_flags = term | trunc
        return {"obs": obs, "start": start, "action": action, "logp": logp, "value": value, "reward": reward,
                "done": self.start_flags, "ep_return": info["episode_return"], "ep_length": info["episode_length"],
                "success": info["success"]}

    @torch.no_grad()
    def collect(self, policy: Policy) -> Rollout:
        """``num_steps`` steps of every env, advantages included. Per-step tensors go into lists, stacked once
        into ``[N, T]`` (an indexed write per step and buffer costs more than the policy's own work at small
        batch sizes)."""
        algo = self.algo
        policy.eval()
        steps, chunk_states = [], []
        for t in range(algo.num_steps):
            if t % algo.seq_len == 0:
                chunk_states.append(self.state)
            steps.append(self.step(policy))
        next_value = policy.value(self.obs, self.state, self.start_flags)
        b = {k: torch.stack([s[k] for s in steps], 1) for k in steps[0] if k != "obs"}  # (N, T)
        obs = tree_map(lambda *xs: torch.stack(xs, 1), *[s["obs"] for s in steps])  # (N, T, ...)
        advantages, returns = gae(b["reward"], b["value"], b["done"], next_value, algo.gamma, algo.gae_lambda)
        done = b["done"]
        reported = done & ~torch.isnan(b["success"])
        episodes = {  # the episodes that ended in this rollout, as sums (tensors: no host sync)
            "episodes": done.sum(), "return_sum": torch.where(done, b["ep_return"], 0.0).sum(),
            "length_sum": torch.where(done, b["ep_length"], 0).sum(),
            "success_n": reported.sum(), "success_sum": torch.where(reported, b["success"], 0.0).sum(),
        }
        states0 = {k: torch.stack([s[k] for s in chunk_states], 1) for k in self.state}  # (N, C, ...)
        return Rollout(obs, b["start"], b["action"], b["logp"], b["value"], advantages, returns, states0, episodes)

    def close(self) -> None:
        self.envs.close()


class PPOTrainer(Trainer):
    """Recurrent PPO in the shared loop: ``collect`` is a rollout, ``update`` the clipped-objective epochs."""

    unit = "step"

    def __init__(self, cfg: Any, world: World):
        self.cfg, self.world = cfg, world
        self.algo = algo = as_dataclass(cfg.algo)
        self.collector = RolloutCollector(cfg, world.rank)
        self.observation_space = self.collector.observation_space
        self.action_space = self.collector.action_space
        self.env_kwargs = self.collector.env_kwargs
        self.batch = algo.num_envs * algo.num_steps * world.size  # env steps per update, all ranks
        self.num_iterations = math.ceil(algo.total_steps / self.batch)
        self.mmer = -math.inf  # POPGym's MMER: running max of the mean episode return
        self.started = False

    def setup(self, policy: Policy) -> None:
        fused = policy.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=self.algo.lr, eps=1e-5, fused=fused)

    def progress_at(self, iterations_done: int) -> int:
        return iterations_done * self.batch

    def collect(self, policy: Policy, iteration: int) -> Rollout:
        if not self.started:  # after a resume, the envs start over from a seed that depends on the update
            self.collector.start(policy, self.cfg.seed + iteration * self.algo.num_envs)
            self.started = True
        return self.collector.collect(policy)

    def update(self, policy: Policy, batch: Rollout, iteration: int) -> Metrics:
        algo, N, L = self.algo, self.algo.num_envs, self.algo.seq_len
        for g in self.optimizer.param_groups:
            g["lr"] = self.learning_rate(iteration)
        C = algo.num_steps // L

        def chunked(x: Tensor) -> Tensor:
            return x.reshape(N * C, L, *x.shape[2:])  # (N, T, ...) -> (N*C, L, ...)

        b_obs = tree_map(chunked, batch.obs)
        b_states = {k: v.reshape(N * C, *v.shape[2:]) for k, v in batch.chunk_states.items()}
        b_act, b_logp, b_val, b_adv, b_ret, b_start = map(
            chunked, (batch.actions, batch.logprobs, batch.values, batch.advantages, batch.returns, batch.starts))
        policy.train()
        terms: dict[str, Tensor] = {}
        for _epoch in range(algo.update_epochs):
            perm = torch.randperm(N * C, device=policy.device)
            for mb in torch.tensor_split(perm, algo.num_minibatches):
                dist, new_value, _ = policy(tree_map(lambda o, mb=mb: o[mb], b_obs),
                                            {k: v[mb] for k, v in b_states.items()}, b_start[mb], need_state=False)
                terms = ppo_loss(dist.log_prob(b_act[mb]).flatten(), dist.entropy().flatten(),
                                 new_value.flatten(), b_logp[mb].flatten(), b_val[mb].flatten(),
                                 b_adv[mb].flatten(), b_ret[mb].flatten(), algo)
                loss = sum(v for k, v in terms.items() if k.startswith("loss_"))
                terms["grad_norm"] = optimize(self.world, policy, self.optimizer, loss,  # type: ignore[arg-type]
                                              algo.max_grad_norm)
            # every rank leaves the epoch loop together: the KL is averaged over ranks (one sync per epoch)
            if algo.target_kl is not None and float(self.world.mean(terms["approx_kl"])) > algo.target_kl:
                break
        y_pred, y_true = b_val.flatten(), b_ret.flatten()
        var_y = y_true.var()
        explained = torch.where(var_y == 0, torch.nan, 1 - (y_true - y_pred).var() / var_y)
        means = {k: v.detach() for k, v in terms.items()} | {"explained_variance": explained}
        return Metrics(means=means, sums=batch.episodes)

    def learning_rate(self, iteration: int) -> float:
        """Linear decay to 0 over the run (``anneal_lr``), per update."""
        algo = self.algo
        return algo.lr * (1.0 - iteration / self.num_iterations) if algo.anneal_lr else algo.lr

    def summarize(self, totals: dict[str, float], iteration: int) -> Summary:
        ep = {k: totals.pop(k) for k in ("episodes", "return_sum", "length_sum", "success_n", "success_sum")}
        scalars = {f"losses/{k}": v for k, v in totals.items()}
        scalars["charts/learning_rate"] = self.learning_rate(iteration)
        postfix: dict[str, float] = {}
        score = None
        if ep["episodes"] > 0:
            score = mean_ret = ep["return_sum"] / ep["episodes"]
            self.mmer = max(self.mmer, mean_ret)
            scalars |= {"charts/episodic_return": mean_ret, "charts/episodic_length": ep["length_sum"] / ep["episodes"],
                        "charts/mmer": self.mmer, "charts/episodes": ep["episodes"]}
            postfix["ret"] = mean_ret
        if ep["success_n"] > 0:
            scalars["charts/success_rate"] = postfix["succ"] = ep["success_sum"] / ep["success_n"]
        return Summary(scalars, postfix, score)

    def final_scalars(self) -> dict[str, float]:
        return {"charts/final_mmer": self.mmer} if math.isfinite(self.mmer) else {}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "mmer": self.mmer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.mmer = state.get("mmer", -math.inf)

    def close(self) -> None:
        self.collector.close()

