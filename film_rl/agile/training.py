"""AGILE inside an SB3 run: a learned reward model's judgement replaces the level's reward.

A training run with ``agent.reward_model.enabled`` differs from an ordinary one in three places,
each one small piece here:

* :func:`build_reward_model`: goal states (a ``film-rl goals`` file, or made with BabyAI's bot
  for the run) and a :class:`~film_rl.agile.reward_model.RewardModelTrainer` whose discriminator is
  built like the policy's network.
* :class:`RewardModelReward`, a VecEnv wrapper: the env (:class:`~film_rl.tasks.babyai_envs.DoneActionEnds`)
  ends an episode when the policy takes ``done`` and gives reward 0; this wrapper rewards that
  step with ``1[D(instruction, state) > threshold]``. The level's own reward never reaches the
  policy; its success is kept in ``info["is_success"]`` for logging.
* :class:`RewardModelUpdates`, an SB3 callback: after each rollout, the rollout's states join
  the replay of negatives and D takes its gradient steps; its metrics go to the run's logger
  (wandb, TensorBoard, CSV) under ``reward_model/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from minigrid.core.actions import Actions
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from film_rl.agile.goals import GoalDataset, load_goals, make_goals
from film_rl.agile.reward_model import Discriminator, RewardModelTrainer
from film_rl.config import ExperimentConfig, language_sections
from film_rl.errors import UserError
from film_rl.files import write_atomically
from film_rl.tasks.episodes import stack
from film_rl.tasks.holdout import Holdout
from film_rl.tasks.instructions import Vocabulary
from film_rl.tasks.splits import from_config

#: the reward model's state beside a run's model.zip, and beside each checkpoint
REWARD_MODEL = "reward_model.pt"
#: goal states a run made for itself
GOALS = "goals.npz"
#: the bot's episodes are seeded far from training (config.seed + ...) and evaluation (10_000, 1_000_000)
GOAL_SEED = 5_000_000


def run_goals(config: ExperimentConfig, vocab: Vocabulary, run_dir: Path) -> GoalDataset:
    """The run's goal states: the configured file, or the run's own (made once, then reused on resume)."""
    env, agent = language_sections(config.env, config.agent)
    settings = agent.reward_model
    holdout = from_config(env)
    path = Path(settings.goals) if settings.goals else run_dir / GOALS
    if settings.goals or path.exists():
        return without_heldout(load_goals(path, vocab), holdout, path)
    levels = config.env.levels
    print(f"reward model: BabyAI's bot plays {settings.goal_episodes * len(levels)} episodes for goal states")
    goals = make_goals(
        levels,
        settings.goal_episodes * len(levels),
        GOAL_SEED,
        vocab,
        max_length=env.max_instruction_length,
        holdout=holdout,  # the bot plays training missions only
        fast_view=env.fast_view,
    )
    goals.save(path)
    return goals


def without_heldout(goals: GoalDataset, holdout: Holdout, path: Path) -> GoalDataset:
    """A goal-state file made without the run's holdout, less its held-out missions: the reward
    model must not learn what a held-out instruction's goal looks like either."""
    held = np.array([holdout.held_out(str(m)) for m in goals.missions], dtype=bool)
    if not held.any():
        return goals
    if held.all():
        raise UserError(f"{path}: every goal state is of a held-out mission (env.holdout); none is left to train on")
    print(f"reward model: left out {int(held.sum())} of {len(goals)} goal states of held-out missions in {path}")
    return goals.subset(~held)


def build_reward_model(
    config: ExperimentConfig, vocab: Vocabulary, run_dir: Path, device: str | torch.device = "cpu"
) -> RewardModelTrainer:
    """The run's reward-model trainer; its discriminator has the policy's architecture and its own weights."""
    _, agent = language_sections(config.env, config.agent)
    settings = agent.reward_model
    network = agent.grid_network() | {"conditioning": settings.conditioning or agent.conditioning}
    model = Discriminator(len(vocab), **network)
    return RewardModelTrainer(
        run_goals(config, vocab, run_dir),
        model,
        lr=settings.learning_rate,
        rho=settings.rho,
        threshold=settings.threshold,
        split_seed=config.seed,
        replay_capacity=settings.replay_capacity,
        mismatched=settings.mismatched,
        device=device,
    )


