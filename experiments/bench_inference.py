"""Per-step inference latency and state size vs episode length: ELMUR, LSTM and a full-context
causal transformer (KV cache) by default, any ``conf/model`` memory with ``--models``, at episode steps 1k,
10k and 100k and batch 1, 16 and 100.

Each model is put in the state it would have at episode step t (a memory: real steps on random inputs fill
every buffer, up to 4,000 steps, then its clocks jump ahead by whole periods to t; transformer: a KV cache
of t random tokens per layer, the work it must do to attend over the whole episode); then blocks of 10
consecutive T=1 steps are timed from there (so ELMUR's memory write at the segment end is included), median
per-step time over ``--repeats`` blocks after warm-up, ``torch.inference_mode``. Memories run at their
``conf/model/<name>.yaml`` sizes (ELMUR: as released for T-Maze, d_model 128, 2 layers, 2 heads, M=2, K=10;
LSTM 128); transformer d_model 128, 2 layers, 2 heads. Transformer cells whose KV cache exceeds
``--max-cache-gb`` are reported as skipped.

    python experiments/bench_inference.py [--steps 1000 10000 100000] [--batches 1 16 100]
    python experiments/bench_inference.py --models mlp lstm gru xlstm gtrxl hcam sat elmur --out bench_memories

Writes experiments/results/<out>.{json,md} (default bench_inference).

``--deploy`` measures deployment instead: a whole policy step (encoder, memory, heads; observation Box(64),
4 actions, conf/model sizes, greedy actions) at batches 1, 16 and 100 from a filled state with staggered segment
phases (so some row writes its memory at every step), median ms/step of 10-step blocks:

- ELMUR in torch eager, in eager through the step path of ``--baseline-rev`` (loaded from git: the code before
  the folded read and in-place caches), with ``torch.compile`` of its step layers, and in onnxruntime;
- every memory, torch eager vs onnxruntime at batch 1.

    python experiments/bench_inference.py --deploy [--threads 2]

Writes experiments/results/bench_deploy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from torch import nn

from rlmem.memory import build

ROOT = Path(__file__).resolve().parent.parent
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


# Integer state entries that hold episode times (ELMUR: step counter and slot write times; GTrXL/HCAM/SAT: step
# counter; SAT: entry times): shifting them by a whole number of periods moves a filled memory to a later step.
CLOCKS = ("t", "anchor", "time")
PERIOD = 4000  # a multiple of every segment/chunk length in conf/model (8, 10, 16, 32, ...)


class MemoryModel:
    """A registered rlmem memory behind the bench's make_state/step interface."""

    def __init__(self, name: str, **cfg):
        self.mem = build(name, D_IN, **cfg).eval()
        self.name = name

    @classmethod
    def from_config(cls, name: str) -> MemoryModel:
        """The memory of ``model=<name>`` (conf/model, composed as the CLI does) at its configured size."""
        memory, kwargs = configured(name)
        return cls(memory, **kwargs)


def configured(name: str) -> tuple[str, dict]:
    """The memory name and kwargs of ``model=<name>`` (conf/model, composed as the CLI does)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rlmem.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        model = compose("config", overrides=[f"model={name}", "run_dir=unused"]).model
    return model.memory, dict(OmegaConf.to_container(model.memory_kwargs))

    def make_state(self, batch: int, t: int) -> dict[str, torch.Tensor]:
        """The state at episode step ``t``: real steps on random inputs fill every buffer (up to 4,000 steps),
        then the clocks jump ahead by whole periods to ``t``; state sizes and the work per step do not depend on
        how the state got there."""
        shift = max(t - 1000, 0) // PERIOD * PERIOD
        state = self.mem.initial_state(batch)
        with torch.inference_mode():
            for i in range(0, t - shift, 100):
                n = min(100, t - shift - i)
                start = torch.zeros(batch, n, dtype=torch.bool)
                start[:, 0] = i == 0
                _, state = self.mem(torch.randn(batch, n, D_IN), state, start)
        return {k: v + shift * (v >= 0) if k in CLOCKS else v for k, v in state.items()}

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


# ------------------------------------------------------------------ deployment (--deploy)
DEPLOY_MEMORIES = ("mlp", "lstm", "gru", "xlstm", "gtrxl", "hcam", "sat", "elmur")


def baseline_elmur(rev: str) -> type:
    """``ELMURMemory`` as it was at git revision ``rev`` (unregistered), to time the old step path in this run."""
    src = subprocess.run(["git", "show", f"{rev}:rlmem/memory/elmur.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    mod = types.ModuleType("elmur_baseline")
    sys.modules[mod.__name__] = mod
    exec(compile(src.replace('@register("elmur")\n', ""), f"elmur@{rev}", "exec"), mod.__dict__)
    return mod.ELMURMemory


def deploy_policy(name: str):
    """A policy over Box(64) observations and 4 actions with ``conf/model/<name>``'s memory."""
    import gymnasium as gym
    import numpy as np

    from rlmem.policy import Policy

    memory, kwargs = configured(name)
    return Policy(gym.spaces.Box(-1, 1, (D_IN,), np.float32), gym.spaces.Discrete(4), memory=memory,
                  memory_kwargs=kwargs).eval()


