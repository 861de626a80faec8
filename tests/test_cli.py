"""The command line as users type it: validation errors, multirun directories."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

ROOT = Path(__file__).resolve().parent.parent
TINY = ["algo.total_steps=256", "algo.num_envs=4", "algo.num_steps=16", "algo.seq_len=8", "algo.num_minibatches=2",
        "model.memory_kwargs.hidden_size=8", "eval_episodes=2", "env.kwargs.corridor_length=3", "progress=false"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlmem.train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_misspelt_key_and_wrong_type_fail_clearly(tmp_path):
    r = run("algo.lrr=0.1", f"run_dir={tmp_path}")
    assert r.returncode != 0 and "Key 'lrr' not in 'PPOConfig'" in r.stderr
    r = run("algo.num_envs=many", f"run_dir={tmp_path}")
    assert r.returncode != 0 and "algo.num_envs" in r.stderr
    r = run("model.memory=lsmt", *TINY, f"run_dir={tmp_path}")
    assert r.returncode != 0 and "unknown memory 'lsmt'" in r.stderr and "lstm" in r.stderr


def test_multirun_puts_each_run_in_its_own_dir_and_resumes_there(tmp_path):
    r = run("-m", "model=mlp,gru", "seed=0,1", *TINY, f"run_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    ckpts = sorted(tmp_path.glob("*/checkpoints/latest.pt"))
    assert len(ckpts) == 4, [str(c) for c in tmp_path.iterdir()]
    assert len({c.parent.parent for c in ckpts}) == 4
    # the same sweep extended with resume=true continues each run in its own dir
    extended = [a.replace("algo.total_steps=256", "algo.total_steps=512") for a in TINY]
    r = run("-m", "model=mlp,gru", "seed=0,1", *extended, "resume=true", f"run_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(tmp_path.glob("*/checkpoints/latest.pt")) == ckpts
    assert r.stdout.count("resumed from") == 4


def test_user_errors_end_with_one_line(tmp_path):
    for args, says in [
        (["env.id=rlmem/TMazz-v0", *TINY], "Unknown environment id 'rlmem/TMazz-v0'"),
        (["algo=offline", "algo.dataset_id=nowhere/none-v0", f"algo.data_dir={tmp_path / 'data'}"],
         "no dataset 'nowhere/none-v0'"),
    ]:
        r = run(*args, f"run_dir={tmp_path / 'run'}")
        assert r.returncode == 2 and says in r.stderr, r.stderr[-2000:]
        assert "Traceback" not in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error: ")
    r = run("algo.num_envs=many", f"run_dir={tmp_path / 'run'}")  # a bad override: Hydra's own message
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_a_refused_resume_leaves_the_run_record_as_trained(tmp_path):
    assert run(*TINY, f"run_dir={tmp_path}").returncode == 0
    record = (tmp_path / "config.yaml").read_text()
    ckpt = (tmp_path / "checkpoints" / "latest.pt").read_bytes()
    r = run(*TINY, "algo.lr=0.5", "resume=true", f"run_dir={tmp_path}")
    assert r.returncode == 2 and "config changed (algo.lr: 0.0003 -> 0.5)" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert (tmp_path / "config.yaml").read_text() == record and "lr: 0.0003" in record
    assert (tmp_path / "checkpoints" / "latest.pt").read_bytes() == ckpt


def test_progress_in_a_log_file_is_a_few_lines(tmp_path):
    r = run(*TINY[:-1], "progress=true", f"run_dir={tmp_path}")  # stderr is a pipe, not a terminal
    assert r.returncode == 0
    out = r.stdout + r.stderr
    assert "\r" not in out and "it/s" not in out
    assert "step 256/256 (100%) steps/s=" in out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_saves_its_iteration_even_started_with_sigint_ignored(tmp_path, sig):
    from rlmem.checkpoint import load_checkpoint

    # as bash starts `nohup python -m rlmem.train ... &` from a script: SIGINT ignored, which Python keeps
    cmd = ["bash", "-c", 'trap "" INT; exec "$@"', "_", sys.executable, "-m", "rlmem.train", *TINY,
           "algo.total_steps=100000000", "algo.checkpoint_every=1000000", f"run_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log, deadline = tmp_path / "train.log", time.monotonic() + 120
    try:
        while not (log.is_file() and "process(es)" in log.read_text()):  # the loop has started
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        time.sleep(2.0)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    interrupted = re.search(r"interrupted at iteration (\d+)", log.read_text())
    assert interrupted, log.read_text()[-2000:]
    # the interruption's save (checkpoint_every saves no other): the iteration in progress, re-run on resume
    assert load_checkpoint(tmp_path)["trainer"]["iteration"] == int(interrupted.group(1))


def test_import_rlmem_has_no_process_wide_side_effects():
    code = ("import os, sys, rlmem; "
            "print(sorted(m for m in ('envs', 'popgym', 'mujoco') if m in sys.modules), "
            "os.environ.get('MUJOCO_GL'), os.environ.get('LP_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "LP_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.stdout.strip() == "[] None None", r.stdout + r.stderr


def test_submitit_local_sweep_runs_each_job_in_its_own_dir(tmp_path):
    r = run("-m", "hydra/launcher=submitit_local", "seed=1,2", "model=mlp", *TINY, f"run_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    ckpts = sorted(tmp_path.glob("*/checkpoints/latest.pt"))
    assert len(ckpts) == 2 and {c.parent.parent.name.split("_")[0] for c in ckpts} == {"0", "1"}
    assert all((c.parent.parent / "eval.json").is_file() for c in ckpts)


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    from rlmem.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                                           "hydra.launcher.gpus_per_node=1", "hydra.launcher.cpus_per_task=8",
                                           "hydra.launcher.timeout_min=600", "hydra.launcher.array_parallelism=10",
                                           "run_dir=x"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.cpus_per_task, launcher.timeout_min,
            launcher.array_parallelism) == ("gpu", 1, 8, 600, 10)
    with pytest.raises(ConfigCompositionException), \
            initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        compose("config", overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partiton=gpu", "run_dir=x"],
                return_hydra_config=True)


def test_sweep_dir_names_leave_out_every_key_a_resume_may_change():
    from omegaconf import OmegaConf

    from rlmem.run import RESUMABLE_CHANGES

    hydra = OmegaConf.load(ROOT / "conf" / "config.yaml").hydra
    assert RESUMABLE_CHANGES <= set(hydra.job.config.override_dirname.exclude_keys)
