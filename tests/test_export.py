"""ONNX export (``rlmem.export``): every memory's step graph against the torch policy, the sidecar files, the CLI,
a clear failure, and the numpy-only T-Maze example."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs import TMazeEnv
from rlmem.checkpoint import save_checkpoint
from rlmem.export import ExportError, export_onnx, main
from rlmem.memory import MEMORIES, Memory, register
from rlmem.policy import Policy
from rlmem.tree import tree_map

ort = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parent.parent
TMAZE = {"corridor_length": 6, "variant": "passive"}
# Small widths keep the exports quick; windows shorter than the 300 steps so that every cache wraps.
SMALL = {
    "mlp": {"hidden_size": 32},
    "lstm": {"hidden_size": 32},
    "gru": {"hidden_size": 32},
    "elmur": {"d_model": 32, "num_slots": 2, "segment_len": 4},
    "gtrxl": {"d_model": 32, "window": 8},
    "hcam": {"d_model": 32, "chunk_len": 4, "num_chunks": 3},
    "sat": {"d_model": 32, "capacity": 6},
    "xlstm": {"d_model": 32},
}


def tmaze_policy(memory: str) -> Policy:
    torch.manual_seed(0)
    env = TMazeEnv(**TMAZE)
    return Policy(env.observation_space, env.action_space, memory=memory, memory_kwargs=SMALL.get(memory, {}),
                  env_id="rlmem/TMaze-v0", env_kwargs=TMAZE).eval()


def outputs(sess, feed: dict) -> dict[str, np.ndarray]:
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True))


def compare(policy: Policy, path: Path, steps: int, batch: int, obs_fn) -> None:
    """``steps`` steps of onnxruntime and of the torch policy from the exported initial state, with episode starts:
    logits (or Gaussian parameters) and values within 1e-4, the same greedy actions."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    init = np.load(path.with_name(path.stem + ".initial_state.npz"))
    feed_state = {f"state.{k}": np.repeat(v, batch, 0) for k, v in init.items()}
    state = policy.initial_state(batch)
    rng = np.random.default_rng(0)
    worst = 0.0
    for t in range(steps):
        obs = obs_fn(rng, batch)
        start = (rng.random(batch) < 0.05) | (t == 0)
        out = outputs(sess, {**obs, "episode_start": start, **feed_state})
        feed_state = {k.replace("next_state.", "state.", 1): v for k, v in out.items() if k.startswith("next_state.")}
        with torch.inference_mode():
            o = {k.removeprefix("obs."): torch.as_tensor(v) for k, v in obs.items()}
            o = o["obs"] if "obs" in o else o
            dist, value, state = policy(tree_map(lambda v: v[:, None], o), state, torch.as_tensor(start)[:, None])
            action = policy.to_env_action(dist.mode()[:, 0])
        params = {"mean": dist.mean, "log_std": dist.log_std} if hasattr(dist, "mean") else {"logits": dist.logp}
        for name, ref in params.items():
            ref = ref[:, 0].detach().numpy()
            ref = ref[:, 0] if ref.ndim == 3 and out[name].ndim == 2 else ref  # Discrete: [B, n]
            np.testing.assert_array_equal(np.isfinite(out[name]), np.isfinite(ref))  # MultiDiscrete's -inf padding
            finite = np.isfinite(ref)
            worst = max(worst, float(np.abs(out[name][finite] - ref[finite]).max()))
        worst = max(worst, float(np.abs(out["value"] - value[:, 0].numpy()).max()))
        if np.issubdtype(out["action"].dtype, np.integer):
            np.testing.assert_array_equal(out["action"], action.numpy(), err_msg=f"greedy actions differ at step {t}")
        else:  # Box: the clipped mean
            worst = max(worst, float(np.abs(out["action"] - action.numpy()).max()))
    assert worst <= 1e-4, f"onnxruntime vs torch: max abs difference {worst:.3g} > 1e-4"