def save_reward_model(trainer: RewardModelTrainer, path: Path) -> None:
    """Write atomically: an interrupted save never replaces a good file with half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = trainer.state_dict()
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def load_reward_model(trainer: RewardModelTrainer, path: Path) -> None:
    """A saved reward model, checked: a damaged or foreign file is a UserError naming it."""
    try:
        trainer.load_state_dict(torch.load(path, map_location=trainer.device, weights_only=True))
    except FileNotFoundError:
        raise UserError(f"{path} is missing; the reward model cannot be restored") from None
    except Exception as err:  # a truncated zip, pickled garbage, a state of another network
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load the reward model {path}: {type(err).__name__}: {reason}") from None


def with_learned_reward(venv: VecEnv, trainer: RewardModelTrainer, config: ExperimentConfig) -> VecEnv:
    """AGILE's training env: the workers' episodes end at ``done`` and the reward model pays them,
    scaled as the run's ``env.reward_scale`` scales rewards."""
    env, _ = language_sections(config.env, config.agent)
    return RewardModelReward(venv, trainer, env.reward_scale)


class RewardModelReward(VecEnvWrapper):
    """Reward the step where the policy takes ``done`` with ``1[D(state) > threshold]`` (x ``scale``).

    The judged state is the one the policy stopped in: the terminal observation, since the
    VecEnv has already reset that worker. Until D's first update (the end of the first rollout)
    every step is rewarded 0. ``info["reward_model_prob"]`` holds D's probability.

    :param venv: workers built with ``done_action_ends`` (:class:`film_rl.tasks.babyai_envs.DoneActionEnds`).
    :param trainer: the reward model.
    :param scale: reward multiplier (``env.reward_scale``).
    """

    def __init__(self, venv: VecEnv, trainer: RewardModelTrainer, scale: float = 1.0) -> None:
        super().__init__(venv)
        self.trainer = trainer
        self.done_action = int(Actions.done)  # AGILE needs BabyAI's bot, so its envs are minigrid's
        self.scale = scale
        self._actions = np.zeros(venv.num_envs, dtype=np.int64)
        #: episodes ended by ``done`` and those D rewarded, since :meth:`pop_counts`
        self.claimed = self.rewarded = 0

    def pop_counts(self) -> tuple[int, int]:
        """(episodes ended by ``done``, of which rewarded) since the last call."""
        counts = (self.claimed, self.rewarded)
        self.claimed = self.rewarded = 0
        return counts

    def reset(self) -> Any:
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(-1)
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, _, dones, infos = self.venv.step_wait()
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        claimed = [i for i in range(self.num_envs) if dones[i] and self._actions[i] == self.done_action]
        # An untrained D's verdicts are noise (all or nothing, by its initial bias); rewarding them
        # teaches the policy to press done at once. D's judgement counts from its first update on.
        if claimed and self.trainer.steps > 0:
            probs = self.trainer.probs(stack([infos[i]["terminal_observation"] for i in claimed]))
            for i, prob in zip(claimed, probs, strict=True):
                infos[i]["reward_model_prob"] = float(prob)
                rewards[i] = self.scale * float(prob > self.trainer.threshold)
            self.claimed += len(claimed)
            self.rewarded += int(np.sum(probs > self.trainer.threshold))
        return obs, rewards, dones, infos


class RewardModelUpdates(BaseCallback):
    """Between rollouts: the rollout's states join the replay of negatives, then D trains.

    :param trainer: the reward model.
    :param updates: discriminator steps after each rollout.
    :param warmup: extra steps after the first rollout of a fresh reward model.
    :param batch_size: states per step (half goal states, half policy states).
    :param seed: the generator of the batches.
    :param reward_env: the training VecEnv's reward wrapper, whose counts give
        ``reward_model/done_rate`` (episodes ended by ``done``) and ``reward_model/rewarded_rate``
        (of those, the share D rewarded): the policy's side of the game.
    """

    def __init__(
        self,
        trainer: RewardModelTrainer,
        updates: int,
        warmup: int,
        batch_size: int,
        seed: int,
        reward_env: RewardModelReward | None = None,
    ) -> None:
        super().__init__()
        self.trainer = trainer
        self.reward_env = reward_env
        self.updates, self.warmup, self.batch_size = updates, warmup, batch_size
        self.rng = np.random.default_rng(seed)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.trainer.replay.add(self.model.rollout_buffer.observations)  # type: ignore[attr-defined]
        extra = self.warmup if self.trainer.steps == 0 else 0
        metrics = self.trainer.update(self.updates + extra, self.batch_size, self.rng)
        for key, value in metrics.items():
            self.logger.record(key, value)
        if self.reward_env is not None:
            claimed, rewarded = self.reward_env.pop_counts()
            self.logger.record("reward_model/done_episodes", claimed)
            self.logger.record("reward_model/rewarded_rate", rewarded / claimed if claimed else float("nan"))
