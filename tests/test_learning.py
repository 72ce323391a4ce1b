"""Short real training runs through the CLI: PPO and RecurrentPPO must actually learn.

BabyAI-GoToObjS4 (a 4x4 room, one object) is small enough to learn in seconds: an untrained
policy succeeds in about a quarter of the episodes (in ~15 steps), a trained one in nearly all
(in ~4 steps).
"""

import pytest
from conftest import eval_json, only_run_dir, run_cli

FAST = [
    "env.levels=[BabyAI-GoToObjS4-v0]",
    "env.vec_env=dummy",
    "agent.algorithm.learning_rate=1e-3",
    "agent.algorithm.n_steps=64",
    "eval.episodes=100",
    "logging.progress_bar=false",
]


@pytest.mark.parametrize("agent,timesteps", [("film-cnn", 16000), ("film-lstm", 20000)])
def test_policy_learns_through_the_cli(tmp_path, agent, timesteps):
    budget = f"budget.timesteps={timesteps}"
    done = run_cli("train", "experiments/quickstart.yaml", f"agent={agent}", budget, f"runs_dir={tmp_path}", *FAST)
    assert done.returncode == 0, done.stderr
    assert "success_rate=" in done.stdout and "run directory:" in done.stdout
    result = eval_json(only_run_dir(tmp_path))
    assert result["success_rate"] >= 0.8, result
    assert result["mean_episode_length"] < 8, result
