"""The multi-game Atari family: ALE games, whose instruction is the game id.

The env (one env over several games, preprocessing done once) is
:mod:`film_rl.tasks.atari_envs`; reference scores for human normalisation are
:mod:`film_rl.tasks.atari_scores`; what every multi-game family shares (per-game statistics,
evaluation, videos) is :mod:`film_rl.tasks.games`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from film_rl.config import AtariAgentConfig, AtariEnvConfig, ExperimentConfig
from film_rl.errors import UserError
from film_rl.model.policies import GameFeatures
from film_rl.tasks.atari_envs import check_games, game_name, make_atari_env
from film_rl.tasks.atari_scores import Normalizer, human_normalized
from film_rl.tasks.games import MultiGameTask
from film_rl.tasks.instructions import Vocabulary


class AtariTask(MultiGameTask):
    """Several ALE games, one policy; the game id, embedded, generates every conv's FiLM."""

    kind = "atari"
    env: AtariEnvConfig
    agent: AtariAgentConfig

    def __init__(self, config: ExperimentConfig, vocab: Vocabulary) -> None:
        super().__init__(config, vocab)
        assert isinstance(self.env, AtariEnvConfig) and isinstance(self.agent, AtariAgentConfig)

    def check_games(self) -> None:
        check_games(self.env.levels)

    def normalizer(self) -> Normalizer:
        return human_normalized

    def check_network(self) -> None:
        if len(self.agent.channels) != 3:
            raise UserError(f"agent.channels: the Nature CNN has 3 convs, got {len(self.agent.channels)} widths")

    def game_name(self, game: str) -> str:
        return game_name(game)

    def make_env(
        self, *, play: list[str] | None = None, training: bool = True, render_mode: str | None = None
    ) -> gym.Env:
        """Training: life-loss ends and clipped rewards over a :class:`GameMonitor`; evaluation:
        whole games, raw rewards, ALE's 30-minute cap."""
        return make_atari_env(self.env.levels, self.env.atari, play=play, training=training, render_mode=render_mode)

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
