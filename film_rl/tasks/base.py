"""The seam between an environment family and everything that trains, evaluates or reports.

A :class:`Task` holds what differs between families: validating the family's settings, building
its training and evaluation envs, the features extractor its policies read observations with,
the statistics it logs while training, and how it sums up an evaluation. Training, evaluation,
sweeps and reports only talk to this interface; they never ask which family they run.

Adding a family is one module with a ``Task`` subclass, registered by name in
:data:`film_rl.tasks.registry.TASKS`, plus recipes (``envs/``, ``agents/``, ``experiments/``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from film_rl.config import ExperimentConfig
from film_rl.errors import UserError
from film_rl.tasks import vec_env
from film_rl.tasks.episodes import Episode, EvalResult, rollout
from film_rl.tasks.holdout import Split
from film_rl.tasks.instructions import Vocabulary


class TrainingStats(BaseCallback):
    """A task's statistics during training, logged every rollout.

    ``episodes_to``: the episode count at which the rolling success (the last
    ``budget.success_window`` episodes) first reached each threshold; :attr:`babyai_episodes_to`:
    the same by BabyAI's own centred window (:mod:`film_rl.tasks.babyai_metric`); both empty where
    a family has no success verdict. :meth:`state` is saved beside every
    checkpoint so that a resumed run goes on counting; ``None``: nothing to save.
    """

    episodes: int = 0
    episodes_to: dict[float, int]

    @property
    def babyai_episodes_to(self) -> dict[float, int]:
        return {}

    def level_counts(self) -> tuple[dict[str, int], dict[str, dict[float, int]]]:
        """In a run on several levels: each level's own episode count, and the count of its episodes
        at which its own rolling success first reached each threshold; empty where none are kept."""
        return {}, {}

    def state(self) -> dict[str, Any] | None:
        return None

    def headline(self) -> str:
        """The one figure a progress line shows (e.g. ``success 0.53``); empty before any episode."""
        return ""

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` of an earlier leg of the run."""


