"""SB3 callbacks of a training run: instruction statistics, checkpoints, evaluation, stopping."""

from __future__ import annotations

import signal
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from film_rl.run.run_dir import CHECKPOINTS, checkpoints, save_atomically
from film_rl.tasks.atari_scores import GameScores
from film_rl.tasks.instructions import UNK, Vocabulary


class InstructionStats(BaseCallback):
    """Per-level success rates, unknown-word counts and BabyAI's episodes-to-99% metric.

    SB3 already logs the overall ``rollout/success_rate`` from ``info["is_success"]``; this adds
    ``rollout/success_rate/<level>`` (window ``window``), ``instructions/unknown_words`` (words
    mapped to ``<unk>`` in the missions seen so far) and ``rollout/episodes``. The first episode
    count at which the rolling success reaches each of ``thresholds`` is kept in
    :attr:`episodes_to`.

    :param vocab: the run's vocabulary (to recognise ``<unk>``).
    :param window: episodes in the rolling success rates.
    :param thresholds: success rates whose first crossing is recorded.
    :param stop_at: end training once the rolling success reaches this rate.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        window: int = 100,
        thresholds: tuple[float, ...] = (0.9, 0.99),
        stop_at: float | None = None,
    ) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.unk = vocab.stoi[UNK]
        self.window = window
        # the stopping rate is a threshold too, so the episode count it stopped at is recorded
        self.thresholds = tuple(sorted({*thresholds, *([stop_at] if stop_at is not None else [])}))
        self.per_level: dict[str, deque[bool]] = defaultdict(lambda: deque(maxlen=window))
        self.recent: deque[bool] = deque(maxlen=window)
        self.episodes = 0
        self.unknown_words = 0
        self.episodes_to: dict[float, int] = {}
        self.curve: list[tuple[int, int, float]] = []  # (episodes, timesteps, rolling success)

    def _on_training_start(self) -> None:
        obs = self.model._last_obs
        if isinstance(obs, dict):
            self.unknown_words += int((obs["instruction"] == self.unk).sum())

    def _on_step(self) -> bool:
        dones = self.locals["dones"]
        if not dones.any():
            return True
        for info in (i for i, d in zip(self.locals["infos"], dones, strict=True) if d):
            if "is_success" not in info:
                continue
            success = bool(info["is_success"])
            self.episodes += 1
            self.recent.append(success)
            self.per_level[str(info.get("level", "?"))].append(success)
            if len(self.recent) == self.window:
                rate = float(np.mean(self.recent))
                for t in self.thresholds:
                    if rate >= t and t not in self.episodes_to:
                        self.episodes_to[t] = self.episodes
        new_obs = self.locals["new_obs"]
        if isinstance(new_obs, dict):  # the next episode's mission, already tokenized
            self.unknown_words += int((new_obs["instruction"][dones] == self.unk).sum())
        return not self.reached_target

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to go on counting: BabyAI's metric counts every episode of the run."""
        return {
            "episodes": self.episodes,
            "unknown_words": self.unknown_words,
            "episodes_to": {str(t): n for t, n in self.episodes_to.items()},
            "recent": list(self.recent),
            "per_level": {level: list(outcomes) for level, outcomes in self.per_level.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.episodes = int(state["episodes"])
        self.unknown_words = int(state["unknown_words"])
        self.episodes_to = {float(t): int(n) for t, n in state["episodes_to"].items()}
        self.recent.extend(bool(x) for x in state["recent"])
        for level, outcomes in state["per_level"].items():
            self.per_level[level].extend(bool(x) for x in outcomes)

    @property
    def reached_target(self) -> bool:
        return (
            self.stop_at is not None and len(self.recent) == self.window and float(np.mean(self.recent)) >= self.stop_at
        )

    def _on_rollout_end(self) -> None:
        for level, outcomes in self.per_level.items():
            self.logger.record(f"rollout/success_rate/{level}", float(np.mean(outcomes)))
        self.logger.record("rollout/episodes", self.episodes)
        self.logger.record("instructions/unknown_words", self.unknown_words)
        for t, n in self.episodes_to.items():
            self.logger.record(f"rollout/episodes_to_{round(t * 100)}", n)
        if self.recent:
            self.curve.append((self.episodes, self.num_timesteps, float(np.mean(self.recent))))


class GameStats(BaseCallback):
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

    def _on_rollout_end(self) -> None:
        for key, value in self.scores.summary().items():
            self.logger.record(f"rollout/{key}", value)
        self.logger.record("rollout/episodes", self.episodes)


class Checkpointer(BaseCallback):
    """Save ``checkpoints/step_<timesteps>.zip`` every ``freq`` timesteps, keeping the newest ``keep``.

    :param run_dir: the run directory.
    :param freq: timesteps between checkpoints (0: never, except on request).
    :param keep: periodic checkpoints kept; older ones are deleted only after a newer one is safe.
    :param save_extra: saves what else the run needs to resume beside a checkpoint (AGILE's
        reward model), given the checkpoint's path; its files are named ``step_<timesteps>.*``.
    """

    def __init__(self, run_dir: Path, freq: int, keep: int, save_extra: Callable[[Path], None] | None = None) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.freq = freq
        self.keep = max(1, keep)
        self.save_extra = save_extra
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = self.num_timesteps + self.freq

    def save(self) -> Path:
        bad = first_non_finite(self.model)
        if bad is not None:  # never replace a good checkpoint with a diverged model
            raise Diverged(bad)
        path = self.run_dir / CHECKPOINTS / f"step_{self.model.num_timesteps}.zip"
        path.parent.mkdir(exist_ok=True)  # a run directory copied without its checkpoints still resumes
        if self.save_extra is not None:
            self.save_extra(path)  # first: a checkpoint is complete once its zip exists
        save_atomically(self.model, path)
        for _, old in checkpoints(self.run_dir)[: -self.keep]:
            for stale in old.parent.glob(f"{old.stem}.*"):
                stale.unlink(missing_ok=True)
        return path

    def _on_step(self) -> bool:
        if self.freq > 0 and self.num_timesteps >= self._next:
            self.save()
            self._next = self.num_timesteps + self.freq
        return True


class PeriodicEval(BaseCallback):
    """Evaluate every ``freq`` timesteps and log ``eval/*``.

    :param evaluate: returns an :class:`film_rl.run.evaluate.EvalResult`; its ``scalars()`` are logged.
    :param freq: timesteps between evaluations.
    """

    def __init__(self, evaluate: Callable[[], Any], freq: int) -> None:
        super().__init__()
        self.evaluate = evaluate
        self.freq = freq
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = self.num_timesteps + self.freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            for key, value in self.evaluate().scalars().items():
                if key != "episodes":
                    self.logger.record(f"eval/{key}", value)
            self._next = self.num_timesteps + self.freq
        return True


class StopOnSignal(BaseCallback):
    """Turn the first Ctrl-C or SIGTERM into a clean stop at the next environment step.

    Stopping between steps (rather than raising wherever Python happens to be) means the model is
    never caught half-way through an optimizer update, so the checkpoint written afterwards is
    sound. A second signal interrupts at once, as usual.
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: int | None = None
        #: timesteps when the current rollout began: what the model has been trained on
        self.rollout_start = 0
        self._previous: dict[int, Any] = {}

    def _on_training_start(self) -> None:
        self.rollout_start = self.num_timesteps

    def _on_rollout_start(self) -> None:
        self.rollout_start = self.num_timesteps

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            return self  # e.g. a Ray Tune trial: only the main thread may handle signals; Ray stops it
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_step(self) -> bool:
        return self.received is None


class Diverged(Exception):
    """The model's parameters are no longer finite (a too large learning rate, typically)."""

    def __init__(self, parameter: str) -> None:
        super().__init__(f"{parameter} is not finite")
        self.parameter = parameter


def first_non_finite(model: Any) -> str | None:
    """The name of the first policy parameter holding a NaN or an infinity, or ``None``."""
    for name, parameter in model.policy.named_parameters():
        if not torch.isfinite(parameter).all():
            return str(name)
    return None


class StopOnNonFinite(BaseCallback):
    """Stop before a diverged update is acted on, checkpointed or saved.

    Checked once per rollout, after each PPO update, so that the run ends with one clear message
    (see :func:`film_rl.run.train._explain`) instead of a distribution error deep in torch.
    """

    def _on_rollout_start(self) -> None:
        bad = first_non_finite(self.model)
        if bad is not None:
            raise Diverged(bad)

    def _on_step(self) -> bool:
        return True
