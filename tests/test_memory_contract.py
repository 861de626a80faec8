"""The memory contract of DESIGN.md, checked for every registered memory.

A new memory is not done until it passes this module. Memories are built with ``SMALL_CFG`` overrides
(small widths keep the suite fast) and checked in float64 to tolerance 1e-5.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rlmem.memory import MEMORIES, build

B, T, D = 3, 24, 5
TOL = 1e-5
# Per-memory small configs; memories not listed are built with their defaults.
SMALL_CFG: dict[str, dict] = {
    "mlp": {"hidden_size": 16},
    "lstm": {"hidden_size": 16, "num_layers": 2},
    "gru": {"hidden_size": 16, "num_layers": 2},
    "elmur": {"d_model": 16, "num_layers": 2, "num_heads": 2, "num_slots": 2, "segment_len": 4,
              "max_rel_time": 8},
    "gtrxl": {"d_model": 16, "num_layers": 2, "num_heads": 2, "window": 5},
    "hcam": {"d_model": 16, "num_layers": 2, "num_heads": 2, "chunk_len": 3, "num_chunks": 2, "top_k": 1},
    # the last input column is the place (rounded, clamped to 3 places); 4 slots fill and evict within a row
    "sat": {"d_model": 16, "num_layers": 2, "num_heads": 2, "capacity": 4, "num_places": 3, "place_input": True,
            "read": "place", "top_k": 2, "allocation": "mvfo"},
    "xlstm": {"d_model": 16, "num_blocks": 2, "slstm_at": [1], "num_heads": 2},
}


def make(name: str, seed: int = 0):
    torch.manual_seed(seed)
    mem = build(name, D, **SMALL_CFG.get(name, {})).double()
    mem.eval()
    return mem


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    start = torch.rand(B, T, generator=g) < 0.15
    start[0, 7] = True  # at least one reset inside a row...
    start[1, :] = False  # ...one row without any...
    start[2, 0] = True  # ...and one that starts a fresh episode at t=0
    return x, start


def run_chunks(mem, x, start, state, cuts):
    ys, bounds = [], [0, *cuts, x.shape[1]]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        y, state = mem(x[:, a:b], state, start[:, a:b])
        ys.append(y)
    return torch.cat(ys, 1), state


def assert_close(a, b, what):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= TOL, f"{what}: max abs difference {err:.3g} > {TOL}"


def assert_state_close(s1, s2, what):
    assert s1.keys() == s2.keys(), f"{what}: state keys differ"
    for k in s1:
        assert_close(s1[k].double(), s2[k].double(), f"{what}: state[{k!r}]")


def warm_state(mem):
    """A non-initial carried state, so resets and carries are actually exercised."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(B, 9, D, generator=g, dtype=torch.float64)
    with torch.no_grad():
        _, s = mem(x, mem.initial_state(B), torch.zeros(B, 9, dtype=torch.bool))
    return s


names = sorted(MEMORIES)


@pytest.mark.parametrize("name", names)
def test_state_is_batch_first_dict_of_tensors(name):
    mem = make(name)
    s = mem.initial_state(B)
    assert isinstance(s, dict)
    for k, v in s.items():
        assert isinstance(v, torch.Tensor) and v.shape[0] == B, f"state[{k!r}] is not batch-first"
        assert v.dtype == torch.float64 or not v.is_floating_point(), f"state[{k!r}] ignores module dtype"
    y, s2 = mem(torch.zeros(B, 4, D, dtype=torch.float64), s, torch.zeros(B, 4, dtype=torch.bool))
    assert y.shape == (B, 4, mem.output_size)
    assert s2.keys() == s.keys()
    for k in s:
        assert s2[k].shape == s[k].shape, f"state[{k!r}] changed shape: the state must be fixed-size"


@pytest.mark.parametrize("name", names)
@pytest.mark.parametrize("cuts", [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23],
                                  [7], [5, 8, 16], [1, 12, 23]])
def test_any_split_gives_same_outputs_and_state(name, cuts):
    mem = make(name)
    x, start = inputs()
    s0 = warm_state(mem)
    with torch.no_grad():
        y_whole, s_whole = mem(x, s0, start)
        y_split, s_split = run_chunks(mem, x, start, s0, cuts)
    assert_close(y_whole, y_split, f"outputs, split at {cuts}")
    assert_state_close(s_whole, s_split, f"final state, split at {cuts}")


@pytest.mark.parametrize("name", names)
def test_episode_start_resets_to_initial_state(name):
    mem = make(name)
    x, start = inputs()
    s0 = warm_state(mem)
    with torch.no_grad():
        y, _ = mem(x, s0, start)
        for b, t in torch.nonzero(start).tolist():
            # The episode starting at (b, t) must see exactly the initial state: compare with a fresh
            # run of that row from t, given the same later resets.
            fresh, _ = mem(x[b : b + 1, t:], mem.initial_state(1), start[b : b + 1, t:])
            assert_close(y[b : b + 1, t:], fresh, f"row {b} after reset at t={t}")
        # ...and a carried state must matter where no reset happens (row 1 has none).
        y_init, _ = mem(x, mem.initial_state(B), start)
    if s0:
        assert (y[1] - y_init[1]).abs().max() > 1e-6, "the carried state has no effect on outputs"