def tmaze_obs(rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    return {"obs": rng.integers(-1, 2, (batch, 2)).astype(np.float32)}


@pytest.mark.parametrize("memory", sorted(MEMORIES))
def test_every_memory_exports_and_matches_torch_for_300_steps(memory, tmp_path):
    policy = tmaze_policy(memory)
    path = export_onnx(policy, tmp_path / "policy.onnx")
    compare(policy, path, steps=300, batch=3, obs_fn=tmaze_obs)
    compare(policy, path, steps=20, batch=1, obs_fn=tmaze_obs)  # the batch dimension is dynamic


def test_dict_observations_multidiscrete_and_box_actions(tmp_path):
    obs_space = gym.spaces.Dict({"cell": gym.spaces.Discrete(5), "pos": gym.spaces.Box(-1, 1, (3,), np.float32)})

    def obs_fn(rng, batch):
        return {"obs.cell": rng.integers(0, 5, batch), "obs.pos": rng.uniform(-1, 1, (batch, 3)).astype(np.float32)}

    for i, action_space in enumerate([gym.spaces.MultiDiscrete([3, 5]), gym.spaces.Box(-0.5, 0.5, (2,), np.float32)]):
        torch.manual_seed(0)
        policy = Policy(obs_space, action_space, memory="gru", memory_kwargs={"hidden_size": 16}).eval()
        with torch.no_grad():  # a mean that leaves the action bounds, so that the greedy action is clipped
            policy.actor.fc.weight.mul_(300.0)
        path = export_onnx(policy, tmp_path / f"p{i}.onnx")
        compare(policy, path, steps=40, batch=4, obs_fn=obs_fn)
        meta = json.loads((tmp_path / f"p{i}.json").read_text())
        assert [x["name"] for x in meta["inputs"]][:3] == ["obs.cell", "obs.pos", "episode_start"]
        assert meta["inputs"][0]["dtype"] == "int64"


def test_cli_writes_graph_sidecar_and_initial_state(tmp_path):
    policy = tmaze_policy("lstm")
    ckpt = save_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt", policy, {}, {})
    main([f"checkpoint={tmp_path / 'run'}", "format=onnx"])
    out = tmp_path / "run" / "policy.onnx"
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["env_id"] == "rlmem/TMaze-v0" and meta["env_kwargs"] == TMAZE and meta["memory"] == "lstm"
    assert meta["observation_space"] == {"type": "Box", "shape": [2], "dtype": "float32", "low": -1.0, "high": 1.0}
    assert meta["action_space"] == {"type": "Discrete", "n": 4, "start": 0}
    names = [f"state.{k}" for k in policy.initial_state(1)]
    assert [x["name"] for x in meta["inputs"]] == ["obs", "episode_start", *names]
    assert [o["name"] for o in meta["outputs"]] == ["action", "logits", "value",
                                                   *(n.replace("state.", "next_state.") for n in names)]
    assert meta["outputs"][:3] == [{"name": "action", "dtype": "int64", "shape": ["batch"]},
                                   {"name": "logits", "dtype": "float32", "shape": ["batch", 4]},
                                   {"name": "value", "dtype": "float32", "shape": ["batch"]}]
    policy.train()
    export_onnx(policy, tmp_path / "y.onnx")
    assert policy.training, "export changed the caller's policy"
    init = np.load(tmp_path / "run" / "policy.initial_state.npz")
    for k, v in policy.initial_state(1).items():
        np.testing.assert_array_equal(init[k], v.numpy())
        assert meta["state"][k]["shape"] == list(v.shape[1:])
    main([f"checkpoint={ckpt}", f"out={tmp_path / 'x' / 'other.onnx'}"])
    assert (tmp_path / "x" / "other.onnx").is_file() and (tmp_path / "x" / "other.json").is_file()

    with pytest.raises(SystemExit, match="unknown format 'tflite'"):
        main([f"checkpoint={ckpt}", "format=tflite"])
    with pytest.raises(SystemExit, match="bad argument"):
        main([f"checkpoint={ckpt}", "outt=x.onnx"])
    with pytest.raises(SystemExit, match="no checkpoint"):
        main([f"checkpoint={tmp_path / 'missing'}"])


class _Cummax(Memory):
    """A memory using an op the ONNX exporter lacks (a running max over a one-step sequence)."""

    def __init__(self, input_size: int):
        super().__init__()
        self.output_size = input_size
        self.scale = torch.nn.Parameter(torch.ones(input_size))

    def initial_state(self, batch_size, device=None):
        return {"m": torch.zeros(batch_size, self.output_size, device=device)}

    def forward(self, x, state, episode_start, *, need_state=True):
        m = torch.where(episode_start[..., None], 0.0, torch.maximum(state["m"][:, None], x)).cummax(1).values
        return m * self.scale, {"m": m[:, -1]}


def test_a_memory_the_exporter_cannot_convert_fails_with_its_reason(tmp_path):
    register("_cummax_for_test")(_Cummax)
    try:
        policy = Policy(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2), memory="_cummax_for_test")
        with pytest.raises(ExportError, match=r"\(memory '_cummax_for_test'\) cannot be exported to ONNX: .*cummax"):
            export_onnx(policy, tmp_path / "p.onnx")
    finally:
        del MEMORIES["_cummax_for_test"]


def test_numpy_tmaze_of_the_example_is_the_passive_tmaze():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import onnx_tmaze
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    for episode in range(20):
        clue = int(rng.choice([-1, 1]))
        env = TMazeEnv(**TMAZE)
        obs, _ = env.reset(seed=episode, options={"clue": clue})
        x, y, c = np.zeros(1, int), np.zeros(1, int), np.array([clue])
        for t in range(TMAZE["corridor_length"] + 1):
            np.testing.assert_array_equal(onnx_tmaze.observe(x, y, c, t, TMAZE["corridor_length"])[0], obs)
            a = int(rng.integers(4)) if rng.random() < 0.5 else 0
            obs, reward, terminated, _, _ = env.step(a)
            x, y = onnx_tmaze.move(x, y, np.array([a]), TMAZE["corridor_length"])
        assert terminated and reward == float(y[0] == clue)


def test_example_runs_with_onnxruntime_and_numpy_only(tmp_path):
    path = export_onnx(tmaze_policy("gru"), tmp_path / "policy.onnx")
    script = ROOT / "examples" / "onnx_tmaze.py"
    code = (f"import sys, runpy; sys.modules['torch'] = None; sys.argv = ['onnx_tmaze.py', {str(path)!r}, '8']; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')")  # importing torch would fail
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "success rate over 8 episodes" in res.stdout
