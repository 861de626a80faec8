"""Behaviour of the ELMUR memory (rlmem/memory/elmur.py) beyond the shared contract: the LRU write rule, memory
carrying information across segments, fixed per-step cost at any episode step, and an independent step-by-step
reference implementation of the paper's equations that the streaming implementation must match."""

from __future__ import annotations

import io
import math

import pytest
import torch

from rlmem.memory import build

K, M, N, D_IN = 4, 2, 2, 3
CFG = {"d_model": 16, "num_layers": N, "num_heads": 2, "num_slots": M, "segment_len": K}


def make(seed: int = 0, **kw):
    torch.manual_seed(seed)
    mem = build("elmur", D_IN, **{**CFG, **kw}).double().eval()
    return mem


def run(mem, x, start=None, state=None):
    B, T, _ = x.shape
    start = torch.zeros(B, T, dtype=torch.bool) if start is None else start
    with torch.no_grad():
        return mem(x, mem.initial_state(B) if state is None else state, start)


def segments(mem, n, seed=1, B=2):
    """States after each of ``n`` segments of random inputs (one call per segment, as the offline trainer)."""
    g = torch.Generator().manual_seed(seed)
    state, states = mem.initial_state(B), []
    for _ in range(n):
        _, state = run(mem, torch.randn(B, K, D_IN, generator=g, dtype=torch.float64), state=state)
        states.append(state)
    return states


# ----------------------------------------------------------------------------- LRU write (paper Alg. 2)
def test_lru_fills_empty_slots_by_replacement_then_blends_into_oldest():
    mem = make()
    mem0 = mem.mem0.expand(2, N, M, -1)
    s1, s2, s3, s4 = segments(mem, 4)
    # anchors = step in episode of each segment's last step; first writes go to the first empty slot
    assert s1["anchor"].tolist() == [[[K - 1, -1]] * N] * 2
    assert s2["anchor"].tolist() == [[[K - 1, 2 * K - 1]] * N] * 2
    assert s3["anchor"].tolist() == [[[3 * K - 1, 2 * K - 1]] * N] * 2  # all full: the oldest slot (0)
    assert s4["anchor"].tolist() == [[[3 * K - 1, 4 * K - 1]] * N] * 2
    # untouched slots keep their value exactly
    assert torch.equal(s1["mem"][:, :, 1], mem0[:, :, 1]) and not torch.allclose(s1["mem"][:, :, 0], mem0[:, :, 0])
    assert torch.equal(s2["mem"][:, :, 0], s1["mem"][:, :, 0])
    assert torch.equal(s3["mem"][:, :, 1], s2["mem"][:, :, 1])

    # writes into empty slots are replacements: lam does not matter for the first two segments...
    for lam in (0.0, 0.3):
        mem.lam = lam
        t1, t2, t3 = segments(mem, 3)
        assert torch.equal(t1["mem"], s1["mem"]) and torch.equal(t2["mem"], s2["mem"])
        if lam == 0.0:
            assert torch.equal(t3["mem"], s2["mem"])  # ...and a blend with lam = 0 keeps the old slot
    # ...while the third write blends: m <- lam * u + (1 - lam) * m, with u what lam = 1 writes
    mem.lam = 1.0
    u = segments(mem, 3)[2]["mem"][:, :, 0]
    mem.lam = 0.3
    blended = segments(mem, 3)[2]["mem"][:, :, 0]
    torch.testing.assert_close(blended, 0.3 * u + 0.7 * s2["mem"][:, :, 0], rtol=0, atol=1e-12)


def test_lru_blend_empty_with_zero_lambda_never_writes():
    """The authors' released behaviour: blending with lam into empty slots too, so lam = 0 never writes."""
    mem = make(lru_blend_empty=True, lam=0.0)
    states = segments(mem, 3)
    for s in states:
        assert torch.equal(s["mem"], mem.mem0.expand_as(s["mem"]))
    assert states[-1]["anchor"].tolist() == [[[3 * K - 1, 2 * K - 1]] * N] * 2  # anchors still advance
    # with lam in (0, 1) the first write into an empty slot is a blend with the initial slot
    mem.lam = 0.5
    blend = segments(mem, 1)[0]["mem"][:, :, 0]
    mem.lru_blend_empty, mem.lam = False, 0.79
    u = segments(mem, 1)[0]["mem"][:, :, 0]
    torch.testing.assert_close(blend, 0.5 * u + 0.5 * mem.mem0[:, 0], rtol=0, atol=1e-12)


