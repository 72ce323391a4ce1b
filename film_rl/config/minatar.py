"""The MinAtar family's config sections: 10x10 miniature Atari games and their small network.

MinAtar (Young & Tian, 2019) keeps what makes Atari hard for an agent (the games' dynamics, sticky
actions, difficulty that ramps up) and drops the pixels: a game's state is a handful of 10x10
binary channels, so one CPU core trains a policy on millions of frames in an hour.
:mod:`film_rl.tasks.minatar` is what the family does with these settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from film_rl.config.fields import bounded
from film_rl.config.sections import AgentConfig, EnvConfig


@dataclass
class MinAtarConfig:
    """The games' own settings, as MinAtar defines them (its defaults are the paper's)."""

    #: probability that the previous action repeats instead of the chosen one (MinAtar: 0.1)
    sticky_action_prob: float = bounded(0.1, 0.0, 1.0)
    #: the games speed up as an episode goes on (MinAtar's default)
    difficulty_ramping: bool = True
    #: truncate an episode after this many steps (null: never, as MinAtar, whose games all end)
    max_episode_steps: int | None = bounded(None, 1, 10**9)


@dataclass
class MinAtarEnvConfig(EnvConfig):
    """MinAtar games (``MinAtar/<Game>-v0``), one policy; the order of ``levels`` defines the game ids."""

    levels: list[str] = field(default_factory=lambda: ["MinAtar/Breakout-v0"], metadata={"nonempty": True})
    #: the games' settings
    minatar: MinAtarConfig = field(default_factory=MinAtarConfig)


@dataclass
class MinAtarAgentConfig(AgentConfig):
    """MinAtar's network (one 3x3 conv, one hidden layer) with the conv maps and the hidden units
    conditioned on an embedding of the game id."""

    #: widths of the 3x3 convs (MinAtar: one conv of 16 maps)
    channels: list[int] = field(
        default_factory=lambda: [16], metadata={"range": (1, 4096, False, False), "nonempty": True}
    )
    #: game embedding width (at least the number of games: any per-game table of gains and biases is reachable)
    instruction_dim: int = bounded(16, 1, 4096)
    #: the conditioned hidden layer's width, which the actor and critic heads read (MinAtar: 128)
    features_dim: int = bounded(128, 1, 65536)
    #: MinAtar's heads are linear on the hidden layer
    net_arch: list[int] = field(default_factory=list, metadata={"range": (1, 65536, False, False)})


#: MinAtar arrived after the first release: its saved configs carry no legacy keys
LEGACY_KEYS: dict[str, tuple[str, ...]] = {}