def filled_state(policy, batch: int, steps: int = 40):
    """The state after ``steps`` steps on random inputs, each row's episode started at a different step (so the
    rows' segment/chunk phases differ), and the next inputs: no episode starts."""
    g = torch.Generator().manual_seed(0)
    state = policy.initial_state(batch)
    start = (torch.arange(steps)[None, :] == (torch.arange(batch) % 10)[:, None]) | (torch.arange(steps) == 0)
    with torch.inference_mode():
        for t in range(steps):
            _, _, state = policy(torch.rand(batch, 1, D_IN, generator=g) * 2 - 1, state, start[:, t : t + 1])
    obs = torch.rand(batch, 1, D_IN, generator=g) * 2 - 1
    return state, obs, torch.zeros(batch, 1, dtype=torch.bool)


def time_interleaved(variants: dict, rounds: int, block: int = 10) -> dict[str, list[float]]:
    """ms per step of ``block`` consecutive steps of each variant (``name: (step, state)``, ``step(state) ->
    state``, every block from the same state), the variants taking turns ``rounds`` times after one warm-up round, so
    that the host's slow spells fall on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds + 1):
        for name, (step, state) in variants.items():
            s, t0 = state, time.perf_counter()
            for _ in range(block):
                s = step(s)
            if r:
                times[name].append((time.perf_counter() - t0) / block * 1e3)
    return times


def torch_step(policy):
    def run(args):
        state, obs, start = args
        with torch.inference_mode():
            _, _, new = policy(obs, state, start)
        return new, obs, start

    return run


def ort_step(policy, threads: int):
    """The policy exported by ``rlmem.export`` and run by onnxruntime: ``(feed) -> feed`` with the next state."""
    import onnxruntime as ort

    from rlmem.export import export_onnx

    path = export_onnx(policy, Path(tempfile.mkdtemp()) / "policy.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    def run(feed):
        out = sess.run(None, feed)
        return {**feed, **{n.replace("next_state.", "state.", 1): v for n, v in zip(names, out, strict=True)
                           if n.startswith("next_state.")}}

    return run


def ort_feed(state, obs, start):
    return {"obs": obs[:, 0].numpy(), "episode_start": start[:, 0].numpy(),
            **{f"state.{k}": v.numpy() for k, v in state.items()}}


def deploy(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []

    def record(model, batch, times):
        for variant, ts in times.items():
            rows.append({"model": model, "variant": variant, "batch": batch, "ms": statistics.median(ts),
                         "ms_min": min(ts), "ms_max": max(ts), "rounds": len(ts), "threads": args.threads})
            print(f"{model:<8} {variant:<34} {batch:>5} {statistics.median(ts):>9.3f}  ({min(ts):.3f} - {max(ts):.3f})",
                  flush=True)

    print(f"{'model':<8} {'variant':<34} {'batch':>5} {'ms/step':>9}  (range over {args.repeats} rounds; "
          f"{args.threads} threads)")
    elmur = deploy_policy("elmur")
    old = deploy_policy("elmur")
    old.memory = baseline_elmur(args.baseline_rev)(elmur.encoder.output_size, **configured("elmur")[1]).eval()
    old.load_state_dict(elmur.state_dict())
    compiled = deploy_policy("elmur")
    compiled.load_state_dict(elmur.state_dict())
    compiled.memory._step_layers = torch.compile(compiled.memory._step_layers, dynamic=False)
    onnx = ort_step(elmur, args.threads)
    for b in args.batches:
        state, obs, start = filled_state(elmur, b)
        record("elmur", b, time_interleaved({
            f"torch eager, old path ({args.baseline_rev})": (torch_step(old), (state, obs, start)),
            "torch eager": (torch_step(elmur), (state, obs, start)),
            "torch.compile (step layers)": (torch_step(compiled), (state, obs, start)),
            "onnxruntime": (onnx, ort_feed(state, obs, start))}, args.repeats))
    for name in DEPLOY_MEMORIES:
        policy = elmur if name == "elmur" else deploy_policy(name)
        state, obs, start = filled_state(policy, 1)
        record(name, 1, time_interleaved({"torch eager": (torch_step(policy), (state, obs, start)),
                                          "onnxruntime": (ort_step(policy, args.threads), ort_feed(state, obs, start))},
                                         args.repeats))
    out = Path(__file__).resolve().parent / "results"
    (out / "bench_deploy.json").write_text(json.dumps(rows, indent=2))
    lines = [f"ELMUR policy step, ms: median of {args.repeats} interleaved rounds of 10 steps (range), "
             f"{args.threads} threads", "",
             "| variant | " + " | ".join(f"batch {b}" for b in args.batches) + " |",
             "|---|" + "---|" * len(args.batches)]
    elmur_rows = [r for r in rows if r["model"] == "elmur" and r["batch"] in args.batches]
    for variant in dict.fromkeys(r["variant"] for r in elmur_rows):
        cells = [next((f"{r['ms']:.3f} ({r['ms_min']:.2f}-{r['ms_max']:.2f})" for r in elmur_rows
                       if r["variant"] == variant and r["batch"] == b), "") for b in args.batches]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", "Every memory at batch 1, ms per policy step (median)", "",
              "| memory | torch eager | onnxruntime | ratio |", "|---|---|---|---|"]
    per_memory = rows[-2 * len(DEPLOY_MEMORIES):]
    for name in DEPLOY_MEMORIES:
        te, ox = (next(r["ms"] for r in per_memory if r["model"] == name and r["variant"] == v)
                  for v in ("torch eager", "onnxruntime"))
        lines.append(f"| {name} | {te:.3f} | {ox:.3f} | {te / ox:.1f}x |")
    (out / "bench_deploy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 100])
    ap.add_argument("--repeats", type=int, default=None, help="blocks per cell (default 50; --deploy: rounds, 15)")
    ap.add_argument("--max-cache-gb", type=float, default=4.0)
    ap.add_argument("--models", nargs="+", default=["elmur", "lstm", "transformer"],
                    help="conf/model/<name> configs, or 'transformer' (the KV-cache baseline)")
    ap.add_argument("--out", default="bench_inference", help="results/<out>.{json,md}")
    ap.add_argument("--deploy", action="store_true", help="policy-step latency: eager, old path, compile, onnxruntime")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="--deploy: torch and onnxruntime")
    ap.add_argument("--baseline-rev", default="ec77b28", help="--deploy: git revision of the old ELMUR step")
    args = ap.parse_args()
    if args.deploy:
        args.repeats = args.repeats or 15
        return deploy(args)
    args.repeats = args.repeats or 50
    torch.manual_seed(0)
    models = {name: KVTransformer() if name == "transformer" else MemoryModel.from_config(name)
              for name in args.models}
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
    (out / f"{args.out}.json").write_text(json.dumps(rows, indent=2))
    lines = ["| model | batch | " + " | ".join(f"ms/step @ {t:,}" for t in args.steps) + " | state KiB/row |",
             "|---|---|" + "---|" * len(args.steps) + "---|"]
    for name in models:
        for b in args.batches:
            rs = [r for r in rows if r["model"] == name and r["batch"] == b]
            cells = [f"{r['ms']:.3f}" if r["ms"] is not None else "skipped" for r in rs]
            sizes = sorted({f"{r['state_bytes_per_row'] / 1024:.1f}" for r in rs if r["ms"] is not None})
            lines.append(f"| {name} | {b} | " + " | ".join(cells) + f" | {' -> '.join(sizes)} |")
    (out / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
