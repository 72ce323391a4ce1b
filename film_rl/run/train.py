"""A training run, from a resolved config to a saved, evaluated model.

Read top to bottom: :func:`train` makes the run directory, the vectorized environment, the SB3
algorithm with the FiLM policy, the loggers and callbacks, learns, saves ``model.zip`` and writes
``eval.json``. :func:`resume` picks an interrupted run up at its latest checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.utils import FloatSchedule, LinearSchedule, get_device
from stable_baselines3.common.vec_env import VecEnv

from film_rl.agile.reward_model import RewardModelTrainer
from film_rl.agile.training import (
    REWARD_MODEL,
    RewardModelReward,
    RewardModelUpdates,
    build_reward_model,
    load_reward_model,
    save_reward_model,
    with_learned_reward,
)
from film_rl.config import (
    INIT_REQUIRED,
    AlgorithmConfig,
    ExperimentConfig,
    check_ranges,
    load_saved_config,
    reward_model_settings,
    save_config,
)
from film_rl.errors import UserError
from film_rl.files import remove_stale_temporaries, write_error, write_json, write_text
from film_rl.model.networks import fused_adam
from film_rl.model.policies import FilmCnnPolicy, FilmLstmPolicy
from film_rl.run import run_dir as runs
from film_rl.run.callbacks import (
    Checkpointer,
    Diverged,
    LinearEntropyBonus,
    PeriodicEval,
    Progress,
    StopOnNonFinite,
    StopOnSignal,
    first_non_finite,
    handling_signals,
)
from film_rl.run.evaluate import FINAL_EVAL_SEED, EvalResult, evaluate
from film_rl.run.sequences import cut_sequences
from film_rl.run.tracking import check_wandb, finish_wandb, make_logger, record_final_evaluation, start_wandb
from film_rl.tasks.base import Task
from film_rl.tasks.registry import task_class, task_for


class TrainingInterrupted(Exception):
    """Training stopped on Ctrl-C / SIGTERM after saving a checkpoint (or, during the final
    evaluation, with the trained model already saved)."""

    def __init__(self, run_dir: Path, checkpoint: Path, signum: int, evaluating: bool = False) -> None:
        super().__init__(f"interrupted; checkpoint saved to {checkpoint}")
        self.run_dir, self.checkpoint, self.signum, self.evaluating = run_dir, checkpoint, signum, evaluating
        #: steps of an unfinished rollout, collected but never trained on, so not counted
        self.dropped = 0


class _EvaluationStopped(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    eval: EvalResult
    timesteps: int
    #: training episodes until the rolling success first reached 0.9 / 0.99
    episodes_to: dict[float, int]
    #: the same by BabyAI's centred window (the figure BabyAI's papers report)
    babyai_episodes_to: dict[float, int]
    episodes: int
    fps: float
    seconds: float
    #: in a run on several levels, each level's own episodes, and its own episodes_to
    level_episodes: dict[str, int] = field(default_factory=dict)
    level_episodes_to: dict[str, dict[float, int]] = field(default_factory=dict)


def check_device(device: str) -> None:
    """A device torch knows the name of (whether this machine has it is :func:`resolve_device`'s)."""
    if device == "auto":
        return
    try:
        torch.device(device)
    except RuntimeError:
        raise UserError(f"device: '{device}' is not a torch device (auto, cpu, cuda, cuda:1, ...)") from None


def resolve_device(device: str) -> str:
    check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{device}' asked for, but this machine has no CUDA GPU (use device=auto)")
    if kind == "cuda" and (torch.device(device).index or 0) >= torch.cuda.device_count():
        raise UserError(f"device '{device}': this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if kind not in ("cpu", "cuda"):
        raise UserError(f"device '{device}': film-rl trains on cpu or cuda")
    return device


#: below this many cores, stepping minigrid in-process beats subprocesses (see EnvConfig.vec_env)
SUBPROCESS_MIN_CORES = 4


def use_subprocesses(config: ExperimentConfig) -> bool:
    if config.env.vec_env == "auto":
        return config.env.n_envs > 1 and (os.cpu_count() or 1) >= SUBPROCESS_MIN_CORES
    return config.env.vec_env == "subproc"


def build_env(
    config: ExperimentConfig, task: Task, seed: int, reward_model: RewardModelTrainer | None = None
) -> VecEnv:
    """The training VecEnv; with a reward model, AGILE's: episodes end at ``done``, D rewards them."""
    venv = task.training_env(seed, use_subprocesses(config), done_action_ends=reward_model is not None)
    if reward_model is None:
        return venv
    return with_learned_reward(venv, reward_model, config)


def ppo_settings(algo: AlgorithmConfig, budget: int) -> dict[str, Any]:
    """An agent recipe's PPO hyperparameters as keywords of SB3's ``PPO`` / ``RecurrentPPO``
    (the benchmarks' reference models take the same ones), for a run of ``budget`` timesteps."""
    return {
        "n_steps": algo.n_steps,
        "batch_size": algo.batch_size,
        "n_epochs": algo.n_epochs,
        "learning_rate": _scheduled(algo.learning_rate, algo.learning_rate_schedule, algo, budget),
        "gamma": algo.gamma,
        "gae_lambda": algo.gae_lambda,
        "clip_range": _scheduled(algo.clip_range, algo.clip_range_schedule, algo, budget),
        "ent_coef": algo.ent_coef,
        "vf_coef": algo.vf_coef,
        "max_grad_norm": algo.max_grad_norm,
        "target_kl": algo.target_kl,
        "normalize_advantage": algo.normalize_advantage,
    }


def schedule_horizon(algo: AlgorithmConfig, budget: int) -> int:
    """The timesteps over which the linear schedules fall to 0: ``schedule_timesteps``, or the budget."""
    return algo.schedule_timesteps or budget


def _scheduled(value: float, schedule: str, algo: AlgorithmConfig, budget: int) -> float | LinearSchedule:
    """SB3's own schedule object, from ``value`` at the start to 0 at the schedule's horizon. SB3
    reads it at the fraction of the budget played, so the horizon is a fraction of the budget."""
    if schedule != "linear":
        return value
    return LinearSchedule(value, 0.0, schedule_horizon(algo, budget) / budget)


def apply_schedules(model: BaseAlgorithm, config: ExperimentConfig) -> None:
    """Give a loaded model the config's schedules for the config's budget: a resumed run whose
    budget was raised goes on along its line (``schedule_timesteps``), or along the line stretched
    to the new budget (null), instead of the fractions its zip saved for the old budget."""
    settings = ppo_settings(config.agent.algorithm, config.budget.timesteps)
    model.learning_rate = settings["learning_rate"]
    model.lr_schedule = FloatSchedule(settings["learning_rate"])  # what SB3 reads (as _setup_lr_schedule)
    if isinstance(model, (PPO, RecurrentPPO)):  # both read clip_range as a schedule
        model.clip_range = FloatSchedule(settings["clip_range"])


def build_model(config: ExperimentConfig, task: Task, env: VecEnv, device: str) -> BaseAlgorithm:
    """The SB3 algorithm with the FiLM policy the agent recipe describes, reading the task's observations."""
    agent, algo = config.agent, config.agent.algorithm
    policy_kwargs: dict[str, Any] = {
        **task.policy_kwargs(),
        "net_arch": {"pi": list(agent.net_arch), "vf": list(agent.net_arch)},
        "optimizer_kwargs": {"eps": algo.adam_eps, "fused": fused_adam(get_device(device))},
    }
    policy: type[FilmCnnPolicy] | type[FilmLstmPolicy] = FilmCnnPolicy
    policy_kwargs["share_features_extractor"] = agent.critic_features == "shared"
    if agent.policy == "lstm":
        policy = FilmLstmPolicy
        own = agent.critic_memory == "own"
        policy_kwargs.update(lstm_hidden_size=agent.lstm_hidden, shared_lstm=not own, enable_critic_lstm=own)
        if agent.memory != "stack":  # only when set: a stack run's zip loads in versions before it
            policy_kwargs["memory"] = agent.memory
        if agent.memory_norm:  # the same: only when set
            policy_kwargs["memory_norm"] = True
        if agent.memory_scale:
            policy_kwargs["memory_scale"] = True
    model = runs.algorithm_class(config)(
        policy,  # type: ignore[arg-type]
        env,
        **ppo_settings(algo, config.budget.timesteps),
        policy_kwargs=policy_kwargs,
        seed=config.seed,
        device=device,
        verbose=0,
    )
    cut_sequences(model, algo.sequence_length)
    return model


@dataclass
class SavedPolicy:
    """The weights a run starts from (``init_from``), and where they came from."""

    path: Path
    weights: dict[str, torch.Tensor]
    #: the timesteps the source had trained when it saved them
    timesteps: int


def saved_policy(source: str, device: str) -> SavedPolicy:
    """The policy weights in ``source`` (a saved model or checkpoint, or a run directory: its
    ``model.zip``), read before the new run writes anything; a file that is not a saved model is a
    UserError naming it."""
    path = Path(source)
    if path.is_dir():
        if not (path / runs.MODEL).is_file():
            raise UserError(
                f"init_from: {path} has no {runs.MODEL} (unfinished?); pass one of its checkpoints, "
                f"{path / runs.CHECKPOINTS}/step_N.zip"
            )
        path = path / runs.MODEL
    if not path.is_file():
        raise UserError(f"init_from: no such saved model: {path}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"init_from: {path} is not a saved model (not a zip file); it may be truncated or corrupted")
    try:
        data, params, _ = load_from_zip_file(path, device=device, print_system_info=False)
    except Exception as err:  # any failure to read is a bad file, reported as one
        raise UserError(f"init_from: cannot read {path}: {type(err).__name__}: {str(err).strip()[:200]}") from None
    if not params or "policy" not in params:
        raise UserError(f"init_from: {path} holds no policy weights")
    weights: dict[str, torch.Tensor] = params["policy"]  # type: ignore[assignment]  # a state dict, typed a tensor in SB3
    return SavedPolicy(path.resolve(), weights, int((data or {}).get("num_timesteps", 0)))


def differences(own: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> tuple[list[str], ...]:
    """The names a policy has and the saved weights lack, those it lacks, and those of another shape."""
    missing = sorted(set(own) - set(saved))
    extra = sorted(set(saved) - set(own))
    resized = sorted(k for k in set(own) & set(saved) if own[k].shape != saved[k].shape)
    return missing, extra, resized


#: the features extractor's weights under every name SB3 gives it (shared, the actor's, the critic's)
FEATURES_PREFIXES = ("features_extractor.", "pi_features_extractor.", "vf_features_extractor.")


def features_of(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A policy's weights of its FiLM network (the features extractor) alone."""
    return {k: v for k, v in weights.items() if k.startswith(FEATURES_PREFIXES) and not is_memory(k)}


#: an LSTM policy's memory: the actor's LSTM and the critic's own (sb3-contrib's names)
MEMORY_PREFIXES = ("lstm_actor.", "lstm_critic.")


def is_memory(key: str) -> bool:
    """A weight of the memory or of what only a memory has to remember (the previous action's
    vectors, ``env.previous_action``): drawn afresh when a run starts from a memoryless one."""
    return key.startswith(MEMORY_PREFIXES) or ".previous_action." in key


def without_memory(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A policy's weights but its memory's: what a memoryless policy and a residual LSTM share."""
    return {k: v for k, v in weights.items() if not is_memory(k)}


def start_from(model: BaseAlgorithm, saved: SavedPolicy, parts: str = "all") -> None:
    """Give a new run's policy the saved weights, all of them or none of them: every weight
    (``parts="all"``), the FiLM network's alone (``"features"``: the features extractor, the rest
    of the policy left as drawn) or every weight but the memory's (``"memoryless"``: the LSTMs
    left as drawn). Weights of another shape (a CNN's for an LSTM under ``all``, other widths) are
    refused with what differs."""
    path, weights = saved.path, saved.weights
    own = model.policy.state_dict()
    if parts == "features":
        own, weights = features_of(own), features_of(weights)
    elif parts == "memoryless":
        own, weights = without_memory(own), without_memory(weights)
    missing, extra, resized = differences(own, weights)
    if missing or extra or resized:
        what = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {extra[0]}"
            if extra
            else f"{resized[0]} is {tuple(weights[resized[0]].shape)} there, {tuple(own[resized[0]].shape)} here"
        )
        count = len(missing) + len(extra) + len(resized)
        shape = {"features": "a FiLM network", "memoryless": "a policy (its memory aside)"}.get(parts, "a policy")
        hint = ""  # a CNN's weights for an LSTM: which part of them would fit
        if parts == "all" and getattr(model.policy, "memory", "stack") == "residual":
            if not any(differences(without_memory(own), without_memory(weights))):
                hint = "; init_parts=memoryless takes all of it but the memory"
        elif parts == "all" and not any(differences(features_of(own), features_of(weights))):
            hint = "; init_parts=features takes its FiLM network alone"
        raise UserError(
            f"init_from: {path} holds {shape} of another shape than this run's agent "
            f"({count} tensor{'s' if count > 1 else ''} differ; {what}){hint}"
        )
    model.policy.load_state_dict(weights, strict=parts == "all")


def validate(config: ExperimentConfig) -> None:
    """What the config's declared ranges alone cannot express: the task's ids and settings, devices,
    combinations."""
    check_ranges(config)
    check_device(config.device)
    task_for(config).validate()
    algo = config.agent.algorithm
    if algo.schedule_timesteps is not None and algo.schedule_timesteps < config.budget.timesteps:
        for key in ("learning_rate", "clip_range"):
            if getattr(algo, f"{key}_schedule") == "linear":
                raise UserError(
                    f"agent.algorithm.schedule_timesteps ({algo.schedule_timesteps:,}) ends before "
                    f"budget.timesteps ({config.budget.timesteps:,}): a linear {key} would be 0 past it and "
                    f"the policy would stop learning; keep {key}_schedule=constant, or the horizon at the budget"
                )
    if config.init_from == INIT_REQUIRED:
        raise UserError(
            "init_from: required: this recipe starts from another run's policy; pass init_from=RUN_DIR "
            "(a run directory, its model.zip or one of its checkpoints)"
        )
    if config.init_parts != "all" and not config.init_from:
        raise UserError(f"init_parts={config.init_parts} says what to take from init_from, which is not set")
    if config.agent.memory != "stack" and config.agent.policy != "lstm":
        raise UserError(
            f"agent.memory={config.agent.memory} is for policy: lstm; a {config.agent.policy} policy has no memory"
        )
    if config.agent.memory_norm and config.agent.policy != "lstm":
        raise UserError(f"agent.memory_norm is for policy: lstm; a {config.agent.policy} policy has no memory")
    if config.agent.memory_scale and config.agent.memory != "residual":
        raise UserError(
            "agent.memory_scale scales what a residual memory adds to the features: it needs policy: lstm "
            f"and agent.memory=residual (this agent: policy {config.agent.policy}, memory {config.agent.memory})"
        )
    if algo.sequence_length is not None and config.agent.policy != "lstm":
        raise UserError(
            f"agent.algorithm.sequence_length={algo.sequence_length} is for policy: lstm; "
            f"a {config.agent.policy} policy has no sequences to cut"
        )
    if config.init_parts == "memoryless" and config.agent.memory != "residual":
        raise UserError(
            "init_parts=memoryless gives this policy's heads another's, which read the features: "
            "it needs agent.memory=residual (policy: lstm), whose heads read them too"
        )
    if config.agent.policy == "lstm" and config.agent.critic_features == "own":
        raise UserError(
            "agent.critic_features=own is for policy: cnn; an LSTM policy's critic takes its own "
            "memory with agent.critic_memory=own"
        )
    rm = reward_model_settings(config.agent)
    if rm is not None and rm.batch_size % 2:
        raise UserError(f"agent.reward_model.batch_size must be even (half goal states), got {rm.batch_size}")


def check_before_writing(config: ExperimentConfig) -> str:
    """Everything that can be refused before a run writes a file: the config's values, the device
    (returned, resolved) and whether wandb can log as asked."""
    validate(config)
    device = resolve_device(config.device)
    check_wandb(config)
    return device


def _learn(
    model: BaseAlgorithm,
    config: ExperimentConfig,
    run_dir: Path,
    task: Task,
    reward_model: RewardModelTrainer | None = None,
    stats_state: dict[str, Any] | None = None,
    trained: bool = False,
) -> TrainResult:
    """Shared by fresh and resumed runs: learn to the budget, save, evaluate, log.

    ``stats_state``: a resumed run's episode bookkeeping (:meth:`TrainingStats.state`).
    ``trained``: the model is the run's finished ``model.zip``: only evaluate it.
    """
    for folder in (run_dir, run_dir / runs.CHECKPOINTS):
        remove_stale_temporaries(folder)  # left by a process killed while writing
    wandb_run = start_wandb(config, run_dir)
    model.set_logger(make_logger(run_dir, config.logging.tensorboard, wandb_run))
    stats = task.training_stats()
    if stats_state is not None:
        stats.restore(stats_state)

    def save_extra(path: Path) -> None:
        """Beside every saved model: the episode bookkeeping, and AGILE's reward model."""
        state = stats.state()
        if state is not None:
            write_json(runs.beside(path, runs.STATS), state)
        if reward_model is not None:
            save_reward_model(reward_model, runs.beside(path, REWARD_MODEL))

    checkpointer = Checkpointer(run_dir, config.checkpoint.freq, config.checkpoint.keep, save_extra)
    callbacks: list[Any] = [StopOnNonFinite(), stats, checkpointer]
    if config.agent.algorithm.ent_coef_schedule == "linear":
        horizon = schedule_horizon(config.agent.algorithm, config.budget.timesteps)
        callbacks.append(LinearEntropyBonus(config.agent.algorithm.ent_coef, horizon))
    if config.logging.progress_bar:
        callbacks.append(Progress(config.budget.timesteps, stats.headline))
    if reward_model is not None:
        settings = reward_model_settings(config.agent)
        assert settings is not None
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

    def evaluate_now(episodes: int, seed: int, progress: bool = False) -> EvalResult:
        # held-out seeds: training resets start at config.seed, evaluations far above it
        deterministic = config.eval.deterministic
        return evaluate(model, task, episodes, seed=seed, deterministic=deterministic, progress=progress)  # type: ignore[arg-type]

    if config.eval.freq > 0:
        callbacks.append(PeriodicEval(lambda: evaluate_now(config.eval.freq_episodes, 10_000), config.eval.freq))
    start_steps = model.num_timesteps
    remaining = 0 if trained else config.budget.timesteps - start_steps
    started = time.perf_counter()
    model_path = run_dir / runs.MODEL
    try:
        with StopOnSignal() as stopper:
            if remaining > 0:
                try:
                    model.learn(
                        remaining,
                        callback=CallbackList([*callbacks, stopper]),
                        progress_bar=False,  # film-rl's Progress ends at the budget, prints lines off a tty
                        reset_num_timesteps=start_steps == 0,
                        tb_log_name="ppo",
                    )
                except Exception as err:
                    raise _explain(err, model, config, run_dir) from None
            if stopper.received is not None:
                interrupted_at = model.num_timesteps
                model.num_timesteps = stopper.rollout_start  # what was trained on, not merely collected
                path = checkpointer.save()
                stop = TrainingInterrupted(run_dir, path, stopper.received)
                stop.dropped = interrupted_at - model.num_timesteps
                raise stop
            elapsed = time.perf_counter() - started
            if not trained:
                save_extra(model_path)  # first: a model is complete once its zip exists
                runs.save_atomically(model, model_path)
            if stopper.received is not None:  # a signal while saving: the model is safe now
                raise _EvaluationStopped(stopper.received)
            with _raise_on_signal():  # the model is safe: a signal may stop the evaluation anywhere
                result = evaluate_now(config.eval.episodes, FINAL_EVAL_SEED, progress=config.logging.progress_bar)
        write_text(run_dir / runs.EVAL, result.to_json())
        record_final_evaluation(model.logger, result.scalars(), model.num_timesteps)
        if wandb_run is not None:
            wandb_run.summary.update({f"eval/{k}": v for k, v in result.scalars().items()})
        level_episodes, level_episodes_to = stats.level_counts()
        return TrainResult(
            run_dir=run_dir,
            model_path=model_path,
            eval=result,
            timesteps=model.num_timesteps,
            episodes_to=dict(stats.episodes_to),
            babyai_episodes_to=dict(stats.babyai_episodes_to),
            episodes=stats.episodes,
            level_episodes=level_episodes,
            level_episodes_to=level_episodes_to,
            fps=(model.num_timesteps - start_steps) / max(elapsed, 1e-9),
            seconds=elapsed,
        )
    except Diverged as err:  # the interrupt's checkpoint refused a diverged model
        raise _explain(err, model, config, run_dir) from None
    except _EvaluationStopped as stop:
        raise TrainingInterrupted(run_dir, model_path, stop.signum, evaluating=True) from None
    except OSError as err:  # a log SB3 or TensorBoard writes directly
        raise write_error(err, Path(err.filename or run_dir)) from None
    finally:
        model.get_env().close()  # type: ignore[union-attr]
        if wandb_run is not None:
            finish_wandb(wandb_run)


def _explain(err: Exception, model: BaseAlgorithm, config: ExperimentConfig, run_dir: Path) -> Exception:
    """A failure inside SB3's ``learn`` that the user can act on, as one line; else the error itself."""
    if isinstance(err, OSError):
        return write_error(err, Path(err.filename or run_dir))
    bad = err.parameter if isinstance(err, Diverged) else first_non_finite(model)
    if bad is None and isinstance(err, ValueError) and "found invalid values" in str(err):
        bad = "the policy's output"  # finite but huge weights: torch.distributions refuses NaN logits
    if bad is None:
        return err
    saved = runs.checkpoints(run_dir)
    last = f"the last good checkpoint is {saved[-1][1]}" if saved else "no checkpoint was written before it"
    return UserError(
        f"training diverged at {model.num_timesteps:,} timesteps ({bad} is no longer finite); {last}. "
        f"Train again with a smaller agent.algorithm.learning_rate (this run: {config.agent.algorithm.learning_rate:g})"
    )


def _raise_on_signal() -> contextlib.AbstractContextManager[None]:
    """Ctrl-C / SIGTERM stop what runs at once (nothing in it needs saving)."""

    def handler(signum: int, frame: Any) -> None:
        raise _EvaluationStopped(signum)

    return handling_signals(handler)


def auto_threads(cores: int, n_envs: int, subprocess: bool) -> int:
    """Torch threads for ``threads: auto``.

    Envs stepping in this process take a core of their own between the network's calls, and
    subprocess workers take one core each: torch gets what is left, at least one thread and at
    most four (the policies' minibatches are small; more threads mostly wait on each other). On 2
    cores this is one thread, which docs/results.md measured faster than torch's default and far
    steadier on a loaded machine.
    """
    free = cores - (n_envs if subprocess else cores // 2)
    return max(1, min(4, free))


def torch_threads(config: ExperimentConfig) -> int | None:
    """The torch threads a run takes (``None``: torch's default, ``threads: 0``)."""
    if config.threads == "auto":
        return auto_threads(os.cpu_count() or 1, config.env.n_envs, use_subprocesses(config))
    return int(config.threads) or None


def set_up_torch(config: ExperimentConfig) -> None:
    """The run's torch threads, and numbers too small for a float (denormals) flushed to zero.

    An LSTM whose gates saturate (one reading a long-trained FiLM network's raw features) passes
    gradients of ~1e-40 back through them, and CPUs compute on such numbers many times slower:
    without the flush, GoTo's residual LSTM trained at half the steps/s (docs/results.md). Nothing
    a policy computes is that small on purpose.
    """
    threads = torch_threads(config)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # False where the CPU cannot (no SSE3): then nothing changes


def train(config: ExperimentConfig) -> TrainResult:
    """Train a fresh run of ``config``; returns where it went and how well it does."""
    device = check_before_writing(config)
    initial = saved_policy(config.init_from, device) if config.init_from else None
    if initial is not None:  # the run's config names its source wherever it is read from later
        config = dataclasses.replace(config, init_from=str(initial.path))
    set_up_torch(config)
    run_dir = runs.new_run_dir(config)
    print(f"training in {run_dir}", flush=True)  # where to look, and what to --resume, from the start
    save_config(config, run_dir / runs.CONFIG)
    vocab = task_class(config.env.kind).vocabulary()
    vocab.save(run_dir / runs.VOCAB)
    task = task_for(config, vocab)
    if task.held_out_instructions():
        print(f"held out of training: {', '.join(task.held_out_instructions())}", flush=True)
    reward_model = build_reward_model(config, vocab, run_dir, device) if reward_model_settings(config.agent) else None
    env = build_env(config, task, config.seed, reward_model)
    model = build_model(config, task, env, device)
    if initial is not None:
        try:
            start_from(model, initial, config.init_parts)
        except UserError:
            env.close()
            shutil.rmtree(run_dir)  # made a moment ago, holding only the config: nothing to keep
            raise
        what = {"features": "FiLM network", "memoryless": "policy but its memory"}.get(config.init_parts, "policy")
        print(f"{what} started from {initial.path} ({initial.timesteps:,} timesteps)", flush=True)
    return _learn(model, config, run_dir, task, reward_model)


#: what a resumed run may change: how long it runs (the budget, and the horizon of its linear
#: schedules, which a raised budget would otherwise stretch), how it is watched, and where it runs
RESUMABLE_SECTIONS = (
    "budget.",
    "agent.algorithm.schedule_timesteps=",
    "eval.",
    "checkpoint.",
    "logging.",
    "threads",
    "device",
)


@dataclass
class _Resumable:
    state: runs.SavedState
    model: BaseAlgorithm
    stats: dict[str, Any] | None


def _open_state(config: ExperimentConfig, state: runs.SavedState, device: str) -> _Resumable:
    """Load a saved model and what lies beside it; any damage is a UserError naming the file."""
    if state.timesteps is None:
        raise UserError(state.problem)
    model = runs.load_model(config, state.path, device=device)
    stats_path = runs.beside(state.path, runs.STATS)
    stats = runs.read_stats(stats_path) if stats_path.exists() else None
    if reward_model_settings(config.agent) and not runs.beside(state.path, REWARD_MODEL).exists():
        raise UserError(f"{runs.beside(state.path, REWARD_MODEL)} is missing; the reward model cannot go on")
    return _Resumable(state, model, stats)


def newest_intact(run_dir: Path, config: ExperimentConfig, device: str) -> _Resumable:
    """The newest saved model (``model.zip`` or a checkpoint, by timesteps) that loads whole.

    A damaged newer one is moved aside to ``NAME.corrupt`` (kept, never deleted) and said so, so
    that the run goes on from the newest state it really has.
    """
    found = runs.saved_states(run_dir)
    if not found:
        raise UserError(f"{run_dir} has no {runs.MODEL} and no checkpoint to resume from")
    problems = []
    for state in found:
        try:
            opened = _open_state(config, state, device)
        except UserError as err:
            problems.append((state, str(err)))
            continue
        for bad, why in problems:
            for part in runs.saved_with(bad.path):
                if part.exists() and part.suffix != ".corrupt":
                    part.rename(part.with_name(part.name + ".corrupt"))
            print(f"skipped {bad.path.relative_to(run_dir)} ({why}); kept it as {bad.path.name}.corrupt", flush=True)
        return opened
    raise UserError(
        f"{run_dir}: no saved model can be loaded (newest: {problems[0][1]})" if len(problems) == 1 else
        f"{run_dir}: none of its {len(problems)} saved models can be loaded; newest: {problems[0][1]}"
    )  # fmt: skip


def resume(run_dir: Path, overrides: list[str] | None = None) -> TrainResult:
    """Continue ``run_dir`` from its newest intact saved model (model, optimizer, timesteps,
    episode statistics, vocabulary), or only evaluate it when its training had finished.

    Only the budget (and ``agent.algorithm.schedule_timesteps``), evaluation, checkpoint, logging,
    threads and device may change on resume;
    the rest of the config is the run's own. The changed config is checked like a new run's
    before it replaces the saved one.
    """
    if not run_dir.is_dir():
        raise UserError(f"no such run directory: {run_dir}")
    for override in overrides or []:
        if not override.startswith(RESUMABLE_SECTIONS):
            raise UserError(
                f"cannot change '{override.split('=')[0]}' when resuming; only "
                + ", ".join(section.rstrip("=") for section in RESUMABLE_SECTIONS)
            )
    saved = runs.read_config(run_dir)
    config = load_saved_config(run_dir / runs.CONFIG, overrides) if overrides else saved
    device = check_before_writing(config)
    vocab = runs.read_vocab(run_dir)
    set_up_torch(config)
    latest = newest_intact(run_dir, config, device)
    model, steps = latest.model, latest.model.num_timesteps
    apply_schedules(model, config)
    cut_sequences(model, config.agent.algorithm.sequence_length)  # the rollout buffer is not saved
    # model.zip is written when training ends: at the budget, or early at budget.stop_at_success
    # (then only a budget raised now trains on); a checkpoint newer than it is an extension's
    finished = latest.state.path.name == runs.MODEL and (
        steps >= config.budget.timesteps
        or (config.budget.stop_at_success is not None and config.budget.timesteps <= saved.budget.timesteps)
    )
    if finished:
        if _evaluated(run_dir):
            why = "already reached its budget" if steps >= config.budget.timesteps else "stopped at stop_at_success"
            raise UserError(
                f"{run_dir} {why} ({steps:,} timesteps, evaluated in {runs.EVAL}); "
                f"pass budget.timesteps=N above {max(steps, saved.budget.timesteps):,} to train it further"
            )
        print(f"{runs.MODEL} at {steps:,} timesteps finished training; evaluating it", flush=True)
    else:
        print(f"continued from {latest.state.path.relative_to(run_dir)} at {steps:,} timesteps", flush=True)
    if overrides:
        save_config(config, run_dir / runs.CONFIG)
    reward_model = None
    if reward_model_settings(config.agent):
        reward_model = build_reward_model(config, vocab, run_dir, device)
        load_reward_model(reward_model, runs.beside(latest.state.path, REWARD_MODEL))
    # fresh episodes, not a replay of the first leg's
    task = task_for(config, vocab)
    model.set_env(build_env(config, task, config.seed + steps, reward_model))
    return _learn(model, config, run_dir, task, reward_model, latest.stats, trained=finished)


def _evaluated(run_dir: Path) -> bool:
    """Whether the run has its final evaluation; a damaged one is done again, and said so."""
    if not (run_dir / runs.EVAL).exists():
        return False
    try:
        runs.read_eval(run_dir / runs.EVAL)
    except UserError as err:
        print(f"{err}; evaluating again", flush=True)
        return False
    return True


def describe_interrupt(err: TrainingInterrupted) -> str:
    name = signal.Signals(err.signum).name
    if err.evaluating:
        return (
            f"{name} during the final evaluation; the trained model is saved in {err.checkpoint}\n"
            f"evaluate it with: film-rl train --resume {err.run_dir}"
        )
    dropped = f" ({err.dropped:,} steps of an unfinished rollout were not trained on, so not counted)"
    return (
        f"{name}: checkpoint saved to {err.checkpoint}{dropped if err.dropped else ''}\n"
        f"resume with: film-rl train --resume {err.run_dir}"
    )