def test_without_lru_every_slot_is_rewritten_each_segment():
    mem = make(lru=False)
    s1, s2 = segments(mem, 2)
    assert (s1["mem"] != mem.mem0).all(-1).all()
    assert (s2["mem"] != s1["mem"]).all(-1).all()
    assert s1["anchor"].tolist() == [[[K - 1] * M] * N] * 2
    assert s2["anchor"].tolist() == [[[2 * K - 1] * M] * N] * 2


# ----------------------------------------------------------------------------- memory across segments
def test_memory_carries_information_across_segments():
    mem = make()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3 * K, D_IN, generator=g, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 0] += 1.0  # change only the first step of the first segment
    late = slice(2 * K, 3 * K)  # the third segment
    y, _ = run(mem, x)
    y2, _ = run(mem, x2)
    assert (y[0, late] - y2[0, late]).abs().max() > 1e-4, "the third segment does not see the first one"

    # the only path across segments is the memory: with it re-initialised before segment 3 the change vanishes
    def third_segment(inp):
        _, s = run(mem, inp[:, : 2 * K])
        s = {**s, "mem": mem.initial_state(1)["mem"], "anchor": mem.initial_state(1)["anchor"]}
        return run(mem, inp[:, late], state=s)[0]

    torch.testing.assert_close(third_segment(x), third_segment(x2), rtol=0, atol=0)


