"""The config sections every family shares: the algorithm, the budget, evaluation, checkpoints,
logging, AGILE's reward model, and the common part of the env and agent sections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from film_rl.config.fields import bounded, later

Conditioning = Literal["film", "scale", "bias", "gate", "concat", "none"]
Encoder = Literal["gru", "bigru", "bow", "bow_linear", "conv"]


@dataclass
class AlgorithmConfig:
    """PPO / RecurrentPPO hyperparameters (SB3 names)."""

    #: steps per env in each rollout (rollout = n_steps x n_envs)
    n_steps: int = bounded(128, 1, 1_000_000)
    #: minibatch size of each gradient step
    batch_size: int = bounded(256, 2, 1_000_000)
    #: passes over each rollout
    n_epochs: int = bounded(4, 1, 1000)
    #: Adam's learning rate
    learning_rate: float = bounded(5e-4, 0.0, 1e9, above=True)
    #: ``linear``: the learning rate falls linearly to 0 over ``schedule_timesteps`` (default: the
    #: budget; RL Zoo's ``lin_``), so a policy that has learned is not shaken out of it late in the
    #: run; ``constant``: it stays
    learning_rate_schedule: Literal["constant", "linear"] = later("constant")
    #: discount factor
    gamma: float = bounded(0.99, 0.0, 1.0, above=True)
    #: GAE's λ
    gae_lambda: float = bounded(0.95, 0.0, 1.0)
    #: PPO's clipping of the probability ratio
    clip_range: float = bounded(0.2, 0.0, 10.0, above=True)
    #: ``linear``: the clipping range falls linearly to 0 over ``schedule_timesteps`` (default: the
    #: budget); ``constant``: it stays
    clip_range_schedule: Literal["constant", "linear"] = later("constant")
    #: entropy bonus weight
    ent_coef: float = bounded(0.01, 0.0, 100.0)
    #: ``linear``: the entropy bonus falls linearly to 0 over ``schedule_timesteps`` (default: the
    #: budget), then stays there. BabyAI's metric counts the training episodes, played with sampled
    #: actions: a bonus that stays keeps a policy that has learned the mission sampling wide of it;
    #: ``constant``: it stays
    ent_coef_schedule: Literal["constant", "linear"] = later("constant")
    #: timesteps over which the ``linear`` schedules fall to 0 (null: the budget). A run that stops
    #: at a success rate keeps a long budget: this lets its entropy bonus fall over the frames the
    #: level is expected to take, then stay at 0 (a linear learning rate or clipping range must reach
    #: the budget, or the policy would stop learning: refused). A resumed run that raises the budget
    #: keeps the line where it is (with null, the line stretches to the new budget)
    schedule_timesteps: int | None = bounded(None, 1, 10**12, later=True)
    #: RecurrentPPO (policy: lstm): the longest sequence the LSTM is trained on, in steps
    #: (truncated backpropagation through time, BabyAI's ``recurrence``). A sequence starts every
    #: this many steps of each env's rollout, besides every episode start, from the LSTM state the
    #: rollout stored there (film_rl.run.sequences). null: sb3-contrib's, whole episodes up to n_steps
    sequence_length: int | None = bounded(None, 1, 1_000_000, later=True)
    #: value-loss weight
    vf_coef: float = bounded(0.5, 0.0, 100.0)
    #: gradient norm clip
    max_grad_norm: float = bounded(0.5, 0.0, 1e6, above=True)
    #: Adam's ε
    adam_eps: float = bounded(1e-5, 0.0, 1.0, above=True)
    #: stop a rollout's epochs early past this KL divergence (null: never)
    target_kl: float | None = bounded(None, 0.0, 100.0, above=True)
    #: standardise each minibatch's advantages (SB3's default). Off, a sparse reward's rare +1
    #: keeps its size beside the entropy bonus instead of the many small negatives being blown up
    normalize_advantage: bool = later(True)


@dataclass
class RewardModelConfig:
    """AGILE: a FiLM discriminator's judgement replaces the level's reward (see :mod:`film_rl.agile.training`).

    Episodes then end when the policy takes minigrid's ``done`` action, rewarded 1 when the
    discriminator finds that state a goal state for the instruction.
    """

    #: turn AGILE on: the reward model's verdict replaces the level's reward
    enabled: bool = False
    #: a goal-state file (``film-rl goals make``); none: the run makes one into RUN_DIR/goals.npz
    goals: str | None = None
    #: bot episodes per level when the run makes its own goal states
    goal_episodes: int = bounded(2000, 1, 10_000_000)
    #: the discriminator's conditioning (none: the policy's)
    conditioning: Conditioning | None = None
    #: reward 1 when D(instruction, state) is above this
    threshold: float = bounded(0.5, 0.0, 1.0, above=True, below=True)
    #: fraction of the policy's states D finds most goal-like left out of the negatives
    rho: float = bounded(0.25, 0.0, 1.0, below=True)
    #: fraction of the negatives that are goal states paired with another mission, which teach D
    #: to read the instruction (see film_rl.agile.reward_model.RewardModelTrainer)
    mismatched: float = bounded(0.5, 0.0, 1.0, later=True)
    #: Adam's learning rate
    learning_rate: float = bounded(1e-3, 0.0, 1.0, above=True)
    #: minibatch size of each gradient step
    batch_size: int = bounded(64, 2, 1_000_000)
    #: discriminator steps between two rollouts
    updates_per_rollout: int = bounded(8, 1, 100_000)
    #: extra discriminator steps after the first rollout, before its rewards mean anything
    warmup_updates: int = bounded(100, 0, 10_000_000)
    #: recent policy states kept as negatives
    replay_capacity: int = bounded(10_000, 1, 100_000_000)


@dataclass
class EnvConfig:
    """Which levels (games), how many workers; a family's own env settings are its subclass's
    (:mod:`film_rl.config.babyai`, :mod:`film_rl.config.atari`)."""

    #: the environment family: ``babyai`` (language missions: any MiniGrid or BabyAI env),
    #: ``atari`` (several ALE games, the game id as the instruction) or ``minatar`` (MinAtar's
    #: 10x10 games, the game id as the instruction)
    kind: str = later("babyai")
    #: the family's env ids; several make a suite
    levels: list[str] = field(default_factory=list, metadata={"nonempty": True})
    #: ``episode``: each episode draws a level (game); ``worker``: worker i always plays level i mod n
    sampling: Literal["episode", "worker"] = "episode"
    #: environments stepped in parallel
    n_envs: int = bounded(8, 1, 1024)
    #: ``auto``: subprocesses when n_envs > 1 and the machine has at least 4 cores; on 2 cores the
    #: pipes cost more than they save (docs/results.md, vector envs on 2 cores)
    vec_env: Literal["auto", "subproc", "dummy"] = "auto"


def _critic_memory_before(agent: dict[str, Any]) -> str:
    """The critic an LSTM run saved before ``critic_memory`` existed had: the ``shared`` one (the
    feed-forward policy has no critic memory, so its runs read as the default)."""
    return "shared" if agent.get("policy") == "lstm" else "own"


@dataclass
class AgentConfig:
    """The policy, its conditioning and the algorithm that trains it; the network's family-specific
    settings (its CNN, its instruction encoder) are the family's subclass's."""

    #: ``cnn``: feed-forward, trained by PPO; ``lstm``: CNN + LSTM memory, trained by RecurrentPPO
    policy: Literal["cnn", "lstm"] = "cnn"
    #: how the instruction modulates the network: film (γ⊙x+β), scale (γ⊙x), bias (x+β),
    #: gate (σ(g)⊙x), concat, none (language-blind)
    conditioning: Conditioning = "film"
    #: width of the instruction vector: the language encoder's output, or the game embedding
    instruction_dim: int = bounded(128, 1, 4096)
    #: width of the features the actor and critic heads read
    features_dim: int = bounded(128, 1, 65536)
    #: hidden layers of the actor and critic heads after the features (or the LSTM)
    net_arch: list[int] = field(default_factory=lambda: [64], metadata={"range": (1, 65536, False, False)})
    #: LSTM memory width (policy: lstm)
    lstm_hidden: int = bounded(128, 1, 65536)
    #: the critic's memory (policy: lstm). ``own``: an LSTM of its own (sb3-contrib's default), so
    #: the value loss also trains the shared FiLM network; ``shared``: it reads the actor's LSTM with
    #: the gradient stopped (sb3-contrib's ``shared_lstm``), so the value loss trains only its head
    #: and the FiLM network learns from the policy loss alone (docs/results.md: it barely learns)
    critic_memory: Literal["own", "shared"] = later("own", saved=_critic_memory_before)
    #: the critic's features (policy: cnn). ``shared``: actor and critic read one FiLM network,
    #: which both losses train (SB3's default); ``own``: the critic reads a FiLM network of its own
    #: (SB3's ``share_features_extractor=False``), so the value loss no longer shapes the features
    #: the actor reads, at about twice the network's cost. A run started from a ``shared`` policy
    #: (``init_from``) gives both networks its weights
    critic_features: Literal["shared", "own"] = later("shared")
    #: what the heads of an LSTM policy read. ``stack``: the LSTM's output (sb3-contrib's);
    #: ``residual``: the features plus a projection of the LSTM's output that starts at zero, so
    #: the policy starts as its memoryless self and memory adds only what it earns; a memoryless
    #: run's whole policy then fits it (``init_parts: memoryless``)
    memory: Literal["stack", "residual"] = later("stack")
    #: the LSTMs read the features through a LayerNorm (policy: lstm). A FiLM network's features
    #: grow as it trains (a GoTo CNN's from a norm of ~4 to ~800 in 20M frames); read raw, they
    #: saturate nearly every gate of an LSTM started from such a network, and its memory stays unused
    memory_norm: bool = later(False)
    #: what a residual memory adds is multiplied by the features' root mean square (agent.memory:
    #: residual), as env.previous_action's vectors are. Added as it is, a projection drawn at zero
    #: must grow with the features to weigh anything beside them: a GoTo LSTM's memory still
    #: added 0.3% of the features' norm after 4M frames
    memory_scale: bool = later(False)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)


@dataclass
class BudgetConfig:
    #: agent steps to train for (summed over the envs)
    timesteps: int = bounded(100_000, 1, 10**12)
    #: stop early once the rolling training success rate reaches this (BabyAI's 0.99 criterion)
    stop_at_success: float | None = bounded(None, 0.0, 1.0, above=True, later=True)
    #: episodes in the rolling success rate (the live figure in logs and progress lines)
    success_window: int = bounded(100, 1, 1_000_000, later=True)
    #: which success stop_at_success reads: ``rolling`` (the last success_window episodes) or
    #: ``babyai`` (BabyAI's own metric, film_rl.tasks.babyai_metric: a window of babyai_window rows
    #: of 25,600 frames centred on the reported episode count, so a run goes on until the window
    #: around the crossing is complete)
    stop_on: Literal["rolling", "babyai"] = later("rolling")
    #: rows of 25,600 frames in BabyAI's centred success window (BabyAI: 100; 10 on GoToRedBallGrey)
    babyai_window: int = bounded(100, 1, 100_000, later=True)
    #: in a run on several levels, the one whose own rolling success (its last success_window
    #: episodes) stop_at_success reads: a curriculum stops when its last level is learnt, not when
    #: the mixture's success, which its first level lifts, reaches the rate (unset: every level's
    #: episodes together). Needs stop_on: rolling, since BabyAI's window counts every level's
    stop_level: str | None = later(None)


@dataclass
class EvalConfig:
    #: episodes of the final evaluation written to eval.json
    episodes: int = bounded(200, 1, 10_000_000)
    #: argmax actions; off by default because a memoryless policy that sees the same view twice
    #: then repeats itself forever (e.g. turning in place), which sampling escapes
    deterministic: bool = False
    #: timesteps between evaluations during training (0: only the final one)
    freq: int = bounded(0, 0, 10**12)
    #: episodes of each periodic evaluation
    freq_episodes: int = bounded(50, 1, 10_000_000)


@dataclass
class CheckpointConfig:
    #: timesteps between checkpoints (Ctrl-C / SIGTERM always writes one)
    freq: int = bounded(50_000, 0, 10**12)
    #: how many periodic checkpoints to keep on disk
    keep: int = bounded(3, 1, 1_000_000)


@dataclass
class LoggingConfig:
    #: ``auto``: online when an API key is configured, offline otherwise
    wandb: Literal["auto", "online", "offline", "disabled"] = "auto"
    #: wandb project
    project: str = "film-rl"
    #: wandb entity (team or user; null: your default)
    entity: str | None = None
    #: wandb group (empty: the experiment's name); a sweep groups its trials under its own name
    group: str = later("")
    #: extra wandb tags, e.g. a sweep trial's swept values
    tags: list[str] = field(default_factory=list, metadata={"later": True})
    #: also write TensorBoard event files to RUN_DIR/tensorboard/
    tensorboard: bool = True
    #: show progress: a bar on a terminal, plain lines in a log file
    progress_bar: bool = True
