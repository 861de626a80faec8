"""Recurrent PPO (Schulman et al. 2017) for any memory behind the contract.

Reads top to bottom: envs and policy -> rollout -> GAE -> update on sequence chunks -> logging.

* Rollout: ``num_envs x num_steps`` steps stored batch-first ``[N, T]`` on the policy's device. The
  memory state at the start of every ``seq_len`` chunk is stored (truncated BPTT starts there).
* Truncation is not termination: when an episode is truncated, ``gamma * V(final_obs)`` (computed
  with the episode's own memory state) is added to the last reward, as sb3 does (DLR-RM/sb3#633).
* Update: the rollout is cut into ``N * T / seq_len`` chunks; minibatches hold whole chunks; each
  chunk starts from its stored state and resets wherever ``episode_start`` is set.
* Loss terms come back named; ``loss_*`` are summed, the rest are diagnostics (TorchRL's convention).
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
from rlmem.config import PPOConfig
from rlmem.policy import Policy
from rlmem.run import Run
from rlmem.tree import tree_map

log = logging.getLogger("rlmem")


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


def train_ppo(cfg: Any, run: Run) -> Policy:
    """Train with the resolved run config ``cfg`` (env/model/algo/seed/device); returns the policy."""
    # A plain dataclass: DictConfig attribute access costs ~50 us, too slow for the per-step loop.
    algo: PPOConfig = OmegaConf.to_object(cfg.algo) if isinstance(cfg.algo, DictConfig) else cfg.algo
    check_config(algo)
    device = torch.device(cfg.device)
    N, T, L = algo.num_envs, algo.num_steps, algo.seq_len
    C = T // L  # chunks per env per rollout
    batch = N * T
    num_updates = math.ceil(algo.total_steps / batch)

    # -- envs and policy ------------------------------------------------------------------------
    env_kwargs = dict(cfg.env.kwargs)
    envs = make_vec(cfg.env.id, N, env_kwargs, device=device, backend=cfg.env.backend,
                    asynchronous=cfg.env.asynchronous)
    policy = Policy(
        envs.single_observation_space, envs.single_action_space, memory=cfg.model.memory,
        memory_kwargs=dict(cfg.model.memory_kwargs), encoder=dict(cfg.model.encoder),
        place_key=cfg.env.place_key, env_id=cfg.env.id, env_kwargs=env_kwargs, device=device,
    )
    optimizer = torch.optim.Adam(policy.parameters(), lr=algo.lr, eps=1e-5, foreach=None,
                                 fused=device.type in ("cpu", "cuda"))
    run.set_total(num_updates * batch, "step")
    trainer = run.resume(policy, optimizer) if cfg.resume else None
    start_update = trainer["update"] if trainer else 0
    global_step = trainer["global_step"] if trainer else 0
    mmer = trainer.get("mmer", -math.inf) if trainer else -math.inf
    log.info("PPO: %s with %s, %d parameters, %d updates of %d steps", cfg.env.id, cfg.model.memory,
             sum(p.numel() for p in policy.parameters()), num_updates, batch)

    next_obs, _ = envs.reset(seed=cfg.seed + start_update * N)
    next_start = torch.ones(N, dtype=torch.bool, device=device)
    state = policy.initial_state(N)

    update = start_update
    deadline = time.perf_counter() + budget if (budget := getattr(cfg, "time_budget_s", None)) is not None else math.inf
    try:
        for update in range(start_update, num_updates):
            lr = algo.lr * (1.0 - update / num_updates) if algo.anneal_lr else algo.lr
            for g in optimizer.param_groups:
                g["lr"] = lr

            # -- rollout: per-step tensors go into lists, stacked once into [N, T] (an indexed write
            # per step and buffer costs more than the policy's own work at small batch sizes) --------
            t_rollout = time.perf_counter()
            policy.eval()
            chunk_states, obs_l, start_l, act_l, logp_l, val_l, rew_l, done_l = ([] for _ in range(8))
            ep_ret_l, ep_len_l, succ_l = [], [], []
            with torch.no_grad():
                for t in range(T):
                    if t % L == 0:
                        chunk_states.append(state)
                    obs_l.append(next_obs)
                    start_l.append(next_start)
                    with torch.inference_mode():  # ~25% cheaper than no_grad; stacking below makes
                        # normal tensors again, as training needs.
                        action, logp, value, state = policy.step(next_obs, state, next_start)
                    next_obs, reward, term, trunc, info = envs.step(policy.to_env_action(action))
                    if bool(trunc.any()):
                        # Bootstrap the cut-off tail from the final observation, continuing the
                        # episode's memory (state is the state after step t, before any reset).
                        v_final = policy.value(info["final_obs"], state, torch.zeros_like(trunc))
                        reward = reward + algo.gamma * v_final * trunc
                    next_start = term | trunc
                    act_l.append(action)
                    logp_l.append(logp)
                    val_l.append(value)
                    rew_l.append(reward)
                    done_l.append(next_start)
                    ep_ret_l.append(info["episode_return"])
                    ep_len_l.append(info["episode_length"])
                    succ_l.append(info["success"])
                next_value = policy.value(next_obs, state, next_start)
            obs_buf = tree_map(lambda *xs: torch.stack(xs, 1), *obs_l)  # (N, T, ...)
            actions, logprobs, values, rewards, dones, starts = (
                torch.stack(x, 1) for x in (act_l, logp_l, val_l, rew_l, done_l, start_l))
            states0 = {k: torch.stack([s[k] for s in chunk_states], 1) for k in state}  # (N, C, ...)
            # Episode statistics of the episodes that ended in this rollout.
            ep_ret, ep_len, succ = torch.stack(ep_ret_l, 1), torch.stack(ep_len_l, 1), torch.stack(succ_l, 1)
            ep_n = dones.sum()
            ep_ret, ep_len = ep_ret[dones].sum(), ep_len[dones].sum()
            succ_ok = dones & ~torch.isnan(succ)
            succ_n, succ = succ_ok.sum(), succ[succ_ok].sum()
            global_step += batch
            advantages, returns = gae(rewards, values, dones, next_value, algo.gamma, algo.gae_lambda)

            # -- update on chunks of seq_len ---------------------------------------------------------
            t_update = time.perf_counter()
            policy.train()

            def chunked(x: Tensor) -> Tensor:
                return x.reshape(N * C, L, *x.shape[2:])  # (N, T, ...) -> (N*C, L, ...)

            b_obs = tree_map(chunked, obs_buf)
            b_states = {k: v.reshape(N * C, *v.shape[2:]) for k, v in states0.items()}
            b_act, b_logp, b_val, b_adv, b_ret, b_start = map(
                chunked, (actions, logprobs, values, advantages, returns, starts))
            stats: dict[str, float] = {}
            for _epoch in range(algo.update_epochs):
                perm = torch.randperm(N * C, device=device)
                for mb in torch.tensor_split(perm, algo.num_minibatches):
                    dist, new_value, _ = policy(
                        tree_map(lambda o, mb=mb: o[mb], b_obs), {k: v[mb] for k, v in b_states.items()},
                        b_start[mb], need_state=False)
                    terms = ppo_loss(dist.log_prob(b_act[mb]).flatten(), dist.entropy().flatten(),
                                     new_value.flatten(), b_logp[mb].flatten(), b_val[mb].flatten(),
                                     b_adv[mb].flatten(), b_ret[mb].flatten(), algo)
                    loss = sum(v for k, v in terms.items() if k.startswith("loss_"))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[union-attr]
                    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), algo.max_grad_norm)
                    optimizer.step()
                    stats = {k: float(v.detach()) for k, v in terms.items()} | {"grad_norm": float(grad_norm)}
                if algo.target_kl is not None and stats["approx_kl"] > algo.target_kl:
                    break

            # -- logging ---------------------------------------------------------------------------
            t_end = time.perf_counter()
            y_pred, y_true = b_val.flatten(), b_ret.flatten()
            var_y = y_true.var()
            explained_var = float("nan") if var_y == 0 else float(1 - (y_true - y_pred).var() / var_y)
            scalars = {f"losses/{k}": v for k, v in stats.items()}
            scalars |= {"losses/explained_variance": explained_var, "charts/learning_rate": lr,
                        "perf/rollout_s": t_update - t_rollout, "perf/update_s": t_end - t_update}
            postfix: dict[str, float] = {}
            n = float(ep_n)
            if n > 0:
                mean_ret = float(ep_ret) / n
                mmer = max(mmer, mean_ret)  # POPGym's MMER: running max of the mean episode return
                scalars |= {"charts/episodic_return": mean_ret, "charts/episodic_length": float(ep_len) / n,
                            "charts/mmer": mmer, "charts/episodes": n}
                postfix["ret"] = mean_ret
                scalars |= {f"memory/{k}": v for k, v in policy.memory.feedback(mean_ret).items()}
            if float(succ_n) > 0:
                scalars["charts/success_rate"] = float(succ) / float(succ_n)
                postfix["succ"] = scalars["charts/success_rate"]
            scalars["perf/sps"] = run.progress(global_step, postfix)
            run.scalars(global_step, scalars)
            last = update + 1 == num_updates or time.perf_counter() >= deadline
            if last:
                policy.memory.on_train_end()
            if (update + 1) % max(algo.checkpoint_every, 1) == 0 or last:
                run.save(policy, {"update": update + 1, "global_step": global_step, "mmer": mmer,
                                  "optimizer": optimizer.state_dict()})
            if last and update + 1 < num_updates:
                log.info("time budget of %.0f s spent after %d of %d updates", budget, update + 1,
                         num_updates)
                break
    except BaseException:
        # Keep what was learned: weights at the interrupted update (re-run from its start on resume).
        log.warning("interrupted at update %d: saving %s", update, run.checkpoint_path)
        run.save(policy, {"update": update, "global_step": update * batch, "mmer": mmer,
                          "optimizer": optimizer.state_dict()})
        raise
    finally:
        envs.close()
    run.scalars(global_step, {"charts/final_mmer": mmer})
    policy.eval()
    return policy
