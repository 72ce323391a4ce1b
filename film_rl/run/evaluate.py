"""Evaluating a policy: the task plays and sums up its episodes; AGILE's reward model, when
asked, judges their final states beside the level's own verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl.agile.reward_model import RewardModelTrainer
from film_rl.tasks.base import Task
from film_rl.tasks.episodes import Episode, EvalResult, stack

__all__ = ["Episode", "EvalResult", "evaluate", "judge_final_states"]


def evaluate(
    model: PPO | RecurrentPPO,
    task: Task,
    episodes: int = 200,
    seed: int = 0,
    deterministic: bool = True,
    video_dir: Path | None = None,
    video_episodes: int | None = None,
    reward_model: RewardModelTrainer | None = None,
) -> EvalResult:
    """Evaluate on the true environment reward, in the task's evaluation episodes.

    Every run, AGILE's included, plays the level's own episodes here (success ends them, ``done``
    does nothing), so AGILE and true-reward runs compare on the same terms. With
    ``reward_model``, D also judges each episode's final state, which is a goal state exactly
    when the episode succeeded: its precision and recall go to ``EvalResult.reward_model``.

    ``video_episodes``: how many of the first episodes to record (default: the task's).
    """
    wanted = task.default_video_episodes() if video_episodes is None else video_episodes
    record = min(wanted, episodes) if video_dir is not None else 0
    played = task.play(model, episodes, seed, deterministic, record=record)
    if video_dir is not None:
        task.write_videos(played[:record], video_dir)
    result = task.summarize(played)
    if reward_model is not None:
        result.reward_model = judge_final_states(reward_model, played)
    return result


def judge_final_states(reward_model: RewardModelTrainer, episodes: list[Episode]) -> dict[str, float]:
    """D's verdict on each episode's final state against the level's: precision, recall, accuracy."""
    finals = [ep.final_obs for ep in episodes if ep.final_obs is not None]
    truth = np.array([ep.success for ep in episodes if ep.final_obs is not None])
    said = reward_model.reward(stack(finals)) > 0 if finals else np.zeros(0, bool)  # type: ignore[arg-type]
    true_positives = float(np.sum(said & truth))
    return {
        "precision": true_positives / max(1.0, float(said.sum())),
        "recall": true_positives / max(1.0, float(truth.sum())),
        "accuracy": float(np.mean(said == truth)) if len(truth) else float("nan"),
        "threshold": reward_model.threshold,
        "goal_states": float(truth.sum()),
        "rewarded_states": float(said.sum()),
    }