def test_aligned_segment_calls_match_one_call_and_steps():
    """The offline trainer's path (T=K calls from phase 0) and the rollout path (T=1) are the same function."""
    mem = make()
    g = torch.Generator().manual_seed(4)
    B, T = 3, 5 * K
    x = torch.randn(B, T, D_IN, generator=g, dtype=torch.float64)
    start = torch.zeros(B, T, dtype=torch.bool)
    start[:, 0] = True
    y, s = run(mem, x, start)
    for width in (K, 1):
        state, ys = mem.initial_state(B), []
        for a in range(0, T, width):
            yy, state = run(mem, x[:, a : a + width], start[:, a : a + width], state)
            ys.append(yy)
        torch.testing.assert_close(torch.cat(ys, 1), y, rtol=0, atol=1e-10)
        for k in s:
            torch.testing.assert_close(state[k], s[k], rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- long episodes
def test_state_size_does_not_grow_with_episode_step():
    mem = make()
    x = torch.randn(2, 1, D_IN, dtype=torch.float64)
    shapes = {}
    for t in (5, 100_000):
        s = mem.initial_state(2)
        s["t"] = torch.full((2,), t)
        end = t - t % K - 1  # the last completed segment's end
        s["anchor"] = torch.tensor([end - K, end]).expand(2, N, M).clone()
        for _ in range(2 * K):  # cross a segment boundary (a write) at both depths
            y, s = run(mem, x, state=s)
            assert torch.isfinite(y).all()
        shapes[t] = {k: (tuple(v.shape), v.dtype) for k, v in s.items()}
        assert s["t"].tolist() == [t + 2 * K] * 2
    assert shapes[5] == shapes[100_000]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_anchors_and_time_at_a_million_steps(dtype):
    mem = make().to(dtype)
    t0 = 999_998  # segments end at steps = 3 (mod 4): this step is 2 before the end of one (999_999)
    s = mem.initial_state(2)
    s["t"] = torch.full((2,), t0)
    s["anchor"] = torch.tensor([[999_991, 999_995], [-1, 599_995]]).view(2, 1, M).expand(2, N, M)
    x = torch.randn(2, 5, D_IN, dtype=dtype)
    with torch.no_grad():
        y, s2 = mem(x, s, torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(y).all() and torch.isfinite(s2["mem"]).all()
    assert s2["t"].tolist() == [t0 + 5] * 2 and s2["anchor"].dtype == torch.int64
    # the segment ending at step 999_999 went into the oldest slot (row 0) and the empty slot (row 1)
    assert s2["anchor"].tolist() == [[[999_999, 999_995]] * N, [[999_999, 599_995]] * N]
    # a reset at that depth gives exactly the fresh episode's outputs
    start = torch.zeros(2, 5, dtype=torch.bool)
    start[:, 3] = True
    with torch.no_grad():
        y3, _ = mem(x, s, start)
        fresh, _ = mem(x[:, 3:], mem.initial_state(2), start[:, 3:])
    torch.testing.assert_close(y3[:, 3:], fresh, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)


# ----------------------------------------------------------------------------- independent reference
def reference(m, x: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, list]:
    """ELMUR from the module docstring's equations, one row, one segment and one scalar score at a time,
    re-running each segment in full (the authors' inference scheme) from the initial state."""
    B, T, _ = x.shape
    D, nh = m.d_model, m.num_heads
    hs, R = D // nh, m.max_rel_time
    ys, finals = torch.zeros(B, T, D, dtype=x.dtype), []

    def bias(layer, offset):  # (nh,)
        return m.rel_bias[layer, max(-(R - 1), min(R - 1, offset)) + R - 1]

    def attend(qs, ks, vs, offsets, layer):  # qs (Lq, D), ks/vs (Lk, D), offsets[i][j]: time offset of (i, j)
        out = torch.zeros(qs.shape[0], D, dtype=x.dtype)
        for h in range(nh):
            c = slice(h * hs, (h + 1) * hs)
            for i in range(qs.shape[0]):
                sc = torch.stack([qs[i, c] @ ks[j, c] / math.sqrt(hs) + bias(layer, offsets[i][j])[h]
                                  for j in range(ks.shape[0])])
                out[i, c] = sc.softmax(0) @ vs[:, c]
        return out

    for b in range(B):
        bounds = [0] + [t for t in range(1, T) if start[b, t]] + [T]
        for e0, e1 in zip(bounds[:-1], bounds[1:], strict=True):  # one episode
            mem = m.mem0.clone()  # (N, M, D)
            anchor = [[-1] * m.num_slots for _ in range(m.num_layers)]
            for a in range(0, e1 - e0, m.segment_len):
                steps = list(range(a, min(a + m.segment_len, e1 - e0)))  # steps in episode
                L = len(steps)
                h = m.in_proj(x[b, e0 + a : e0 + a + L])
                outs = []
                for li, layer in enumerate(m.layers):
                    q, k, v = layer.qkv(h).chunk(3, -1)
                    r = layer.r_net(m.pos_sin.to(x.dtype))  # (K, D) W_r R(d)
                    o = torch.zeros(L, D, dtype=x.dtype)
                    for hh in range(nh):  # (1) a_ij = (q_i+u)·k_j + (q_i+v)·W_r R(i-j), j <= i
                        c = slice(hh * hs, (hh + 1) * hs)
                        for i in range(L):
                            sc = torch.stack([((q[i, c] + m.u[hh]) @ k[j, c] + (q[i, c] + m.v[hh]) @ r[i - j, c])
                                              / math.sqrt(hs) for j in range(i + 1)])
                            o[i, c] = sc.softmax(0) @ v[: i + 1, c]
                    h = layer.norm_self(h + layer.self_o(o))
                    km, vm = layer.read_kv(mem[li]).chunk(2, -1)  # (2) read
                    o = attend(layer.read_q(h), km, vm, [[t - a for a in anchor[li]] for t in steps], li)
                    h = layer.norm_read(h + layer.read_o(o))
                    h = layer.norm_ffn(h + layer.ffn(h))  # (3)
                    outs.append(h)
                ys[b, e0 + a : e0 + a + L] = h
                if L < m.segment_len:
                    continue
                new_mem, new_anchor = mem.clone(), [list(row) for row in anchor]
                for li, layer in enumerate(m.layers):  # (4)-(6) write
                    wk, wv = layer.write_kv(outs[li]).chunk(2, -1)
                    o = attend(layer.write_q(mem[li]), wk, wv, [[a - t for t in steps] for a in anchor[li]], li)
                    u = layer.norm_write(mem[li] + layer.write_o(o))
                    cand = layer.norm_mem(u + layer.mem_ffn(u))
                    if not m.lru:
                        new_mem[li], new_anchor[li] = cand, [steps[-1]] * m.num_slots
                        continue
                    empty = [j for j in range(m.num_slots) if anchor[li][j] < 0]
                    j = empty[0] if empty else min(range(m.num_slots), key=lambda s, li=li: anchor[li][s])
                    blend = m.lam * cand[j] + (1 - m.lam) * mem[li, j]
                    new_mem[li, j] = cand[j] if (empty and not m.lru_blend_empty) else blend
                    new_anchor[li][j] = steps[-1]
                mem, anchor = new_mem, new_anchor
        finals.append((mem, anchor))
    return ys, finals


@pytest.mark.parametrize("kw", [{}, {"lru": False}, {"lru_blend_empty": True}, {"max_rel_time": 3}])
def test_matches_reference_implementation(kw):
    mem = make(seed=2, **kw)
    g = torch.Generator().manual_seed(5)
    B, T = 3, 19
    x = torch.randn(B, T, D_IN, generator=g, dtype=torch.float64)
    start = torch.zeros(B, T, dtype=torch.bool)
    start[:, 0] = True
    start[0, 6] = True  # mid-segment reset: the partial segment is never written
    start[2, 13] = True
    with torch.no_grad():
        y_ref, finals = reference(mem, x, start)
        y, s = run(mem, x, start)
        ys, state = [], mem.initial_state(B)
        for a in range(T):  # and step by step
            yy, state = run(mem, x[:, a : a + 1], start[:, a : a + 1], state)
            ys.append(yy)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cat(ys, 1), y_ref, rtol=0, atol=1e-10)
    for b, (m_ref, a_ref) in enumerate(finals):
        torch.testing.assert_close(s["mem"][b], m_ref, rtol=0, atol=1e-10)
        assert s["anchor"][b].tolist() == a_ref


def test_single_step_fast_path_matches_general_path():
    """T=1 without autograd takes a dedicated path; it must match the general (piece) path that T=1 takes with
    autograd, outputs and every state entry, with rows at different phases, resets and writes."""
    mem = make(seed=3)
    g = torch.Generator().manual_seed(6)
    B, T = 4, 3 * K + 2
    x = torch.randn(B, T, D_IN, generator=g, dtype=torch.float64)
    start = torch.rand(B, T, generator=g) < 0.1
    start[:, 0] = True
    start[1, 0], start[1, 3] = False, True  # row 1 continues a carried state, then resets mid-segment
    s_fast, s_slow = segments(mem, 2, B=B)[-1], segments(mem, 2, B=B)[-1]
    s_fast["t"] = s_slow["t"] = torch.tensor([0, 1, 2, 3])  # spread-out phases (anchors stay consistent)
    for a in range(T):
        with torch.inference_mode():
            y_fast, s_fast = mem(x[:, a : a + 1], s_fast, start[:, a : a + 1])
        y_slow, s_slow = mem(x[:, a : a + 1], s_slow, start[:, a : a + 1])  # autograd on: the general path
        torch.testing.assert_close(y_fast, y_slow.detach(), rtol=0, atol=1e-12)
        for k in s_slow:
            torch.testing.assert_close(s_fast[k], s_slow[k].detach(), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- stale-slot read dropout
def test_read_dropout_hides_stale_slots_only_in_training():
    mem = make(read_dropout=0.999)
    s2 = segments(mem, 2)[1]  # both slots written; slot 1 is the newest
    x = torch.randn(2, K, D_IN, dtype=torch.float64)

    def out(state, train):
        mem.train(train)
        torch.manual_seed(0)
        return run(mem, x, state=state)[0]

    stale, newest = ({**s2, "mem": s2["mem"].clone()} for _ in range(2))
    stale["mem"][:, :, 0] += 1.0
    newest["mem"][:, :, 1] += 1.0
    # training: the reads ignore the stale slot's content, never the newest slot's
    assert torch.equal(out(stale, True), out(s2, True))
    assert not torch.allclose(out(newest, True), out(s2, True))
    # evaluation: every slot is read, and the output is that of the same weights without read dropout
    assert not torch.allclose(out(stale, False), out(s2, False))
    plain = make(read_dropout=0.0)
    plain.load_state_dict(mem.state_dict())
    assert torch.equal(out(s2, False), run(plain, x, state=s2)[0])


def test_read_dropout_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="read_dropout"):
        make(read_dropout=1.0)


# ----------------------------------------------------------------------------- LayerScale on the write branches
def test_small_write_scale_fills_empty_slots_fully_and_keeps_occupied_ones():
    def change(mem, seg):
        """How much memory changes when the inputs of segment ``seg`` (0-based) change, other segments equal."""
        g = torch.Generator().manual_seed(5)
        x = torch.randn(1, (seg + 1) * K, D_IN, generator=g, dtype=torch.float64)
        x2 = x.clone()
        x2[:, seg * K:] = torch.randn(1, K, D_IN, generator=g, dtype=torch.float64)
        s, s2 = run(mem, x)[1], run(mem, x2)[1]
        return ((s["mem"] - s2["mem"]).norm(dim=-1) / s["mem"].norm(dim=-1)).max().item()

    # initial slots (sigma) far smaller than the scaled write, which is far smaller than a written (normalised) slot
    plain, scaled = make(sigma=1e-6), make(sigma=1e-6, write_scale=1e-3)
    # an empty slot takes the segment's content in both models (the write is normalised, whatever its scale)...
    assert change(plain, 0) > 0.05 and change(scaled, 0) > 0.05
    # ...while blending into an occupied slot (third segment, M=2) all but ignores it with a small write scale
    assert change(plain, 2) > 0.05
    assert change(scaled, 2) < 0.01


def test_step_path_follows_weight_changes_after_keeping_a_folded_read():
    """The step path keeps each memory's folded read (``_fold``) between steps; an in-place change of the read
    weights (an optimiser step, ``load_state_dict``) must be seen by the next step, as by the sequence path."""
    torch.manual_seed(0)
    mem = build("elmur", 5, d_model=16, num_layers=2, num_heads=2, num_slots=2, segment_len=3).double().eval()
    x = torch.randn(2, 8, 5, dtype=torch.float64)
    start = torch.zeros(2, 8, dtype=torch.bool)
    with torch.inference_mode():
        _, s = mem(x[:, :5], mem.initial_state(2), start[:, :5])  # memory written at step 3
        _, s = mem(x[:, 5:6], s, start[:, 5:6])  # the fold of this memory is computed and kept
    with torch.no_grad():
        for layer in mem.layers:
            layer.read_kv.weight.mul_(-1.5)
            layer.read_o.weight.add_(0.1)
    with torch.inference_mode():
        y_step, _ = mem(x[:, 6:7], s, start[:, 6:7])
    with torch.no_grad():
        y_seq, _ = mem(x[:, 6:8], {k: v.clone() for k, v in s.items()}, start[:, 6:8])
    assert (y_step[:, 0] - y_seq[:, 0]).abs().max() < 1e-10


def _stepper():
    torch.manual_seed(0)
    mem = build("elmur", 5, d_model=16, num_layers=2, num_heads=2, num_slots=2, segment_len=3).double().eval()
    x = torch.randn(2, 16, 5, dtype=torch.float64)
    start = torch.zeros(2, 16, dtype=torch.bool)
    start[:, 0] = True
    return mem, x, start


def test_inference_steps_write_the_caches_in_place_when_nothing_else_refers_to_them():
    mem, x, start = _stepper()
    with torch.inference_mode():
        _, s = mem(x[:, :1], mem.initial_state(2), start[:, :1])
        ptr = s["h"].data_ptr()
        for t in range(1, 8):
            _, s = mem(x[:, t : t + 1], s, start[:, t : t + 1])
            assert s["h"].data_ptr() == ptr, f"step {t} copied its caches although nothing else refers to them"


@pytest.mark.parametrize("alias", ["dict", "detach", "slice", "numpy"])
def test_an_alias_kept_by_the_caller_stops_in_place_writes(alias):
    """A state kept in any form that shares the caches (the same tensors in another dict, ``detach()``, a view, a
    numpy array) must replay the same future after the original has stepped on, past a segment's wrap-around."""
    mem, x, start = _stepper()
    with torch.inference_mode():
        state, ys = mem.initial_state(2), []
        for t in range(16):
            y, state = mem(x[:, t : t + 1], state, start[:, t : t + 1])
            ys.append(y)
        state, kept = mem.initial_state(2), None
        for t in range(16):
            _, state = mem(x[:, t : t + 1], state, start[:, t : t + 1])
            if t == 4:
                kept = {"dict": lambda s: dict(s), "detach": lambda s: {k: v.detach() for k, v in s.items()},
                        "slice": lambda s: {k: v[:] for k, v in s.items()},
                        "numpy": lambda s: {k: v.numpy() for k, v in s.items()}}[alias](state)
        replay = {k: torch.from_numpy(v) if alias == "numpy" else v for k, v in kept.items()}
        for t in range(5, 16):
            y, replay = mem(x[:, t : t + 1], replay, start[:, t : t + 1])
            assert (y - ys[t]).abs().max() < 1e-10, f"step {t} replayed from a kept {alias} alias"


def test_a_stepped_state_saves_and_continues():
    mem, x, start = _stepper()
    with torch.inference_mode():
        _, s = mem(x[:, :5], mem.initial_state(2), start[:, :5])
        _, s = mem(x[:, 5:6], s, start[:, 5:6])
        buf = io.BytesIO()
        torch.save(s, buf)
        buf.seek(0)
        loaded = torch.load(buf)
        y1, _ = mem(x[:, 6:9], {k: v.clone() for k, v in s.items()}, start[:, 6:9])
        y2, _ = mem(x[:, 6:9], loaded, start[:, 6:9])
    assert torch.equal(y1, y2)
