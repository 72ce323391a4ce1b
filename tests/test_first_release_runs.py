"""Run directories written by film-rl 0.1.0, before the package was split into subpackages, still
evaluate and resume: their model zips name the policy classes by the paths of that release.

The fixtures were made by that release with tiny networks (256 steps, 2 envs, 64-step rollouts):
``film-rl train experiments/quickstart.yaml name=babyai-film-cnn agent.channels=[4,8] ...``, the
same with ``agent=film-lstm``, and ``experiments/atari-4game.yaml`` on Pong and Breakout with
36-pixel screens; only the files a run needs to be evaluated and resumed were kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl import cli
from film_rl.config import compose
from film_rl.run.run_dir import read_config

FIXTURES = Path(__file__).parent / "fixtures" / "runs-first-release"
RUNS = sorted(p.name for p in FIXTURES.iterdir())


def test_the_fixtures_cover_both_families_and_both_policies() -> None:
    assert RUNS == ["atari-film-cnn", "babyai-film-cnn", "babyai-film-lstm"]


@pytest.mark.parametrize("name", RUNS)
def test_a_first_release_run_still_evaluates(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    assert cli.main(["evaluate", str(run), "--episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 2


def test_a_first_release_run_resumes_and_loads_with_plain_ppo(tmp_path: Path) -> None:
    run = tmp_path / "babyai-film-cnn"
    shutil.copytree(FIXTURES / "babyai-film-cnn", run)
    assert cli.main(["train", "--resume", str(run), "budget.timesteps=384", "logging.wandb=disabled"]) == 0
    assert PPO.load(run / "model.zip", device="cpu").num_timesteps == 384
    assert json.loads((run / "eval.json").read_text())["episodes"] == 2


def test_an_lstm_run_saved_before_critic_memory_reads_as_the_shared_critic_it_had(tmp_path: Path) -> None:
    """``agent.critic_memory`` defaults to ``own`` now; a run saved before the option existed had
    sb3-contrib's shared, stopped-gradient critic, and its config must say so."""
    assert read_config(FIXTURES / "babyai-film-lstm").agent.critic_memory == "shared"
    model = RecurrentPPO.load(FIXTURES / "babyai-film-lstm" / "model.zip", device="cpu")
    assert model.policy.shared_lstm and model.policy.lstm_critic is None  # what the zip was built with
    assert (
        compose({"name": "x", "env": "babyai-gotoredballgrey", "agent": "film-lstm"}, []).agent.critic_memory == "own"
    )
