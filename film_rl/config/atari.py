"""The multi-game Atari family's config sections: ALE games, their preprocessing, the Nature CNN.

These are the types that make a setting of this family a key error in another's run (and the
other way round); :mod:`film_rl.tasks.atari` is what the family does with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from film_rl.config.fields import bounded
from film_rl.config.sections import AgentConfig, EnvConfig


@dataclass
class AtariConfig:
    """Atari preprocessing (``env.kind: atari``), done once: Machado et al. (2018) / SB3's AtariWrapper.

    Each game is ``ALE/<Game>-v5`` made with ``frameskip=1`` and ``full_action_space=True`` (18
    actions for every game), then gymnasium's ``AtariPreprocessing`` skips frames, max-pools and
    resizes: a v5 id's own frame skip is never stacked on top of it.
    """

    #: up to this many no-op actions at the start of every game
    noop_max: int = bounded(30, 0, 10_000)
    #: emulator frames per agent step (the action repeats; the last two frames are max-pooled)
    frame_skip: int = bounded(4, 1, 100)
    #: grayscale frames stacked in the observation
    frame_stack: int = bounded(4, 1, 64)
    #: side of the square grayscale frames
    #: at least 36: the Nature CNN's three convs need that many pixels
    screen_size: int = bounded(84, 36, 1024)
    #: a lost life ends the training episode (the game itself goes on, as SB3's EpisodicLifeEnv);
    #: evaluation always plays whole games
    terminal_on_life_loss: bool = True
    #: training rewards become their sign (DQN's clipping); logged and evaluated returns stay raw
    clip_rewards: bool = True
    #: sticky actions (ALE v5's default 0.25, Machado et al.); 0 for the deterministic DQN-era ALE
    repeat_action_probability: float = bounded(0.25, 0.0, 1.0)
    #: a game is truncated after this many emulator frames (108,000 = 30 minutes, the usual cap)
    max_episode_frames: int = bounded(108_000, 1, 10**9)


@dataclass
class AtariEnvConfig(EnvConfig):
    """ALE games (``ALE/<Game>-v5``), one policy; the order of ``levels`` defines the game ids."""

    #: preprocessing of every game
    atari: AtariConfig = field(default_factory=AtariConfig)


@dataclass
class AtariAgentConfig(AgentConfig):
    """The FiLM-ed Nature CNN, conditioned on an embedding of the game id."""

    #: widths of the Nature CNN's three convs
    channels: list[int] = field(
        default_factory=lambda: [32, 64, 64], metadata={"range": (1, 4096, False, False), "nonempty": True}
    )
    #: game embedding width (at least the number of games: any per-game table of gains and biases is reachable)
    instruction_dim: int = bounded(64, 1, 4096)
    features_dim: int = bounded(512, 1, 65536)


#: keys the first release saved in every run's config whatever its family; read back, they are dropped
LEGACY_KEYS = {
    "env": ("max_instruction_length", "reward_scale", "episode_end"),
    "agent": ("encoder", "embed_dim", "kernel_size", "pool", "batch_norm", "word_dim", "reward_model"),
}
