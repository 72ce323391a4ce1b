"""AGILE in a training run: done-terminated episodes, the reward model's reward, and the CLI end to end."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TINY, only_run_dir, run_cli
from minigrid.utils.baby_ai_bot import BabyAIBot

from film_rl.agile.goals import make_goals
from film_rl.agile.reward_model import Discriminator, RewardModelTrainer
from film_rl.agile.training import RewardModelReward
from film_rl.tasks.babyai_envs import DoneActionEnds, make_vec_env
from film_rl.tasks.instructions import Vocabulary

LEVEL = "BabyAI-GoToRedBallGrey-v0"
DONE = 6  # minigrid's Actions.done


def _bot_to_goal(env: gym.Env, seed: int) -> list[tuple[float, bool, dict]]:
    """Follow BabyAI's bot until the level's verifier reports success; (reward, terminated, info) per step."""
    env.reset(seed=seed)
    bot = BabyAIBot(env.unwrapped)
    steps = []
    while env.unwrapped.instrs.verify(-1) != "success" and len(steps) < 60:
        _, reward, terminated, truncated, info = env.step(bot.replan())
        steps.append((float(reward), terminated, info))
        if terminated or truncated:
            break
    return steps


def test_reaching_the_goal_does_not_end_an_agile_episode_but_done_does():
    env = DoneActionEnds(gym.make(LEVEL))
    steps = _bot_to_goal(env, seed=3)
    assert steps and not any(terminated for _, terminated, _ in steps), "the verifier's success must not end it"
    assert all(reward == 0.0 for reward, _, _ in steps), "the level's reward must never reach the policy"
    _, reward, terminated, _, info = env.step(DONE)
    assert terminated and reward == 0.0
    assert info["is_success"] is True  # the ground truth is kept for logging


def test_done_away_from_the_goal_is_a_failure():
    env = DoneActionEnds(gym.make(LEVEL))
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step(DONE)
    assert terminated and reward == 0.0 and info["is_success"] is False


def test_true_reward_at_done_pays_only_a_done_after_the_goal():
    """AGILE's episodes with the level's verdict as the reward: the paper's RL baseline."""
    env = DoneActionEnds(gym.make(LEVEL), reward_success=True)
    steps = _bot_to_goal(env, seed=3)
    assert steps and all(reward == 0.0 for reward, _, _ in steps)  # reaching the goal is not enough
    _, reward, terminated, _, info = env.step(DONE)
    assert terminated and reward == 1.0 and info["is_success"] is True
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step(DONE)
    assert terminated and reward == 0.0 and info["is_success"] is False


def test_true_reward_at_done_is_not_paid_after_walking_on_past_the_goal():
    """BabyAI's rule: ``done`` must be said in the goal state, as AGILE's reward model judges it."""
    env = DoneActionEnds(gym.make(LEVEL), reward_success=True)
    assert _bot_to_goal(env, seed=3)
    left = int(env.unwrapped.actions.left)
    for _ in range(2):  # face away from the ball: no longer in a goal state
        assert env.step(left)[1] == 0.0
    _, reward, terminated, _, info = env.step(DONE)
    assert terminated and reward == 0.0
    assert info["is_success"] is True  # it did reach the goal; the level's verdict is still logged