class Task(ABC):
    """One environment family, for one run's config.

    :param config: the run's config (its ``env`` section names the family's levels or games).
    :param vocab: the run's instruction vocabulary (saved with every run as ``vocab.json``).
    """

    #: the value of ``env.kind`` that selects this family
    kind: ClassVar[str]
    #: what the family calls the ids in ``env.levels`` (messages and reports)
    level_noun: ClassVar[str] = "level"
    #: what ``film-rl analyze`` calls the instructions it studies
    instruction_noun: ClassVar[str] = "distinct missions"

    @classmethod
    def vocabulary(cls) -> Vocabulary:
        """The instruction vocabulary a new run of this family saves (``vocab.json``); every family
        saves one, so that every run directory reads back the same way."""
        return Vocabulary.babyai()

    def __init__(self, config: ExperimentConfig, vocab: Vocabulary) -> None:
        self.config, self.env, self.agent, self.vocab = config, config.env, config.agent, vocab

    # ------------------------------------------------------------------ settings

    @abstractmethod
    def validate(self) -> None:
        """Refuse, as one-line UserErrors, settings this family cannot run (unknown ids, ...)."""

    # ------------------------------------------------------------------ envs

    @abstractmethod
    def worker(self, levels: list[str], *, done_action_ends: bool = False) -> Callable[[], gym.Env]:
        """A picklable constructor of one training worker playing ``levels``.

        ``done_action_ends``: AGILE's episodes, ended by the policy's ``done`` (only families whose
        envs have such an action accept it).
        """

    def training_env(self, seed: int, subprocess: bool, *, done_action_ends: bool = False) -> VecEnv:
        """The training VecEnv: ``env.n_envs`` workers, levels assigned by ``env.sampling``."""
        plan = vec_env.worker_levels(self.env.levels, self.env.n_envs, self.env.sampling)
        workers = [self.worker(levels, done_action_ends=done_action_ends) for levels in plan]
        return vec_env.make_vec_env(workers, seed, subprocess)

    @abstractmethod
    def evaluation_env(self, render: bool = False, split: Split = "all") -> gym.Env:
        """One env as evaluation plays it: the true reward, whole episodes; of a run with held-out
        instructions, those of ``split`` only."""

    def held_out_instructions(self) -> list[str]:
        """The instructions training never sees, written out (none: every one is trained on)."""
        return []

    def is_held_out(self, instruction: str) -> bool:
        """Whether training never sees ``instruction``."""
        return False

    def held_out_by(self, instruction: str) -> list[str]:
        """Which of :meth:`held_out_instructions` hold ``instruction`` out (none: it is trained on)."""
        return []

    def splits(self) -> tuple[Split, ...]:
        """The instruction splits an evaluation reports: ``("train", "heldout")`` for a run with
        held-out instructions, else ``("all",)``."""
        return ("train", "heldout") if self.held_out_instructions() else ("all",)

    def min_episodes(self) -> int:
        """The fewest episodes an evaluation may play (every game of a suite at least once)."""
        return 1

    def episode_options(self, episode: int) -> dict[str, Any]:
        """Reset options of evaluation episode ``episode`` (e.g. which game it plays)."""
        return {}

    # ------------------------------------------------------------------ model

    @abstractmethod
    def policy_kwargs(self) -> dict[str, Any]:
        """The SB3 ``policy_kwargs`` that make the agent recipe's network read this family's
        observations: features extractor class and kwargs, image normalisation."""

    # ------------------------------------------------------------------ statistics and evaluation

    @abstractmethod
    def training_stats(self) -> TrainingStats:
        """The callback that logs this family's statistics while training."""

    @abstractmethod
    def summarize(self, episodes: list[Episode]) -> EvalResult:
        """An evaluation's figures from its finished episodes."""

    def default_video_episodes(self) -> int:
        """How many of an evaluation's first episodes ``--video`` records unless told."""
        return 4

    @abstractmethod
    def write_videos(self, episodes: list[Episode], out_dir: Path) -> list[Path]:
        """Videos of recorded episodes, with the instruction (mission or game) shown."""

    def play(
        self,
        model: PPO | RecurrentPPO,
        episodes: int,
        seed: int,
        deterministic: bool,
        record: int = 0,
        progress: Callable[[int, int], None] | None = None,
        split: Split = "all",
        forget: bool = False,
    ) -> list[Episode]:
        """Play ``episodes`` evaluation episodes; the first ``record`` keep their frames;
        ``forget``: a recurrent policy's memory reset at every step (:func:`rollout`).

        Sampled actions draw from torch's global generator: it is seeded for this call only, so the
        same seed gives the same numbers in any process and training's own stream is untouched.
        """
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            played = rollout(
                model,
                lambda: self.evaluation_env(render=record > 0, split=split),
                episodes,
                seed=seed,
                deterministic=deterministic,
                record=record,
                options=self.episode_options,
                progress=progress,
                forget=forget,
            )
        return self.label(played)

    def label(self, episodes: list[Episode]) -> list[Episode]:
        """Give each played episode its level (game) name where the env does not report it."""
        return episodes

    # ------------------------------------------------------------------ analysis

    def policy_input(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        """One observation of the family's own env, as the policy reads it (what the training
        wrappers make of it); used by :func:`film_rl.load_policy` outside film-rl's loops."""
        return {key: np.asarray(value) for key, value in observation.items()}

    def encode_instruction(self, text: str) -> np.ndarray:
        """The ids the generator reads for an instruction written out (``film-rl analyze --pair``)."""
        raise UserError(f"this run's instructions are its {self.instruction_noun}, not text")

    def related_levels(self, missions: list[str]) -> list[str] | None:
        """Levels whose missions say more than ``missions`` (a run's own levels gave only these
        few), for ``film-rl analyze``; ``None``: none known."""
        return None

    def fixed_instructions(self) -> list[tuple[str, np.ndarray, dict[str, str]]] | None:
        """For ``film-rl analyze``: every instruction the run can be given, as (text, what the
        generator reads, attributes to colour by), when they are a fixed set; ``None`` when they
        are missions the levels generate, which analyze samples by resetting the evaluation env
        and can play (interpolation and arithmetic towards a mission's goal)."""
        return None