@pytest.mark.parametrize("name", names)
def test_rows_are_independent(name):
    mem = make(name)
    x, start = inputs()
    s0 = warm_state(mem)
    x2 = x.clone()
    x2[0] += torch.randn_like(x2[0])
    s2 = {k: v.clone() for k, v in s0.items()}
    for v in s2.values():
        if v.is_floating_point():
            v[0] += 1.0
    with torch.no_grad():
        y1, st1 = mem(x, s0, start)
        y2, st2 = mem(x2, s2, start)
    assert_close(y1[1:], y2[1:], "rows 1.. when row 0 changes")
    for k in st1:
        assert_close(st1[k][1:], st2[k][1:], f"state[{k!r}] rows 1.. when row 0 changes")


@pytest.mark.parametrize("name", names)
def test_state_is_not_modified_in_place(name):
    mem = make(name)
    x, start = inputs()
    s0 = warm_state(mem)
    before = copy.deepcopy(s0)
    mem(x, s0, start)
    for t in range(3):
        mem(x[:, t : t + 1], s0, start[:, t : t + 1])
    assert_state_close(before, s0, "caller's state after forward")


@pytest.mark.parametrize("name", names)
def test_inference_single_steps_match_the_sequence_and_never_change_a_handed_state(name):
    """Deployment's path: one step at a time under ``torch.inference_mode`` (where fast paths such as ELMUR's cached
    step run). Outputs and the final state must equal one sequence call's, whether the caller drops each state (a
    memory may then reuse its buffers) or keeps every one and branches; and every state handed back must still
    give the same future, whatever later steps did (a caller may keep it to branch or to replay from)."""
    mem = make(name)
    x, start = inputs()
    s0 = warm_state(mem)
    with torch.no_grad():
        y_seq, s_seq = mem(x, s0, start)

    def step(t, state):
        return mem(x[:, t : t + 1], state, start[:, t : t + 1])

    with torch.inference_mode():
        state, ys = s0, []
        for t in range(T):  # the caller keeps nothing
            y, state = step(t, state)
            ys.append(y)
        assert_close(y_seq, torch.cat(ys, 1), "inference single steps vs one sequence call")
        assert_state_close(s_seq, state, "final state, inference single steps")

        state, handed, copies = s0, [], []
        for t in range(T):  # the caller keeps every state, and branches twice
            y, state = step(t, state)
            assert_close(ys[t], y, f"step {t} when every state is kept")
            handed.append(state)
            copies.append({k: v.clone() for k, v in state.items()})
            if t in (T // 2, T // 2 + 1):  # a second step from the same state, starting episodes where the first
                mem(x[:, t + 1 : t + 2].flip(0), state, ~start[:, t + 1 : t + 2])  # does not, must not disturb it
        assert_state_close(s_seq, state, "final state, inference single steps, every state kept")
        for t, (returned, copy_at_return) in enumerate(zip(handed, copies, strict=True)):
            assert_state_close(mem.essential(copy_at_return), mem.essential(returned),
                               f"state handed back at step {t}, after later steps")
        for t, replay in enumerate(handed[:-1]):  # each kept state, replayed for up to 10 steps
            for u in range(t + 1, min(T, t + 11)):
                y, replay = step(u, replay)
                assert_close(ys[u], y, f"step {u} replayed from the state handed back at step {t}")
        state = s0
        for t in range(T - 1):  # the caller keeps nothing, then...
            _, state = step(t, state)
    with torch.no_grad():  # ...continues outside inference mode (a rollout after an evaluation)
        y, _ = step(T - 1, state)
    assert_close(ys[T - 1], y, "a step under no_grad from a state made under inference_mode")


@pytest.mark.parametrize("name", names)
def test_need_state_false_gives_same_outputs(name):
    mem = make(name)
    x, start = inputs()
    s0 = warm_state(mem)
    with torch.no_grad():
        y, _ = mem(x, s0, start)
        y2, s = mem(x, s0, start, need_state=False)
    assert s is None or isinstance(s, dict)
    assert_close(y, y2, "outputs with need_state=False")


@pytest.mark.parametrize("name", names)
def test_gradients_reach_parameters_and_inputs(name):
    mem = make(name)
    x, start = inputs()
    x.requires_grad_(True)
    y, _ = mem(x, mem.initial_state(B), start)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    grads = [p.grad for p in mem.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "some parameter gets no gradient"


@pytest.mark.parametrize("name", names)
def test_float32_matches_float64(name):
    mem = make(name)
    x, start = inputs()
    s0 = warm_state(mem)
    with torch.no_grad():
        y64, _ = mem(x, s0, start)
        mem32 = copy.deepcopy(mem).float()
        y32, _ = run_chunks(mem32, x.float(), start, {k: v.float() for k, v in s0.items()}, [3, 11])
    err = (y64 - y32.double()).abs().max().item()
    assert err < 1e-4, f"float32 chunked run differs from float64 by {err:.3g}"


def test_build_rejects_unknown_name_and_argument():
    with pytest.raises(KeyError, match="registered"):
        build("lstmm", 4)
    with pytest.raises(TypeError, match="accepts"):
        build("lstm", 4, hidden=3)
