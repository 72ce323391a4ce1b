"""Shared helpers: run the real `film-rl` command line in a subprocess, as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli_env(**extra: str | None) -> dict[str, str]:
    """The test process's environment, wandb off, with ``extra`` set (or removed where None)."""
    env = dict(os.environ, WANDB_MODE="disabled", WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(*args: str, timeout: float = 300, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "film_rl", *args],
        cwd=ROOT,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_dir(runs_dir: Path) -> Path:
    found = [p for p in runs_dir.glob("*/*") if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def eval_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.json").read_text())


#: a tiny but complete training run: 2 workers in-process, a few PPO updates, a short final eval
TINY = [
    "env.n_envs=2",
    "env.vec_env=dummy",
    "agent.algorithm.n_steps=64",
    "agent.algorithm.batch_size=64",
    "agent.algorithm.n_epochs=1",
    "budget.timesteps=256",
    "eval.episodes=4",
    "eval.freq=128",
    "eval.freq_episodes=2",
    "logging.progress_bar=false",
    "threads=1",  # two torch threads on a 2-core machine contend: 18 s instead of 5 for this run
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished quickstart-shaped run shared by the read-only tests."""
    runs = tmp_path_factory.mktemp("runs")
    done = run_cli("train", "experiments/quickstart.yaml", f"runs_dir={runs}", *TINY)
    assert done.returncode == 0, done.stderr
    return only_run_dir(runs)
