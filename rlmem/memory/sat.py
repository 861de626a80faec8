"""SAT: Spatially-Aware Transformer (Cho, Yoon & Ahn 2024, "Spatially-Aware Transformer for Embodied Agents",
ICLR, arXiv:2402.15160): an episodic memory of step embeddings keyed by time *and place*, a bounded number of
slots, an allocation strategy deciding what is evicted, and the Adaptive Memory Allocator that learns it.

Write, per step t of an episode, with the agent at place p_t (an integer id, the input's last column):

    (1) e_t = W_in x_t + TE(t) + PE(p_t)         TE: sinusoidal time embedding; PE: learned place embedding
                                                 (off with ``place_input=False``: T-FIFO, time only)
    (2) e_t is stored in one of S slots: a free slot if any, else one evicted by the row's strategy:
          fifo  the oldest entry                 lifo  the newest entry (the episode's start is kept)
          lvfo  the oldest entry of the least-visited place    mvfo  ... of the most-visited place
        (a place's visits = its entries in memory; mvfo keeps the memory spread over places).

Read, L layers of a decoder whose query is the step (h⁰ = e_t) and whose keys/values are the entries stored
before t (their embeddings; no query sees a later write):

    (3) h = h + Read(LN(h), LN(entries))
          read="full"   multi-head attention over every entry (SAT-FIFO / T-FIFO)
          read="place"  hierarchical (SAT-PM): relevance of a place ρ_g = (W_q q)·mean_{s∈g}(W_s e_s)/√D, the
                        top-k places, weights w = softmax over their ρ; attention within each chosen place;
                        output Σ_g w_g o_g (the mean commutes with W_s, so ρ_g is the mean of per-entry terms)
    (4) h = h + FFN(LN(h));  output LN(h^L)

Adaptive Memory Allocator (``allocation="ama"``): a contextual bandit with one context (this task): Q-values
over the four strategies, ε-greedy. Trainers call ``feedback(score)`` after each update (PPO: the rollout's
mean episode return; offline: minus the loss, i.e. the paper's reward -task loss): Q[a] += lr (score - Q[a]),
then the next strategy is drawn. ``on_train_end()`` settles on argmax Q for deployment. Each row keeps the
strategy it started its episode with (state ``strategy``), so a rollout and its training recompute agree.

Choices: learned place embedding (the paper also has sinusoidal ones); the memory stores (1) only, so a slot never
changes once written; the loop over a call's steps only moves slot indices and ids (no model compute in it).

State (fixed size): ``mem [B, S, D]`` (entries), ``place``, ``time [B, S]`` (int64, -1 = free), ``t [B]`` (step in
episode), ``strategy [B]`` (int64 index in ``STRATEGIES``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rlmem.memory.base import Memory, State, register
from rlmem.memory.window import steps_in_episode
from rlmem.syncs import cpu_fast_path

STRATEGIES = ("fifo", "lifo", "lvfo", "mvfo")
_BIG = 2**40  # > any episode step: sorts by visits first, then by age


class SATLayer(nn.Module):
    def __init__(self, d: int, num_heads: int, ffn_mult: int, dropout: float, read: str, top_k: int,
                 num_places: int):
        super().__init__()
        self.nh, self.read_mode, self.top_k, self.num_places = num_heads, read, top_k, num_places
        self.norm_q, self.norm_kv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)
        if read == "place":
            self.rel_q = nn.Linear(d, d, bias=False)
            self.rel_k = nn.Linear(d, d, bias=False)
        self.norm_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Linear(ffn_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, hist: Tensor, idx: Tensor, valid: Tensor, place: Tensor) -> Tensor:
        """``h [B, T, D]``; ``hist [B, H, D]`` every entry a query may see; per query, its memory: ``idx``
        (into hist), ``valid``, ``place``, all ``[B, T, S]``."""
        B, T, D = h.shape
        H = hist.shape[1]
        nh, hs = self.nh, D // self.nh
        kvn = self.norm_kv(hist)
        k, v = self.kv(kvn).view(B, H, 2, nh, hs).unbind(2)  # (B, H, nh, hs) each
        qn = self.norm_q(h)
        q = self.q(qn).view(B, T, nh, hs)
        # scores against every entry of hist, then each query's S slots picked out (no [B, T, S, D] gather)
        a_all = torch.einsum("btnd,bhnd->bthn", q, k) / math.sqrt(hs)  # (B, T, H, nh)
        pick_h = idx[..., None].expand(-1, -1, -1, nh)  # (B, T, S, nh)
        a = a_all.gather(2, pick_h)  # (B, T, S, nh)
        ok = valid[..., None]  # (B, T, S, 1)
        if self.read_mode == "full":
            a = a.masked_fill(~ok, torch.finfo(a.dtype).min)
            p = a.softmax(2) * ok  # (B, T, S, nh); no entry: all zero
        else:
            # per-place sums and maxima by scattering into place buckets (empty slots into bucket P): linear in the
            # slots S, where a same-place [S, S] matrix was quadratic (experiments/bench_sat_read.py)
            P = self.num_places
            g = place.masked_fill(~valid, P)  # (B, T, S) each slot's place bucket
            gh = g[..., None].expand(-1, -1, -1, a.shape[-1])  # (B, T, S, nh)
            okf = valid.to(a.dtype)
            # relevance of each place: the mean over the place's entries of (W_q q)·(W_s e_s)
            r_all = self.rel_q(qn) @ self.rel_k(kvn).transpose(1, 2) / math.sqrt(D)  # (B, T, H)
            r = r_all.gather(2, idx) * okf  # (B, T, S)
            n_g = okf.new_zeros(B, T, P + 1).scatter_add(2, g, okf)  # (B, T, P+1) entries per place
            rho = r.new_zeros(B, T, P + 1).scatter_add(2, g, r) / n_g.clamp(min=1)  # (B, T, P+1)
            # top-k over the places that hold an entry; softmax over their relevance -> weight per place
            low = torch.finfo(rho.dtype).min
            top, pick = rho[..., :P].masked_fill(n_g[..., :P] == 0, low).topk(min(self.top_k, P), -1)  # (B, T, k)
            w_g = torch.zeros_like(rho).scatter(-1, pick, top.softmax(-1))  # (B, T, P+1)
            w = w_g.gather(2, g) * okf  # (B, T, S) each entry gets its place's weight
            # softmax within each place (per head), stabilised by the place's own maximum (a shift: no gradient)
            am = a.masked_fill(~ok, low)
            gmax = am.new_full((B, T, P + 1, a.shape[-1]), low).scatter_reduce(2, gh, am.detach(), "amax")
            e = torch.exp(am - gmax.gather(2, gh)) * ok  # (B, T, S, nh)
            z = torch.zeros_like(gmax).scatter_add(2, gh, e).gather(2, gh)  # (B, T, S, nh) the place's sum
            p = e / z.clamp(min=torch.finfo(e.dtype).tiny) * w[..., None]
        # the weights back onto hist's entries (a query's slots hold distinct entries), then one matmul with v
        p_all = torch.zeros_like(a_all).scatter_add(2, pick_h, p)  # (B, T, H, nh)
        o = torch.einsum("bthn,bhnd->btnd", p_all, v).reshape(B, T, D)  # (B, T, D)
        h = h + self.drop(self.o(o))  # (3)
        return h + self.drop(self.ffn(self.norm_ffn(h)))  # (4)


@register("sat")
class SATMemory(Memory):
    """Args:
    input_size: width of the per-step input (with ``place_input``, its last column is the place id).
    d_model: model width (and output width).
    num_layers: read layers L.
    num_heads: attention heads.
    capacity: S, memory slots (steps kept).
    num_places: size of the place vocabulary; ids are clamped into [0, num_places).
    place_input: the last input column is the agent's place (the policy appends it with ``model.place_key``).
        False: no place (T-FIFO; every step is at place 0).
    read: "full" (attention over all entries) or "place" (hierarchical top-k read over places, SAT-PM).
    top_k: places read per query (read="place").
    allocation: "fifo", "lifo", "lvfo", "mvfo" or "ama" (the Adaptive Memory Allocator learns which).
    ama_epsilon: exploration rate of the allocator's ε-greedy choice.
    ama_lr: step size of its Q-value updates.
    ffn_mult: FFN hidden width = ffn_mult * d_model.
    dropout: dropout on residual branches (training only).
    """

    inv_freq: Tensor  # buffers
    ama_q: Tensor
    ama_baseline: Tensor
    ama_choice: Tensor

    def __init__(self, input_size: int, d_model: int = 128, num_layers: int = 2, num_heads: int = 2,
                 capacity: int = 16, num_places: int = 64, place_input: bool = False, read: str = "full",
                 top_k: int = 2, allocation: str = "fifo", ama_epsilon: float = 0.1, ama_lr: float = 0.1,
                 ffn_mult: int = 4, dropout: float = 0.0):
        super().__init__()
        if read not in ("full", "place"):
            raise ValueError(f"read={read!r}: expected 'full' or 'place'")
        if allocation not in (*STRATEGIES, "ama"):
            raise ValueError(f"allocation={allocation!r}: expected one of {(*STRATEGIES, 'ama')}")
        if d_model % num_heads or d_model % 2:
            raise ValueError(f"d_model={d_model} must be even and divisible by num_heads={num_heads}")
        if capacity < 1 or num_places < 1 or top_k < 1 or not 0.0 <= ama_epsilon <= 1.0:
            raise ValueError("need capacity, num_places, top_k >= 1 and ama_epsilon in [0, 1]")
        if place_input and input_size < 2:
            raise ValueError("place_input needs the features plus a place column (input_size >= 2)")
        self.d_model, self.capacity, self.num_places = d_model, capacity, num_places
        self.place_input, self.allocation = place_input, allocation
        self.ama_epsilon, self.ama_lr = ama_epsilon, ama_lr
        self.output_size = d_model
        self.in_proj = nn.Linear(input_size - int(place_input), d_model)
        self.place_emb = nn.Embedding(num_places, d_model) if place_input else None
        self.layers = nn.ModuleList(SATLayer(d_model, num_heads, ffn_mult, dropout, read, top_k, num_places)
                                    for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(d_model)
        self.register_buffer("inv_freq", torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2) / d_model),
                             persistent=False)
        fixed = STRATEGIES.index(allocation) if allocation in STRATEGIES else 0
        self.register_buffer("ama_q", torch.zeros(len(STRATEGIES)))  # Q: advantage of each strategy
        self.register_buffer("ama_baseline", torch.tensor(float("nan")))  # running mean score, all strategies
        self.register_buffer("ama_choice", torch.tensor(fixed))  # strategy new episodes start with

    # ------------------------------------------------------------------ allocator
    def feedback(self, score: float) -> dict[str, float]:
        """After a training update: a score of the current strategy (higher is better). Returns diagnostics.

        The score drifts as training proceeds (losses fall, returns rise), so a strategy is valued by its score
        minus a running baseline over all strategies: Q_a <- Q_a + lr (score - b - Q_a), b <- b + lr (score - b).
        Raw scores would favour whichever strategy happens to run while the score improves."""
        if self.allocation != "ama":
            return {}
        a, score = int(self.ama_choice), float(score)
        if torch.isnan(self.ama_baseline):
            self.ama_baseline.fill_(score)
        self.ama_q[a] += self.ama_lr * (score - self.ama_baseline - self.ama_q[a])
        self.ama_baseline += self.ama_lr * (score - self.ama_baseline)
        if float(torch.rand(())) < self.ama_epsilon:
            self.ama_choice.fill_(int(torch.randint(len(STRATEGIES), ())))
        else:
            self.ama_choice.fill_(int(self.ama_q.argmax()))
        return {"ama/strategy": float(self.ama_choice), "ama/baseline": float(self.ama_baseline),
                **{f"ama/q_{n}": float(q) for n, q in
                                                            zip(STRATEGIES, self.ama_q, strict=True)}}

    def on_train_end(self) -> None:
        """Deployment uses the best strategy found."""
        if self.allocation == "ama":
            self.ama_choice.fill_(int(self.ama_q.argmax()))

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        f = self._factory(device)
        B, S = batch_size, self.capacity
        empty = torch.full((B, S), -1, dtype=torch.long, device=f["device"])
        return {"mem": torch.zeros(B, S, self.d_model, **f), "place": empty, "time": empty.clone(),
                "t": torch.zeros(B, dtype=torch.long, device=f["device"]),
                "strategy": self.ama_choice.to(f["device"]).expand(B).clone()}

    def forward(self, x: Tensor, state: State, episode_start: Tensor, *, need_state: bool = True
                ) -> tuple[Tensor, State | None]:
        B, T, _ = x.shape
        S, dev = self.capacity, x.device
        if self.place_input:
            feat, place = x[..., :-1], x[..., -1].round().long().clamp(0, self.num_places - 1)  # (B, T)
        else:
            feat, place = x, torch.zeros(B, T, dtype=torch.long, device=dev)
        s = steps_in_episode(state["t"].long(), episode_start)  # (B, T)
        ang = s[..., None].to(x.dtype) * self.inv_freq.to(x.dtype)  # (B, T, D/2)
        e = self.in_proj(feat) + torch.cat([ang.sin(), ang.cos()], -1)  # (1)
        if self.place_emb is not None:
            e = e + self.place_emb(place)
        hist = torch.cat([state["mem"].to(e.dtype), e], 1)  # (B, S+T, D): carried entries, then this call's

        # (2) the slots each step reads, then its write; only indices and ids move here
        idx = torch.arange(S, device=dev).expand(B, S)
        s_place, s_time = state["place"].long(), state["time"].long()
        strategy = state["strategy"].long()
        ar = torch.arange(B, device=dev)
        reads = []
        skip_idle = cpu_fast_path(dev)  # on CPU, skip the reset ops on steps where no episode starts
        for j in range(T):
            r = episode_start[:, j]
            if not skip_idle or bool(r.any()):
                s_time = s_time.masked_fill(r[:, None], -1)
                s_place = s_place.masked_fill(r[:, None], -1)
                strategy = torch.where(r, self.ama_choice.to(dev), strategy)
            reads.append((idx, s_place, s_time >= 0))
            slot = self._slot(s_place, s_time, strategy, self.num_places)  # (B,)
            idx = idx.index_put((ar, slot), torch.full_like(slot, S + j))
            s_place = s_place.index_put((ar, slot), place[:, j])
            s_time = s_time.index_put((ar, slot), s[:, j])
        r_idx, r_place, r_valid = (torch.stack(v, 1) for v in zip(*reads, strict=True))  # (B, T, S) each

        h = e
        for layer in self.layers:
            h = layer(h, hist, r_idx, r_valid, r_place)
        y = self.norm_out(h)
        if not need_state:
            return y, None
        mem = hist.gather(1, idx[..., None].expand(-1, -1, self.d_model))  # (B, S, D)
        return y, {"mem": mem, "place": s_place, "time": s_time, "t": s[:, -1] + 1, "strategy": strategy}

    @staticmethod
    def _slot(place: Tensor, time: Tensor, strategy: Tensor, num_places: int) -> Tensor:
        """The slot the next entry goes to: the first free one, else the one ``strategy`` evicts. ``[B]``."""
        free = time < 0  # (B, S)
        g = place.masked_fill(free, num_places)  # (B, S) place bucket; free slots in bucket num_places
        n_g = torch.zeros(place.shape[0], num_places + 1, dtype=torch.long, device=place.device)
        visits = n_g.scatter_add(1, g, (~free).long()).gather(1, g)  # (B, S) entries of each slot's place
        evict = torch.stack([
            time.argmin(1),  # fifo: oldest
            time.argmax(1),  # lifo: newest
            (visits * _BIG + time).argmin(1),  # lvfo: least-visited place, its oldest entry
            (visits * _BIG - time).argmax(1),  # mvfo: most-visited place, its oldest entry
        ], 1).gather(1, strategy[:, None])[:, 0]
        return torch.where(free.any(1), free.long().argmax(1), evict)
