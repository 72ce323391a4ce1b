"""Evaluating a policy: the task plays and sums up its episodes; AGILE's reward model, when
asked, judges their final states beside the level's own verdict."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl.agile.reward_model import RewardModelTrainer
from film_rl.errors import UserError
from film_rl.run.memory import MemoryProbe
from film_rl.tasks.base import Task
from film_rl.tasks.episodes import Episode, EvalResult, stack
from film_rl.tasks.holdout import Split

__all__ = ["FINAL_EVAL_SEED", "Episode", "EvalResult", "evaluate", "judge_final_states"]

#: the first seed of a run's final evaluation (``eval.json``): far from training's seeds, and what
#: ``film-rl evaluate`` plays by default, so that it gives ``eval.json``'s figures back
FINAL_EVAL_SEED = 1_000_000


def evaluate(
    model: PPO | RecurrentPPO,
    task: Task,
    episodes: int = 200,
    seed: int = 0,
    deterministic: bool = True,
    video_dir: Path | None = None,
    video_episodes: int | None = None,
    reward_model: RewardModelTrainer | None = None,
    progress: bool = False,
    split: Split | None = None,
    forget: bool = False,
) -> EvalResult:
    """Evaluate on the true environment reward, in the task's evaluation episodes.

    Every run, AGILE's included, plays the level's own episodes here (success ends them, ``done``
    does nothing), so AGILE and true-reward runs compare on the same terms. With
    ``reward_model``, D also judges each episode's final state, which is a goal state exactly
    when the episode succeeded: its precision and recall go to ``EvalResult.reward_model``.

    ``video_episodes``: how many of the first episodes to record (default: the task's).
    ``progress``: print a line on stderr every tenth of the episodes (stdout stays the result's).
    ``split``: of a run with held-out instructions, the missions to play (``train``, ``heldout``
    or ``all``); by default ``episodes`` of each split, the training split's figures on top and
    every split's in :attr:`EvalResult.splits` (videos of the held-out split in ``VIDEO_DIR/heldout``).
    ``forget``: an LSTM policy's memory reset at every step, so that the same episodes with and
    without it say what the memory is worth. An LSTM policy's result also says what its memory did
    in every split played (:attr:`EvalResult.memory`): a memory that adds next to nothing to the
    features, or whose gates are saturated, cannot be worth much, whatever ``forget`` shows.
    """
    held_out = task.splits() != ("all",)
    if split is not None and split not in (*task.splits(), "all"):
        raise UserError(f"--split {split}: this run holds no instruction out (set env.holdout to train one that does)")
    splits = task.splits() if split is None else (split,)
    wanted = task.default_video_episodes() if video_episodes is None else video_episodes
    record = min(wanted, episodes) if video_dir is not None else 0
    results: dict[str, EvalResult] = {}
    first: list[Episode] = []
    heldout_played: list[Episode] = []
    probe = MemoryProbe(model.policy) if isinstance(model, RecurrentPPO) else None
    with probe if probe is not None else nullcontext():
        for name in splits:
            label = f"evaluation ({name})" if held_out else "evaluation"
            shown = EpisodeProgress(episodes, label) if progress and episodes >= EpisodeProgress.lines else None
            played = task.play(
                model, episodes, seed, deterministic, record=record, progress=shown, split=name, forget=forget
            )
            if video_dir is not None:
                task.write_videos(played[:record], video_dir if name == splits[0] else video_dir / name)
            results[name] = task.summarize(played)
            first = first or played
            if name == "heldout":
                heldout_played = played
    result = results[splits[0]]
    result.memory = probe.figures() if probe is not None else None
    if held_out:
        result.split = splits[0]
        result.splits = {name: r.headline() for name, r in results.items()}
        result.heldout = task.held_out_instructions()
        if "heldout" in splits:
            result.per_heldout = success_per_heldout(task, heldout_played)
    if reward_model is not None:
        result.reward_model = judge_final_states(reward_model, first)
    return result


def success_per_heldout(task: Task, played: list[Episode]) -> dict[str, dict[str, float]]:
    """The held-out split's success per held-out item (a pair, or a mission) its missions match:
    which unseen compositions the policy gets, which the split's mean hides."""
    outcomes: dict[str, list[bool]] = {item: [] for item in task.held_out_instructions()}
    for episode in played:
        for item in task.held_out_by(episode.mission):
            outcomes[item].append(episode.success)
    return {item: {"success_rate": float(np.mean(won)), "episodes": len(won)} for item, won in outcomes.items() if won}


class EpisodeProgress:
    """An evaluation's progress as plain lines, one every tenth of its episodes: episodes done,
    episodes per second and time left. Due by episodes, not time, so the same evaluation prints
    the same lines on any machine."""

    lines = 10

    def __init__(self, episodes: int, label: str = "evaluation") -> None:
        self.started = time.perf_counter()
        self.every = max(1, episodes // self.lines)
        self.label = label

    def __call__(self, done: int, episodes: int) -> None:
        if done % self.every and done != episodes:
            return
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (episodes - done) / rate if rate > 0 else 0.0
        minutes, seconds = divmod(round(left), 60)
        print(
            f"{self.label}: {done:,}/{episodes:,} episodes ({100 * done // episodes}%)  "
            f"{rate:,.1f} episodes/s  {minutes}:{seconds:02d} left",
            file=sys.stderr,
            flush=True,
        )


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
