"""A training run, from a resolved config to a saved, evaluated model.

Read top to bottom: :func:`train` makes the run directory, the vectorized environment, the SB3
algorithm with the FiLM policy, the loggers and callbacks, learns, saves ``model.zip`` and writes
``eval.json``. :func:`resume` picks an interrupted run up at its latest checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from minigrid.core.actions import Actions
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv

from film_rl import runs
from film_rl.agile import (
    REWARD_MODEL,
    RewardModelReward,
    RewardModelUpdates,
    build_reward_model,
    load_reward_model,
    save_reward_model,
)
from film_rl.callbacks import Checkpointer, GameStats, InstructionStats, PeriodicEval, StopOnSignal
from film_rl.config import AlgorithmConfig, ExperimentConfig, load_experiment, save_config
from film_rl.envs import check_levels, make_vec_env
from film_rl.errors import UserError
from film_rl.evaluate import EvalResult, evaluate
from film_rl.instructions import Vocabulary
from film_rl.networks import fused_adam
from film_rl.policies import FilmCnnPolicy, FilmLstmPolicy, GameFeatures
from film_rl.reward_model import RewardModelTrainer
from film_rl.tracking import make_logger, start_wandb


class TrainingInterrupted(Exception):
    """Training stopped on Ctrl-C / SIGTERM after saving a checkpoint."""

    def __init__(self, run_dir: Path, checkpoint: Path, signum: int) -> None:
        super().__init__(f"interrupted; checkpoint saved to {checkpoint}")
        self.run_dir, self.checkpoint, self.signum = run_dir, checkpoint, signum


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    eval: EvalResult
    timesteps: int
    #: BabyAI's metric: training episodes until the rolling success first reached 0.9 / 0.99
    episodes_to: dict[float, int]
    episodes: int
    fps: float
    seconds: float


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' asked for, but this machine has no CUDA GPU (use device=auto)")
    return device


#: below this many cores, stepping minigrid in-process beats subprocesses (see EnvConfig.vec_env)
SUBPROCESS_MIN_CORES = 4


def use_subprocesses(config: ExperimentConfig) -> bool:
    if config.env.vec_env == "auto":
        return config.env.n_envs > 1 and (os.cpu_count() or 1) >= SUBPROCESS_MIN_CORES
    return config.env.vec_env == "subproc"


def build_env(
    config: ExperimentConfig, vocab: Vocabulary, seed: int, reward_model: RewardModelTrainer | None = None
) -> VecEnv:
    """The training VecEnv; with a reward model, AGILE's: episodes end at ``done``, D rewards them."""
    if config.env.kind == "atari":
        from film_rl.atari import make_atari_vec_env

        return make_atari_vec_env(
            config.env.levels,
            config.env.atari,
            config.env.n_envs,
            seed=seed,
            sampling=config.env.sampling,
            subprocess=use_subprocesses(config),
        )
    check_levels(config.env.levels)
    venv = make_vec_env(
        config.env.levels,
        vocab,
        config.env.n_envs,
        seed=seed,
        sampling=config.env.sampling,
        max_length=config.env.max_instruction_length,
        reward_scale=config.env.reward_scale,
        subprocess=use_subprocesses(config),
        done_action_ends=reward_model is not None or config.env.episode_end == "done",
        reward_success_at_done=reward_model is None,
    )
    if reward_model is None:
        return venv
    return RewardModelReward(venv, reward_model, int(Actions.done), config.env.reward_scale)


def ppo_settings(algo: AlgorithmConfig) -> dict[str, Any]:
    """An agent recipe's PPO hyperparameters as keywords of SB3's ``PPO`` / ``RecurrentPPO``
    (the benchmarks' reference models take the same ones)."""
    return {
        "n_steps": algo.n_steps,
        "batch_size": algo.batch_size,
        "n_epochs": algo.n_epochs,
        "learning_rate": algo.learning_rate,
        "gamma": algo.gamma,
        "gae_lambda": algo.gae_lambda,
        "clip_range": algo.clip_range,
        "ent_coef": algo.ent_coef,
        "vf_coef": algo.vf_coef,
        "max_grad_norm": algo.max_grad_norm,
        "target_kl": algo.target_kl,
        "normalize_advantage": algo.normalize_advantage,
    }


def build_model(config: ExperimentConfig, env: VecEnv, device: str) -> BaseAlgorithm:
    """The SB3 algorithm with the FiLM policy the agent recipe describes."""
    agent, algo = config.agent, config.agent.algorithm
    policy_kwargs: dict[str, Any] = {
        "features_extractor_kwargs": {**agent.grid_network(), "features_dim": agent.features_dim},
        "net_arch": {"pi": list(agent.net_arch), "vf": list(agent.net_arch)},
        "optimizer_kwargs": {"eps": algo.adam_eps, "fused": fused_adam(get_device(device))},
    }
    if config.env.kind == "atari":  # the FiLM-ed Nature CNN over [0, 1] frames, conditioned on the game id
        policy_kwargs["features_extractor_class"] = GameFeatures
        policy_kwargs["features_extractor_kwargs"] = {
            "conditioning": agent.conditioning,
            "channels": tuple(agent.channels),
            "instruction_dim": agent.instruction_dim,
            "features_dim": agent.features_dim,
        }
        policy_kwargs["normalize_images"] = True
    policy: type[FilmCnnPolicy] | type[FilmLstmPolicy] = FilmCnnPolicy
    if agent.policy == "lstm":
        policy = FilmLstmPolicy
        policy_kwargs.update(lstm_hidden_size=agent.lstm_hidden, shared_lstm=True, enable_critic_lstm=False)
    return runs.algorithm_class(config)(
        policy,  # type: ignore[arg-type]
        env,
        **ppo_settings(algo),
        policy_kwargs=policy_kwargs,
        seed=config.seed,
        device=device,
        verbose=0,
    )