def test_true_reward_in_done_ended_episodes_through_the_cli(tmp_path):
    done = run_cli("train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY, "env.episode_end=done")
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(tmp_path)
    assert "success_rate" in json.loads((run_dir / "eval.json").read_text())  # judged in the level's own episodes
    bad = run_cli("train", "experiments/atari-4game.yaml", f"runs_dir={tmp_path}", "env.episode_end=done")
    # `done` is minigrid's action: Atari's env section has no such setting
    assert bad.returncode == 2 and "unknown config key 'env.episode_end'" in bad.stderr


def _trainer(bias: float) -> RewardModelTrainer:
    vocab = Vocabulary.babyai()
    goals = make_goals([LEVEL], 10, seed=0, vocab=vocab)
    trainer = RewardModelTrainer(goals, Discriminator(len(vocab)))
    final = trainer.model.head[-1]
    torch.nn.init.zeros_(final.weight)
    torch.nn.init.constant_(final.bias, bias)  # D says "goal" (bias > 0) or "not a goal" everywhere
    trainer.steps = 1  # as if trained: an untrained D's verdicts are not rewarded
    return trainer


@pytest.mark.parametrize("bias", [8.0, -8.0])
def test_reward_model_reward_replaces_the_level_reward_and_keeps_the_true_success(bias):
    trainer = _trainer(bias)
    venv = RewardModelReward(
        make_vec_env([LEVEL], trainer.train_goals.vocab, 2, seed=0, done_action_ends=True), trainer
    )
    venv.reset()
    rng = np.random.default_rng(0)
    seen_done = 0
    for _ in range(200):
        actions = rng.integers(0, 7, 2)
        _, rewards, dones, infos = venv.step(actions)
        for i in range(2):
            if dones[i] and actions[i] == DONE:
                seen_done += 1
                assert rewards[i] == (1.0 if bias > 0 else 0.0)
                assert "is_success" in infos[i] and infos[i]["reward_model_prob"] == pytest.approx(
                    1 / (1 + np.exp(-bias)), rel=1e-4
                )
            else:
                assert rewards[i] == 0.0  # only a claimed goal is rewarded
    assert seen_done > 5
    venv.close()


def test_an_untrained_reward_model_rewards_nothing():
    trainer = _trainer(8.0)
    trainer.steps = 0
    venv = RewardModelReward(
        make_vec_env([LEVEL], trainer.train_goals.vocab, 2, seed=0, done_action_ends=True), trainer
    )
    venv.reset()
    for _ in range(20):
        _, rewards, _, _ = venv.step(np.full(2, DONE))
        assert not rewards.any()
    venv.close()


AGILE_TINY = [
    *TINY,
    "agent.reward_model.goal_episodes=20",
    "agent.reward_model.warmup_updates=4",
    "checkpoint.freq=128",
]


def test_agile_run_end_to_end_through_the_cli(tmp_path):
    runs = tmp_path / "runs"
    done = run_cli("train", "experiments/agile-gotolocal.yaml", f"runs_dir={runs}", *AGILE_TINY)
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(runs)
    for name in ("model.zip", "reward_model.pt", "goals.npz", "eval.json"):
        assert (run_dir / name).exists(), name
    assert (run_dir / "checkpoints" / "step_256.reward_model.pt").exists()
    header = (run_dir / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("reward_model/loss", "reward_model/accuracy_heldout_goals", "reward_model/false_positive_rate"):
        assert key in header
    assert "rollout/success_rate" in header  # the level's own success, logged beside D's metrics

    shown = run_cli("evaluate", str(run_dir), "--episodes", "6", "--reward-model", "--json")
    assert shown.returncode == 0, shown.stderr
    judged = json.loads(shown.stdout)["reward_model"]
    assert set(judged) >= {"precision", "recall", "accuracy"} and 0.0 <= judged["accuracy"] <= 1.0

    steps_before = torch.load(run_dir / "reward_model.pt", weights_only=True)["steps"]
    resumed = run_cli("train", "--resume", str(run_dir), "budget.timesteps=384")
    assert resumed.returncode == 0, resumed.stderr
    assert (
        torch.load(run_dir / "reward_model.pt", weights_only=True)["steps"] > steps_before
    )  # D picked up where it was


def test_reward_model_flag_on_an_ordinary_run_is_a_clear_error(tiny_run):
    done = run_cli("evaluate", str(tiny_run), "--episodes", "2", "--reward-model")
    assert done.returncode == 2
    assert "not an AGILE run" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bad_reward_model_settings_are_rejected(tmp_path):
    done = run_cli(
        "train", "experiments/agile-gotolocal.yaml", f"runs_dir={tmp_path}", *TINY, "agent.reward_model.rho=1.5"
    )
    assert done.returncode == 2 and "rho" in done.stderr
