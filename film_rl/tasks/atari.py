"""The multi-game Atari family: ALE games, whose instruction is the game id.

The env (one env over several games, preprocessing done once) is
:mod:`film_rl.tasks.atari_envs`; reference scores for human normalisation are
:mod:`film_rl.tasks.atari_scores`.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from film_rl.config import AtariAgentConfig, AtariEnvConfig, ExperimentConfig
from film_rl.errors import UserError
from film_rl.model.policies import GameFeatures
from film_rl.tasks.atari_envs import check_games, game_name, make_atari_env
from film_rl.tasks.atari_scores import GameScores, human_normalized
from film_rl.tasks.base import Task, TrainingStats
from film_rl.tasks.episodes import Episode, EvalResult
from film_rl.tasks.instructions import Vocabulary
from film_rl.tasks.video import write_game_videos


class AtariTask(Task):
    """Several ALE games, one policy; the game id, embedded, generates every conv's FiLM."""

    kind = "atari"
    env: AtariEnvConfig
    agent: AtariAgentConfig
    level_noun = "game"
    instruction_noun = "games"

    def __init__(self, config: ExperimentConfig, vocab: Vocabulary) -> None:
        super().__init__(config, vocab)
        assert isinstance(self.env, AtariEnvConfig) and isinstance(self.agent, AtariAgentConfig)

    def validate(self) -> None:
        """Known games, one worker per game when pinned, every game in every evaluation."""
        env, config = self.env, self.config
        check_games(env.levels)
        if env.sampling == "worker" and env.n_envs < len(env.levels):
            raise UserError(
                f"env.sampling=worker pins one game per worker, but {env.n_envs} workers cannot play "
                f"{len(env.levels)} games; use env.n_envs >= {len(env.levels)} or env.sampling=episode"
            )
        if len(self.agent.channels) != 3:
            raise UserError(f"agent.channels: the Nature CNN has 3 convs, got {len(self.agent.channels)} widths")
        if config.budget.stop_at_success is not None:
            raise UserError("budget.stop_at_success: Atari games report returns, not success; leave it unset")
        if config.eval.episodes < len(env.levels):
            raise UserError(
                f"eval.episodes ({config.eval.episodes}) must be at least the number of games ({len(env.levels)}), "
                "so that the evaluation plays every game"
            )
        if config.eval.freq > 0 and config.eval.freq_episodes < len(env.levels):
            raise UserError(
                f"eval.freq_episodes ({config.eval.freq_episodes}) must be at least the number of games "
                f"({len(env.levels)}), so that every periodic evaluation plays every game"
            )

    def worker(self, levels: list[str], *, done_action_ends: bool = False) -> Callable[[], gym.Env]:
        if done_action_ends:
            raise UserError("Atari games have no done action to end an episode with")
        return functools.partial(make_atari_env, list(self.env.levels), self.env.atari, play=levels)

    def evaluation_env(self, render: bool = False) -> gym.Env:
        """Whole games, raw rewards, ALE's 30-minute cap (no life-loss ends)."""
        render_mode = "rgb_array" if render else None
        return make_atari_env(self.env.levels, self.env.atari, training=False, render_mode=render_mode)

    def min_episodes(self) -> int:
        return len(self.env.levels)

    def episode_options(self, episode: int) -> dict[str, Any]:
        """Episode ``i`` plays game ``i mod K``: every game equally often, in a fixed order."""
        return {"game": episode % len(self.env.levels)}

    def label(self, episodes: list[Episode]) -> list[Episode]:
        games = self.env.levels
        for i, ep in enumerate(episodes):
            ep.level = game_name(games[i % len(games)])
        return episodes

    def policy_kwargs(self) -> dict[str, Any]:
        """The FiLM-ed Nature CNN over [0, 1] frames, conditioned on the game id."""
        agent = self.agent
        return {
            "features_extractor_class": GameFeatures,
            "features_extractor_kwargs": {
                "conditioning": agent.conditioning,
                "channels": tuple(agent.channels),
                "instruction_dim": agent.instruction_dim,
                "features_dim": agent.features_dim,
            },
            "normalize_images": True,
        }

    def training_stats(self) -> GameStats:
        return GameStats(self.config.budget.success_window)

    def summarize(self, episodes: list[Episode]) -> EvalResult:
        return summarize_per_game(episodes)

    def default_video_episodes(self) -> int:
        return len(self.env.levels)  # one game each

    def write_videos(self, episodes: list[Episode], out_dir: Path) -> list[Path]:
        return write_game_videos(episodes, out_dir)

    def fixed_instructions(self) -> list[tuple[str, np.ndarray, dict[str, str]]]:
        """Every game of the suite; its instruction is its index in the suite."""
        names = [game_name(g) for g in self.env.levels]
        return [(name, np.array([i], np.int64), {"game": name}) for i, name in enumerate(names)]


def summarize_per_game(episodes: list[Episode]) -> EvalResult:
    """Per-game figures of finished Atari episodes (``Episode.level`` holds the game's name)."""
    by_game: dict[str, list[Episode]] = defaultdict(list)
    for ep in episodes:
        by_game[ep.level].append(ep)
    per_game: dict[str, dict[str, float]] = {}
    for game, played in by_game.items():
        returns = [ep.ret for ep in played]
        figures = {
            "episodes": float(len(played)),
            "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)),
            "mean_episode_length": float(np.mean([ep.length for ep in played])),
        }
        score = human_normalized(game, figures["mean_return"])
        if not np.isnan(score):
            figures["human_normalized"] = score
        per_game[game] = figures
    scores = [f["human_normalized"] for f in per_game.values() if "human_normalized" in f]
    return EvalResult(
        success_rate=None,
        mean_return=float(np.mean([ep.ret for ep in episodes])),
        mean_episode_length=float(np.mean([ep.length for ep in episodes])),
        episodes=len(episodes),
        per_game=per_game,
        human_normalized={"mean": float(np.mean(scores)), "median": float(np.median(scores))} if scores else None,
    )


class GameStats(TrainingStats):
    """Per-game returns of whole Atari games, unclipped, and their human-normalized scores.

    Reads the ``info["episode"]`` that :class:`film_rl.tasks.atari_envs.GameMonitor` writes under the life-loss
    and clipping wrappers, so each entry is a whole game's raw score. Logs, every rollout,
    ``rollout/ep_return/<game>``, ``rollout/human_normalized/<game>``, their mean and median across
    games (``rollout/human_normalized_mean`` / ``_median``), ``rollout/episodes/<game>`` and
    ``rollout/episodes``; SB3's own ``rollout/ep_rew_mean`` mixes the games.

    :param window: most recent games kept per game in the rolling means.
    """

    def __init__(self, window: int = 100) -> None:
        super().__init__()
        self.scores = GameScores(window)
        self.episodes = 0
        self.episodes_to: dict[float, int] = {}  # BabyAI's success metric has no Atari counterpart

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            episode = info.get("episode")
            if episode is not None and "game" in episode:
                self.scores.add(str(episode["game"]), float(episode["r"]))
                self.episodes += 1
        return True

    def headline(self) -> str:
        summary = self.scores.summary()
        mean = summary.get("human_normalized_mean")
        return "" if mean is None else f"human-normalized {mean:.2f}"

    def _on_rollout_end(self) -> None:
        for key, value in self.scores.summary().items():
            self.logger.record(f"rollout/{key}", value)
        self.logger.record("rollout/episodes", self.episodes)
