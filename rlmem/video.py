"""Record a policy's episodes as a video (MP4 through ffmpeg, or GIF), from the env's ``render()``.

Used by ``python -m rlmem.evaluate ... record=out.mp4``; envs must support ``render_mode="rgb_array"``
(the manipulation tasks render ``render_size`` square frames from their camera).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from rlmem.policy import Policy

FORMATS = (".mp4", ".gif")


def record_episodes(policy: Policy, env_id: str, env_kwargs: dict[str, Any], path: str | Path, episodes: int = 1,
                    fps: int = 20, seed: int = 0, deterministic: bool = True) -> dict[str, Any]:
    """Play ``episodes`` episodes one after another (seeds ``seed``, ``seed + 1``, ...) and write their frames
    to ``path`` (.mp4 or .gif). Returns the episodes' returns and successes."""
    import imageio.v2 as imageio

    from envs import make_env

    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"record={path}: the file must end in one of {FORMATS}")
    if episodes < 1:
        raise ValueError(f"record_episodes must be >= 1, got {episodes}")
    env = make_env(env_id, {**env_kwargs, "render_mode": "rgb_array"})
    if "rgb_array" not in env.metadata.get("render_modes", []):
        env.close()
        raise ValueError(f"{env_id} does not render rgb_array frames: nothing to record")
    policy.check_spaces(env.observation_space, env.action_space)
    frames: list[ArrayLike] = []  # (imageio's stubs take a list of ArrayLike)
    returns, successes = [], []
    try:
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + e)
            info: dict[str, Any]
            state, start, done, ret, info = None, np.array([True]), False, 0.0, {}
            frames.append(cast(np.ndarray, env.render()))  # render_mode="rgb_array": one frame array per call
            while not done:
                action, state = policy.predict(obs, state, start, deterministic)
                obs, reward, term, trunc, info = env.step(action)
                frames.append(cast(np.ndarray, env.render()))
                ret += float(reward)
                start, done = np.array([False]), term or trunc
            returns.append(ret)
            successes.append(info.get("success"))
    finally:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimwrite(path, frames, format="GIF", duration=1000 / fps, loop=0)
    else:
        imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
    return {"video": str(path), "frames": len(frames), "returns": returns, "successes": successes}
