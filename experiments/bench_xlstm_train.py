"""xLSTM training speed: forward + backward of ``XLSTMMemory`` over ``[batch, steps]`` with episode resets, through
the sequence path (``_sequence``: whole-sequence layers, the mLSTM chunkwise kernel over reset-free spans) vs the
blocks' step loop it replaced, as it was (the package's sLSTM recurrence: ``package step loop``) and as the
single-step path now runs it (one matmul per head: ``step loop``). Same weights, same inputs; prints the times and
the largest difference in outputs and final state.

    python experiments/bench_xlstm_train.py [--batch 64] [--steps 32] [--reset-prob 0.05] [--repeats 5]

Writes experiments/results/bench_xlstm_train.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from rlmem.memory import build

CONF = {"d_model": 128, "num_blocks": 2, "slstm_at": [1], "num_heads": 4, "conv_kernel": 4}  # conf/model/xlstm.yaml


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--reset-prob", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mem = build("xlstm", args.input, **CONF)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, args.steps, args.input, generator=g)
    start = torch.rand(args.batch, args.steps, generator=g) < args.reset_prob
    state = {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in mem.initial_state(args.batch).items()}
    state = {k: v.abs() if k.endswith("_n") else v for k, v in state.items()}

    package = copy.deepcopy(mem)
    for cell in package.modules():  # back to the package's own recurrence (drop the per-cell override)
        if "_impl" in vars(cell):
            del cell._impl
    paths = {"package step loop": (package, "_steps"), "step loop": (mem, "_steps"), "sequence": (mem, "_sequence")}

    def run(name: str) -> tuple[torch.Tensor, dict]:
        m, path = paths[name]
        h = m.in_proj(x)
        y, s = getattr(m, path)(h, dict(state), start, True)
        (y.square().mean() + sum(v.square().mean() for v in s.values())).backward()
        m.zero_grad(set_to_none=True)
        return y.detach(), {k: v.detach() for k, v in s.items()}

    results = {name: run(name) for name in paths}
    y_ref, s_ref = results["package step loop"]
    diff = max(max((y - y_ref).abs().max().item(), *((s[k] - s_ref[k]).abs().max().item() for k in s))
               for y, s in results.values())
    rows: dict[str, list[float]] = {}
    for _ in range(2):  # alternate: the host is noisy
        for name in paths:
            rows.setdefault(name, []).extend(timed(lambda n=name: run(n), args.repeats))
    ms = {name: statistics.median(v) * 1e3 for name, v in rows.items()}
    print(f"xLSTM fwd+bwd, batch {args.batch} x {args.steps} steps, resets p={args.reset_prob}: "
          + ", ".join(f"{name} {t:.0f} ms" for name, t in ms.items())
          + f"; sequence vs package step loop {ms['package step loop'] / ms['sequence']:.1f}x, vs step loop "
          f"{ms['step loop'] / ms['sequence']:.1f}x; max |difference| (outputs and final state) {diff:.2e}")
    out = Path(__file__).resolve().parent / "results" / "bench_xlstm_train.json"
    out.write_text(json.dumps({"batch": args.batch, "steps": args.steps, "reset_prob": args.reset_prob,
                               "config": CONF, "threads": torch.get_num_threads(), "median_ms": ms,
                               "max_abs_diff": diff, "samples_s": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
