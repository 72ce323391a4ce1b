"""The language family's config sections: BabyAI and MiniGrid levels, read by the grid CNN.

These are the types that make a setting of this family a key error in another's run (and the
other way round); :mod:`film_rl.tasks.babyai` is what the family does with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from film_rl.config.fields import bounded, later
from film_rl.config.sections import AgentConfig, Encoder, EnvConfig, RewardModelConfig
from film_rl.errors import UserError


@dataclass
class HeldOutCombination:
    """A colour with an object type: every mission naming them together is held out, whatever its verb."""

    color: Literal["red", "green", "blue", "purple", "yellow", "grey"]
    object: Literal["ball", "box", "key", "door"]


@dataclass
class HoldoutConfig:
    """Missions training never sees (``film-rl evaluate --split heldout`` plays them)."""

    #: colour-object combinations, e.g. ``[{color: red, object: ball}]``
    combinations: list[HeldOutCombination] = field(default_factory=list)
    #: whole missions, by exact text, e.g. ``["go to the red ball"]``
    missions: list[str] = field(default_factory=list)
    #: this fraction of the levels' colour-object combinations as well, drawn with ``seed``
    fraction: float = bounded(0.0, 0.0, 1.0, below=True)
    #: the draw of ``fraction``: the same seed holds out the same combinations in every run
    seed: int = bounded(0, 0, 2**31 - 1)

    def __bool__(self) -> bool:
        return bool(self.combinations or self.missions or self.fraction)


@dataclass
class BabyAIEnvConfig(EnvConfig):
    """BabyAI and MiniGrid levels (or your own env observing minigrid's ``{image, direction, mission}``)."""

    #: level ids, ``package.module:Class`` entry points, or other registered ids
    levels: list[str] = field(default_factory=lambda: ["BabyAI-GoToRedBallGrey-v0"], metadata={"nonempty": True})
    #: how many words of a mission the policy reads; the longest BossLevel missions stay below it
    max_instruction_length: int = bounded(48, 1, 1024)
    #: training reward multiplier (BabyAI's PPO used 20); logged returns stay unscaled
    reward_scale: float = bounded(1.0, 0.0, 1e6, above=True)
    #: training episodes: ``level``: the level ends them on success, with its own reward;
    #: ``done``: AGILE's episodes, ended by minigrid's ``done`` action, paying 1 for ``done`` said in
    #: a goal state (right after a step the level's verifier called a success; BabyAI's own rule):
    #: the true-reward comparison for AGILE, whose runs always end this way. Evaluation always
    #: plays the level's own episodes.
    episode_end: Literal["level", "done"] = later("level")
    #: observe through film-rl's copy of minigrid's observation (``film_rl.tasks.minigrid_view``):
    #: the same arrays at every step, without the grid copies minigrid's ``gen_obs`` makes;
    #: ``false``: minigrid's own ``gen_obs`` (to measure one against the other, or to rule it out)
    fast_view: bool = later(True)
    #: at a level's step limit, PPO bootstraps the cut episode's return from the critic (SB3's
    #: handling of a truncation); ``false``: the limit ends the episode as a terminal state, worth 0
    #: from then on, as in BabyAI's own PPO (``film_rl.tasks.babyai_envs.TimeoutIsTerminal``)
    timeout_bootstrap: bool = later(True)
    #: the policy also observes the action it took last (``previous_action``; at an episode's
    #: start, none), as IMPALA's and R2D2's LSTMs do: what an LSTM can remember of its way through
    #: rooms (``film_rl.tasks.babyai_envs.PreviousAction``). It enters the features as a learned
    #: vector per action, starting at zero, so a run given a memoryless run's weights starts as it
    previous_action: bool = later(False)
    #: missions held out of training, for zero-shot evaluation (``film-rl evaluate --split``)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig, metadata={"later": True})


@dataclass
class GridAgentConfig(AgentConfig):
    """The FiLM-ed grid CNN over minigrid's symbolic view, its instruction encoder, and AGILE."""

    #: instruction encoder: gru, bigru (bidirectional), bow (bag of words), bow_linear (bag of words
    #: without the ReLU: FiLM parameters affine in the words), conv (width-3 conv over the words)
    encoder: Encoder = "gru"
    #: conv block widths; [16, 32]: faster than [32, 64] and learns GoToLocal as well (docs/results.md)
    channels: list[int] = field(
        default_factory=lambda: [16, 32], metadata={"range": (1, 4096, False, False), "nonempty": True}
    )
    #: width of the embedding of each grid cell's (object, colour, state)
    embed_dim: int = bounded(16, 1, 4096)
    #: at most the agent's 7x7 view
    kernel_size: int = bounded(2, 1, 7)
    #: how the last conv's maps become a vector: flatten, or max over the view (BabyAI's end-pooling)
    pool: Literal["flatten", "max"] = "flatten"
    #: BatchNorm in every conv block
    batch_norm: bool = False
    #: word embedding width
    word_dim: int = bounded(32, 1, 4096)
    #: AGILE (film_rl.agile): a discriminator's judgement replaces the level's reward
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig, metadata={"later": True})

    def grid_network(self) -> dict[str, Any]:
        """The FiLM-ed grid network's settings, shared by the policy's features extractor and
        AGILE's discriminator (which may swap the conditioning)."""
        return {
            "conditioning": self.conditioning,
            "encoder": self.encoder,
            "channels": tuple(self.channels),
            "embed_dim": self.embed_dim,
            "kernel_size": self.kernel_size,
            "word_dim": self.word_dim,
            "instruction_dim": self.instruction_dim,
            "pool": self.pool,
            "batch_norm": self.batch_norm,
        }


#: keys the first release saved in every run's config whatever its family; read back, they are dropped
LEGACY_KEYS = {"env": ("atari",), "agent": ()}


def reward_model_settings(agent: AgentConfig) -> RewardModelConfig | None:
    """AGILE's settings when the agent has a reward model turned on; ``None`` otherwise (and for
    families without AGILE, whose agents have no such section)."""
    if isinstance(agent, GridAgentConfig) and agent.reward_model.enabled:
        return agent.reward_model
    return None


def language_sections(env: EnvConfig, agent: AgentConfig) -> tuple[BabyAIEnvConfig, GridAgentConfig]:
    """The sections of a language-family run, for what only that family has (AGILE)."""
    if not isinstance(env, BabyAIEnvConfig) or not isinstance(agent, GridAgentConfig):
        raise UserError("agent.reward_model (AGILE) needs BabyAI's bot and verifier: env.kind must be babyai")
    return env, agent
