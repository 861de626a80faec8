"""Per-step inference latency and state size vs episode length: ELMUR, LSTM and a full-context
causal transformer (KV cache), at episode steps 1k, 10k and 100k and batch 1, 16 and 100.

Each model is put in the state it would have at episode step t (ELMUR: its step counter and a random
memory; LSTM: random (h, c); transformer: a KV cache of t random tokens per layer, the work it must do
to attend over the whole episode); then blocks of 10 consecutive T=1 steps are timed from there (so ELMUR's
memory write at the segment end is included), median per-step time over ``--repeats`` blocks after warm-up,
``torch.inference_mode``. Configs: ELMUR as released for T-Maze (d_model 128, 2 layers, 2 heads,
M=2, K=10), LSTM 128, transformer d_model 128, 2 layers, 2 heads. Transformer cells whose KV cache
exceeds ``--max-cache-gb`` are reported as skipped.

    python experiments/bench_inference.py [--steps 1000 10000 100000] [--batches 1 16 100]

Writes experiments/results/bench_inference.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from rlmem.memory import build

D_IN = 64


class KVTransformer(nn.Module):
    """Pre-norm causal transformer decoding one token at a time over a KV cache of the whole episode."""

    def __init__(self, d_model: int = 128, num_layers: int = 2, num_heads: int = 2):
        super().__init__()
        self.inp = nn.Linear(D_IN, d_model)
        self.layers = nn.ModuleList(
            nn.ModuleDict({"n1": nn.LayerNorm(d_model), "qkv": nn.Linear(d_model, 3 * d_model),
                           "o": nn.Linear(d_model, d_model), "n2": nn.LayerNorm(d_model),
                           "ff": nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                               nn.Linear(4 * d_model, d_model))})
            for _ in range(num_layers))
        self.h, self.d = num_heads, d_model

    def make_state(self, batch: int, t: int) -> dict[str, torch.Tensor]:
        hs = self.d // self.h
        return {f"{kv}{i}": torch.randn(batch, self.h, t, hs) for i in range(len(self.layers)) for kv in "kv"}

    def step(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        h = self.inp(x)  # (B, D)
        new = {}
        for i, layer in enumerate(self.layers):
            q, k, v = layer["qkv"](layer["n1"](h)).view(h.shape[0], 3, self.h, 1, -1).unbind(1)  # (B, nh, 1, hs)
            k = torch.cat([state[f"k{i}"], k], 2)
            v = torch.cat([state[f"v{i}"], v], 2)
            a = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, nh, 1, hs)
            h = h + layer["o"](a.reshape(h.shape[0], -1))
            h = h + layer["ff"](layer["n2"](h))
            new[f"k{i}"], new[f"v{i}"] = k, v
        return h, new


class MemoryModel:
    """A registered rlmem memory behind the bench's make_state/step interface."""

    def __init__(self, name: str, **cfg):
        self.mem = build(name, D_IN, **cfg).eval()
        self.name = name

    def make_state(self, batch: int, t: int) -> dict[str, torch.Tensor]:
        state = {k: v.clone() for k, v in self.mem.initial_state(batch).items()}
        for v in state.values():
            if v.is_floating_point():
                v.normal_()
        if "t" in state:  # ELMUR: the step counter, and slots last written at the previous segment ends
            state["t"].fill_(t)
            k = getattr(self.mem, "segment_len", 1)
            m = state["anchor"].shape[-1]
            ends = (t // k - torch.arange(m)) * k - 1  # (M,) times of the M most recent writes
            state["anchor"][:] = ends.clamp(min=0)
        return state

    def step(self, x, state):
        start = torch.zeros(x.shape[0], 1, dtype=torch.bool)
        y, s = self.mem(x[:, None], state, start)
        return y[:, 0], s


def nbytes(state: dict[str, torch.Tensor], batch: int) -> int:
    return sum(v.numel() * v.element_size() for v in state.values()) // batch


def time_step(model, batch: int, t: int, repeats: int, block: int = 10, budget_s: float = 5.0) -> tuple[float, int]:
    """Median per-step time of ``block`` consecutive steps from episode step ``t`` (so ELMUR's segment-end memory
    write is included, amortised), over ``repeats`` blocks after warm-up; fewer blocks where a cell would take
    longer than ``budget_s``."""
    state = model.make_state(batch, t)
    x = torch.randn(batch, D_IN)
    times: list[float] = []
    with torch.inference_mode():
        for i in range(repeats + 10):
            s, t0 = state, time.perf_counter()
            for _ in range(block):
                _, s = model.step(x, s)
            dt = (time.perf_counter() - t0) / block
            if i >= 10 or dt * block > 0.1:  # warm-up only where a block is cheap
                times.append(dt)
            if len(times) >= 3 and sum(times) * block > budget_s:
                break
    return statistics.median(times) * 1e3, nbytes(state, batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 100])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--max-cache-gb", type=float, default=4.0)
    args = ap.parse_args()
    torch.manual_seed(0)
    models = {
        "elmur": MemoryModel("elmur", d_model=128, num_layers=2, num_heads=2, num_slots=2, segment_len=10),
        "lstm": MemoryModel("lstm", hidden_size=128),
        "transformer": KVTransformer(),
    }
    rows = []
    print(f"{'model':<12} {'batch':>5} {'step':>8} {'ms/step':>9} {'state KiB/row':>14}")
    for name, model in models.items():
        for b in args.batches:
            for t in args.steps:
                cache_gb = 2 * 2 * b * t * 128 * 4 / 1e9 if name == "transformer" else 0.0
                if cache_gb > args.max_cache_gb:
                    rows.append({"model": name, "batch": b, "step": t, "ms": None, "state_bytes_per_row": None,
                                 "note": f"skipped: KV cache {cache_gb:.1f} GB"})
                    print(f"{name:<12} {b:>5} {t:>8} {'skipped':>9} (KV cache {cache_gb:.1f} GB)")
                    continue
                ms, size = time_step(model, b, t, args.repeats)
                rows.append({"model": name, "batch": b, "step": t, "ms": ms, "state_bytes_per_row": size})
                print(f"{name:<12} {b:>5} {t:>8} {ms:>9.3f} {size / 1024:>14.1f}", flush=True)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_inference.json").write_text(json.dumps(rows, indent=2))
    lines = ["| model | batch | " + " | ".join(f"ms/step @ {t:,}" for t in args.steps) + " | state KiB/row |",
             "|---|---|" + "---|" * len(args.steps) + "---|"]
    for name in models:
        for b in args.batches:
            rs = [r for r in rows if r["model"] == name and r["batch"] == b]
            cells = [f"{r['ms']:.3f}" if r["ms"] is not None else "skipped" for r in rs]
            sizes = sorted({f"{r['state_bytes_per_row'] / 1024:.1f}" for r in rs if r["ms"] is not None})
            lines.append(f"| {name} | {b} | " + " | ".join(cells) + f" | {' -> '.join(sizes)} |")
    (out / "bench_inference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