def validate(config: ExperimentConfig) -> None:
    """Range checks the types alone cannot express."""
    positive = {
        "env.n_envs": config.env.n_envs,
        "agent.algorithm.n_steps": config.agent.algorithm.n_steps,
        "agent.algorithm.batch_size": config.agent.algorithm.batch_size,
        "agent.algorithm.n_epochs": config.agent.algorithm.n_epochs,
        "budget.timesteps": config.budget.timesteps,
        "eval.episodes": config.eval.episodes,
        "env.max_instruction_length": config.env.max_instruction_length,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{key} must be positive, got {value}")
    if config.agent.algorithm.learning_rate <= 0:
        raise UserError("agent.algorithm.learning_rate must be positive")
    if not config.agent.channels or min(config.agent.channels) <= 0:
        raise UserError("agent.channels must list positive widths")
    if config.env.kind == "atari":
        from film_rl.atari import validate_atari

        validate_atari(config)
        if config.env.episode_end != "level":
            raise UserError(
                "env.episode_end: done is for BabyAI levels (minigrid's done action); Atari games end themselves"
            )
    else:
        check_levels(config.env.levels)
    rm = config.agent.reward_model
    if rm.enabled:
        if not 0.0 < rm.threshold < 1.0:
            raise UserError(f"agent.reward_model.threshold must be in (0, 1), got {rm.threshold}")
        if not 0.0 <= rm.mismatched <= 1.0:
            raise UserError(f"agent.reward_model.mismatched must be in [0, 1], got {rm.mismatched}")
        if not 0.0 <= rm.rho < 1.0:
            raise UserError(f"agent.reward_model.rho must be in [0, 1), got {rm.rho}")
        if rm.batch_size < 2 or rm.batch_size % 2:
            raise UserError(f"agent.reward_model.batch_size must be even and at least 2, got {rm.batch_size}")
        if min(rm.goal_episodes, rm.updates_per_rollout, rm.replay_capacity) <= 0 or rm.warmup_updates < 0:
            raise UserError(
                "agent.reward_model.goal_episodes, updates_per_rollout and replay_capacity must be positive"
            )
        if rm.learning_rate <= 0:
            raise UserError("agent.reward_model.learning_rate must be positive")


def _learn(
    model: BaseAlgorithm,
    config: ExperimentConfig,
    run_dir: Path,
    vocab: Vocabulary,
    device: str,
    reward_model: RewardModelTrainer | None = None,
    stats_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Shared by fresh and resumed runs: learn to the budget, save, evaluate, log.

    ``stats_state``: a resumed run's episode bookkeeping (:meth:`InstructionStats.state`).
    """
    wandb_run = start_wandb(config, run_dir)
    model.set_logger(make_logger(run_dir, config.logging.tensorboard, wandb_run))
    stats: InstructionStats | GameStats
    if config.env.kind == "atari":
        stats = GameStats(config.budget.success_window)
    else:
        stats = InstructionStats(vocab, config.budget.success_window, stop_at=config.budget.stop_at_success)
        if stats_state is not None:
            stats.restore(stats_state)

    def save_extra(path: Path) -> None:
        """Beside every saved model: the episode bookkeeping, and AGILE's reward model."""
        if isinstance(stats, InstructionStats):
            runs.write_json_atomically(runs.beside(path, runs.STATS), stats.state())
        if reward_model is not None:
            save_reward_model(reward_model, runs.beside(path, REWARD_MODEL))

    checkpointer = Checkpointer(run_dir, config.checkpoint.freq, config.checkpoint.keep, save_extra)
    callbacks: list[Any] = [stats, checkpointer]
    if reward_model is not None:
        settings = config.agent.reward_model
        env = model.get_env()
        updates = RewardModelUpdates(
            reward_model,
            settings.updates_per_rollout,
            settings.warmup_updates,
            settings.batch_size,
            config.seed,
            env if isinstance(env, RewardModelReward) else None,
        )
        callbacks.append(updates)

    def evaluate_now(episodes: int, seed: int) -> EvalResult:
        # held-out seeds: training resets start at config.seed, evaluations far above it
        return evaluate(model, config.env, vocab, episodes, seed=seed, deterministic=config.eval.deterministic)  # type: ignore[arg-type]

    if config.eval.freq > 0:
        callbacks.append(PeriodicEval(lambda: evaluate_now(config.eval.freq_episodes, 10_000), config.eval.freq))
    start_steps = model.num_timesteps
    remaining = config.budget.timesteps - start_steps
    started = time.perf_counter()
    try:
        with StopOnSignal() as stopper:
            if remaining > 0:
                model.learn(
                    remaining,
                    callback=CallbackList([*callbacks, stopper]),
                    progress_bar=config.logging.progress_bar,
                    reset_num_timesteps=start_steps == 0,
                    tb_log_name="ppo",
                )
            if stopper.received is not None:
                path = checkpointer.save()
                raise TrainingInterrupted(run_dir, path, stopper.received)
        elapsed = time.perf_counter() - started
        model_path = run_dir / runs.MODEL
        runs.save_atomically(model, model_path)
        save_extra(model_path)
        result = evaluate_now(config.eval.episodes, 1_000_000)
        (run_dir / runs.EVAL).write_text(result.to_json())
        if wandb_run is not None:
            wandb_run.summary.update({f"eval/{k}": v for k, v in result.scalars().items()})
        return TrainResult(
            run_dir=run_dir,
            model_path=model_path,
            eval=result,
            timesteps=model.num_timesteps,
            episodes_to=dict(stats.episodes_to),
            episodes=stats.episodes,
            fps=(model.num_timesteps - start_steps) / max(elapsed, 1e-9),
            seconds=elapsed,
        )
    finally:
        model.get_env().close()  # type: ignore[union-attr]
        if wandb_run is not None:
            wandb_run.finish()


def _set_threads(config: ExperimentConfig) -> None:
    if config.threads > 0:
        torch.set_num_threads(config.threads)


def train(config: ExperimentConfig) -> TrainResult:
    """Train a fresh run of ``config``; returns where it went and how well it does."""
    validate(config)
    _set_threads(config)
    device = resolve_device(config.device)
    run_dir = runs.new_run_dir(config)
    save_config(config, run_dir / runs.CONFIG)
    vocab = Vocabulary.babyai()
    vocab.save(run_dir / runs.VOCAB)
    reward_model = build_reward_model(config, vocab, run_dir, device) if config.agent.reward_model.enabled else None
    env = build_env(config, vocab, config.seed, reward_model)
    model = build_model(config, env, device)
    return _learn(model, config, run_dir, vocab, device, reward_model)


RESUMABLE_SECTIONS = ("budget.", "eval.", "checkpoint.", "logging.", "threads", "device")


def resume(run_dir: Path, overrides: list[str] | None = None) -> TrainResult:
    """Continue ``run_dir`` from its latest checkpoint (model, optimizer, timesteps, vocabulary).

    Only the budget, evaluation, checkpoint, logging, threads and device may change on resume;
    the rest of the config is the run's own.
    """
    if not run_dir.is_dir():
        raise UserError(f"no such run directory: {run_dir}")
    for override in overrides or []:
        if not override.startswith(RESUMABLE_SECTIONS):
            raise UserError(
                f"cannot change '{override.split('=')[0]}' when resuming; only {', '.join(RESUMABLE_SECTIONS)}"
            )
    config = runs.read_config(run_dir)
    if overrides:
        config = load_experiment(run_dir / runs.CONFIG, overrides)
        save_config(config, run_dir / runs.CONFIG)
    vocab = runs.read_vocab(run_dir)
    # a finished run's model.zip is its newest state; otherwise the newest checkpoint is
    found = runs.checkpoints(run_dir)
    latest = run_dir / runs.MODEL if (run_dir / runs.MODEL).exists() else (found[-1][1] if found else None)
    if latest is None:
        raise UserError(f"{run_dir} has no checkpoint to resume from")
    _set_threads(config)
    device = resolve_device(config.device)
    model = runs.load_model(config, latest, device=device)
    # a run stopped after its last checkpoint but before its evaluation is finished off, not refused
    if model.num_timesteps >= config.budget.timesteps and (run_dir / runs.EVAL).exists():
        raise UserError(
            f"{run_dir} already reached its budget ({model.num_timesteps} >= {config.budget.timesteps} timesteps); "
            "pass budget.timesteps=N to train it further"
        )
    reward_model = None
    if config.agent.reward_model.enabled:
        reward_model = build_reward_model(config, vocab, run_dir, device)
        saved = runs.beside(latest, REWARD_MODEL)
        if not saved.exists():
            raise UserError(f"{run_dir} is an AGILE run but {saved} is missing; cannot resume its reward model")
        load_reward_model(reward_model, saved)
    print(f"continued from {latest.relative_to(run_dir)} at {model.num_timesteps:,} timesteps", flush=True)
    # fresh episodes, not a replay of the first leg's
    model.set_env(build_env(config, vocab, config.seed + model.num_timesteps, reward_model))
    stats_path = runs.beside(latest, runs.STATS)
    stats_state = json.loads(stats_path.read_text()) if stats_path.exists() else None
    return _learn(model, config, run_dir, vocab, device, reward_model, stats_state)


def describe_interrupt(err: TrainingInterrupted) -> str:
    name = signal.Signals(err.signum).name
    return f"{name}: checkpoint saved to {err.checkpoint}\nresume with: film-rl train --resume {err.run_dir}"
