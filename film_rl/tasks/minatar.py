"""The MinAtar family: MinAtar's 10x10 games, whose instruction is the game id.

A CPU-sized stand-in for multi-game Atari (Young & Tian, 2019): the same question, whether one
network with per-game gains and biases (Kirkpatrick et al., 2017) plays several games as well as
one network per game, answered in an hour rather than a GPU-day. The env is
:mod:`film_rl.tasks.minatar_envs`; what it shares with Atari (per-game statistics, evaluation,
videos) is :mod:`film_rl.tasks.games`. MinAtar has no human reference scores: returns are raw,
and ``film-rl report`` normalises each game by the sweep's single-game specialists.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from film_rl.config import ExperimentConfig, MinAtarAgentConfig, MinAtarEnvConfig
from film_rl.errors import UserError
from film_rl.model.policies import MinAtarFeatures
from film_rl.tasks.games import MultiGameTask
from film_rl.tasks.instructions import Vocabulary
from film_rl.tasks.minatar_envs import SIDE, check_games, game_name, make_minatar_env


class MinAtarTask(MultiGameTask):
    """Several MinAtar games, one policy; the game id, embedded, generates every layer's FiLM."""

    kind = "minatar"
    env: MinAtarEnvConfig
    agent: MinAtarAgentConfig

    def __init__(self, config: ExperimentConfig, vocab: Vocabulary) -> None:
        super().__init__(config, vocab)
        assert isinstance(self.env, MinAtarEnvConfig) and isinstance(self.agent, MinAtarAgentConfig)

    def check_games(self) -> None:
        check_games(self.env.levels)

    def check_network(self) -> None:
        if SIDE - 2 * len(self.agent.channels) < 1:
            raise UserError(
                f"agent.channels: {len(self.agent.channels)} unpadded 3x3 convs shrink the 10x10 grid to nothing"
            )

    def game_name(self, game: str) -> str:
        return game_name(game)

    def make_env(
        self, *, play: list[str] | None = None, training: bool = True, render_mode: str | None = None
    ) -> gym.Env:
        return make_minatar_env(
            self.env.levels, self.env.minatar, play=play, training=training, render_mode=render_mode
        )

    def policy_kwargs(self) -> dict[str, Any]:
        """MinAtar's network, every layer conditioned on the game id; cells are 0/1 already."""
        agent = self.agent
        return {
            "features_extractor_class": MinAtarFeatures,
            "features_extractor_kwargs": {
                "conditioning": agent.conditioning,
                "channels": tuple(agent.channels),
                "instruction_dim": agent.instruction_dim,
                "features_dim": agent.features_dim,
            },
            "normalize_images": False,
        }
