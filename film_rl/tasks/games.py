"""What every multi-game family shares: the game id is the instruction, episodes are scored per game.

:class:`MultiGameTask` is the :class:`~film_rl.tasks.base.Task` of a family whose ``env.levels``
are games behind one env (ALE's Atari, MinAtar): evaluation plays every game equally often,
statistics and summaries are per game (raw returns, and normalized scores where the family has
references), and ``film-rl analyze`` studies the fixed set of games. A family says how to check
and make its games and what network reads them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor

from film_rl.errors import UserError
from film_rl.tasks.atari_scores import GameScores, Normalizer
from film_rl.tasks.base import Task, TrainingStats
from film_rl.tasks.episodes import Episode, EvalResult
from film_rl.tasks.holdout import Split
from film_rl.tasks.video import write_game_videos


class GameMonitor(Monitor):
    """SB3's ``Monitor`` with the game's name in ``info["episode"]``: whole games, raw rewards.

    It sits under any life-loss and clipping wrappers, so an episode it reports is a whole game
    and its return is the game's own score.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env, info_keywords=("game",))


class MultiGameTask(Task):
    """Several games, one policy; the game id, embedded, generates every layer's FiLM."""

    level_noun = "game"
    instruction_noun = "games"

    @abstractmethod
    def check_games(self) -> None:
        """Refuse unknown or repeated ids in ``env.levels`` as one-line UserErrors."""

    @abstractmethod
    def game_name(self, game: str) -> str:
        """The short name logs, scores and videos use for the id ``game``."""

    @abstractmethod
    def make_env(
        self, *, play: list[str] | None = None, training: bool = True, render_mode: str | None = None
    ) -> gym.Env:
        """The suite's env as training (``play``: the games this worker draws from) or evaluation
        (whole games, raw rewards) sees it."""

    def normalizer(self) -> Normalizer | None:
        """A game's mean return -> its normalized score; ``None``: the family has no reference scores."""
        return None

    def check_network(self) -> None:
        """Refuse network settings the family's network cannot take."""

    def validate(self) -> None:
        """Known games, one worker per game when pinned, every game in every evaluation."""
        env, config = self.env, self.config
        self.check_games()
        self.check_network()
        if env.sampling == "worker" and env.n_envs < len(env.levels):
            raise UserError(
                f"env.sampling=worker pins one game per worker, but {env.n_envs} workers cannot play "
                f"{len(env.levels)} games; use env.n_envs >= {len(env.levels)} or env.sampling=episode"
            )
        for key in ("stop_at_success", "stop_level"):
            if getattr(config.budget, key) is not None:
                raise UserError(f"budget.{key}: games report returns, not success; leave it unset")
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
            raise UserError("games have no done action to end an episode with")
        return _EnvMaker(self, levels)

    def evaluation_env(self, render: bool = False, split: Split = "all") -> gym.Env:
        # a game's instruction is its ID: every game is always played, there is nothing to hold out
        return self.make_env(training=False, render_mode="rgb_array" if render else None)

    def min_episodes(self) -> int:
        return len(self.env.levels)

    def episode_options(self, episode: int) -> dict[str, Any]:
        """Episode ``i`` plays game ``i mod K``: every game equally often, in a fixed order."""
        return {"game": episode % len(self.env.levels)}

    def label(self, episodes: list[Episode]) -> list[Episode]:
        games = self.env.levels
        for i, ep in enumerate(episodes):
            ep.level = self.game_name(games[i % len(games)])
        return episodes

    def training_stats(self) -> GameStats:
        return GameStats(self.config.budget.success_window, self.normalizer())

    def summarize(self, episodes: list[Episode]) -> EvalResult:
        return summarize_per_game(episodes, self.normalizer())

    def default_video_episodes(self) -> int:
        return len(self.env.levels)  # one game each

    def write_videos(self, episodes: list[Episode], out_dir: Path) -> list[Path]:
        return write_game_videos(episodes, out_dir)

    def fixed_instructions(self) -> list[tuple[str, np.ndarray, dict[str, str]]]:
        """Every game of the suite; its instruction is its index in the suite."""
        names = [self.game_name(g) for g in self.env.levels]
        return [(name, np.array([i], np.int64), {"game": name}) for i, name in enumerate(names)]


class _EnvMaker:
    """A picklable constructor of one training worker (subprocess envs pickle it)."""

    def __init__(self, task: MultiGameTask, play: list[str]) -> None:
        self.task, self.play = task, play

    def __call__(self) -> gym.Env:
        return self.task.make_env(play=self.play)


def summarize_per_game(episodes: list[Episode], normalize: Normalizer | None) -> EvalResult:
    """Per-game figures of finished episodes (``Episode.level`` holds the game's name)."""
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
        score = normalize(game, figures["mean_return"]) if normalize is not None else float("nan")
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
    """Per-game returns of whole games, unclipped, and their normalized scores where known.

    Reads the ``info["episode"]`` that :class:`GameMonitor` writes under any life-loss and clipping
    wrappers, so each entry is a whole game's raw score. Logs, every rollout,
    ``rollout/ep_return/<game>``, ``rollout/human_normalized/<game>``, their mean and median across
    games (``rollout/human_normalized_mean`` / ``_median``), ``rollout/episodes/<game>`` and
    ``rollout/episodes``; SB3's own ``rollout/ep_rew_mean`` mixes the games.

    :param window: most recent games kept per game in the rolling means.
    :param normalize: the family's normalized score (``None``: returns only).
    """

    def __init__(self, window: int = 100, normalize: Normalizer | None = None) -> None:
        super().__init__()
        self.scores = GameScores(window, normalize)
        self.episodes = 0
        self.episodes_to: dict[float, int] = {}  # BabyAI's success metric has no counterpart for games

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
        if mean is not None:
            return f"human-normalized {mean:.2f}"
        returns = {k.removeprefix("ep_return/"): v for k, v in summary.items() if k.startswith("ep_return/")}
        return ", ".join(f"{game} {v:.1f}" for game, v in returns.items())

    def _on_rollout_end(self) -> None:
        for key, value in self.scores.summary().items():
            self.logger.record(f"rollout/{key}", value)
        self.logger.record("rollout/episodes", self.episodes)
