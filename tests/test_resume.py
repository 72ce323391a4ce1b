"""Interrupting a run saves a checkpoint; `film-rl train --resume` continues it to the budget."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, cli_env, only_run_dir, run_cli
from stable_baselines3 import PPO

ARGS = [
    "env.n_envs=2",
    "env.vec_env=subproc",  # the workers must survive the Ctrl-C that stops the trainer
    "agent.algorithm.n_steps=64",
    "agent.algorithm.batch_size=64",
    "agent.algorithm.n_epochs=1",
    "budget.timesteps=10000000",
    "checkpoint.freq=0",
    "eval.episodes=4",
    "logging.progress_bar=false",
]


def _wait_for_updates(run_dir_parent, proc, rows=3, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        csvs = list(run_dir_parent.glob("*/*/progress.csv"))
        if csvs and len(csvs[0].read_text().splitlines()) > rows:
            return csvs[0].parent
        time.sleep(0.5)
    pytest.fail("training made no progress")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_a_checkpoint_and_resume_continues(tmp_path, sig):
    proc = subprocess.Popen(
        [sys.executable, "-m", "film_rl", "train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *ARGS],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    # off a terminal too, the first line says where the run is, while it runs (not buffered to the end)
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=120)
    if not first:
        proc.kill()
    assert first and first[0].startswith(f"training in {tmp_path}"), first
    run_dir = _wait_for_updates(tmp_path, proc)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C in a terminal reaches the whole process group
    else:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert "resume with: film-rl train --resume" in stderr and "Traceback" not in stderr

    assert not (run_dir / "model.zip").exists()
    (checkpoint,) = (run_dir / "checkpoints").glob("step_*.zip")
    steps = int(checkpoint.stem.split("_")[1])
    assert PPO.load(checkpoint).num_timesteps == steps >= 3 * 128
    first_leg = (run_dir / "progress.csv").read_text()

    target = steps + 256
    done = run_cli("train", "--resume", str(run_dir), f"budget.timesteps={target}", "env.vec_env=dummy")
    assert done.returncode == 2 and "cannot change 'env.vec_env'" in done.stderr
    done = run_cli("train", "--resume", str(run_dir), f"budget.timesteps={target}")
    assert done.returncode == 0, done.stderr
    assert only_run_dir(tmp_path) == run_dir
    model = PPO.load(run_dir / "model.zip")
    assert target <= model.num_timesteps < target + 128  # counted on from the checkpoint, not from zero
    assert (run_dir / "progress.csv").read_text() == first_leg  # the first leg's curve is kept
    assert (run_dir / "progress.1.csv").is_file() and (run_dir / "eval.json").is_file()

    again = run_cli("train", "--resume", str(run_dir))
    assert again.returncode == 2 and "already reached its budget" in again.stderr


def test_resumed_run_goes_on_counting_episodes(tmp_path):
    """BabyAI's episodes-to-0.99 counts every episode of a run, however many legs it took."""
    import json

    from conftest import TINY

    done = run_cli("train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY)
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(tmp_path)
    first = json.loads((run_dir / "stats.json").read_text())
    assert first["episodes"] > 0 and len(first["recent"]) == min(first["episodes"], 100)
    resumed = run_cli("train", "--resume", str(run_dir), "budget.timesteps=512")
    assert resumed.returncode == 0, resumed.stderr
    second = json.loads((run_dir / "stats.json").read_text())
    assert second["episodes"] > first["episodes"]
    assert set(first["episodes_to"]) <= set(second["episodes_to"])  # what was reached stays reached
    logged = (run_dir / "progress.1.csv").read_text().splitlines()
    episodes_column = logged[0].split(",").index("rollout/episodes")
    assert int(float(logged[1].split(",")[episodes_column])) > first["episodes"]
