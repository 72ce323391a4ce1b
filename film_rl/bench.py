"""``film-rl bench``: throughput against a plain SB3 baseline (BabyAI, and multi-game Atari against
SB3's own single-game Atari recipe), BabyAI's sample-efficiency metric, and the conditioning
ablation, each printed as a table and saved as one JSON file.

Machines are noisy: throughput runs alternate the variants (a, b, c, d, a, b, ...) and report
medians, and every figure says which machine and command produced it.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import torch
from minigrid.wrappers import ImgObsWrapper
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
from torch import nn

from film_rl.config import AtariEnvConfig, ExperimentConfig, compose, flatten, load_experiment
from film_rl.errors import UserError
from film_rl.files import write_json
from film_rl.run.train import build_env, build_model, ppo_settings, set_up_torch, train, use_subprocesses, validate
from film_rl.tasks.minigrid_view import use_fast_view
from film_rl.tasks.registry import task_for

#: BabyAI 1.0 (Chevalier-Boisvert et al., 2019, table 3): episodes of RL training to reach 99%
#: success, the interval's lower and upper ends; BabyAI 1.1 (Hui et al., 2020, table 1): the mean
#: of the model 1.1 adopts (bow_endpool_res) and the best variant's mean on that level. Both
#: are BabyAI's centred-window metric (film_rl.tasks.babyai_metric). Taken from secondary
#: summaries of the papers' tables, unverified against the papers: docs/results.md says which.
BABYAI_EPISODES_TO_99: dict[str, dict[str, Any]] = {
    "BabyAI-GoToRedBallGrey-v0": {
        "babyai_1.0": [15_900, 17_400],
        "babyai_1.1": {"bow_endpool_res": 24_000, "best": 21_000, "best_variant": "original"},
    },
    "BabyAI-GoToRedBall-v0": {
        "babyai_1.0": [261_000, 334_000],
        "babyai_1.1": {"bow_endpool_res": 177_000, "best": 172_000, "best_variant": "pixels_endpool_res"},
    },
    "BabyAI-GoToLocal-v0": {
        "babyai_1.0": [903_000, 1_114_000],
        "babyai_1.1": {"bow_endpool_res": 611_000, "best": 242_000, "best_variant": "pixels_endpool_res"},
    },
    "BabyAI-PickupLoc-v0": {
        "babyai_1.0": [1_447_000, 1_643_000],
        "babyai_1.1": {"bow_endpool_res": 982_000, "best": 710_000, "best_variant": "original_endpool_res"},
    },
    "BabyAI-PutNextLocal-v0": {
        "babyai_1.0": [2_186_000, 2_727_000],
        "babyai_1.1": {"bow_endpool_res": 876_000, "best": 876_000, "best_variant": "bow_endpool_res"},
    },
    "BabyAI-GoTo-v0": {
        "babyai_1.0": [816_000, 1_964_000],
        "babyai_1.1": {"bow_endpool_res": 817_000, "best": 454_000, "best_variant": "original_endpool"},
    },
}

THROUGHPUT_VARIANTS = ("reference", "film_cnn", "film_lstm", "concat_lstm")
_AGENT_OF = {"film_cnn": "film-cnn", "film_lstm": "film-lstm", "concat_lstm": "concat-lstm"}


class MinigridCNN(BaseFeaturesExtractor):
    """The minigrid documentation's SB3 recipe: three 2x2 convs over the raw 7x7x3 grid, no instruction.

    :param observation_space: channels-first image space.
    :param features_dim: output width.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        channels = observation_space.shape[0]
        self.cnn = nn.Sequential(
            nn.Conv2d(channels, 16, 2), nn.ReLU(), nn.Conv2d(16, 32, 2), nn.ReLU(), nn.Conv2d(32, 64, 2), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        with torch.no_grad():
            n_flat = self.cnn(torch.as_tensor(observation_space.sample()[None]).float()).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))


def film_model(config: ExperimentConfig, device: str) -> BaseAlgorithm:
    """A film-rl variant exactly as ``film-rl train`` builds it."""
    task = task_for(config)
    return build_model(config, task, build_env(config, task, config.seed), device)


def bench_config(level: str, agent: str, overrides: list[str] | None = None, **raw: Any) -> ExperimentConfig:
    """An experiment on one level with an agent recipe, wandb off, no progress bar."""
    base: dict[str, Any] = {
        "name": "bench",
        "env": {"levels": [level], "n_envs": 8},
        "agent": agent,
        "logging": {"wandb": "disabled", "progress_bar": False, "tensorboard": False},
        "checkpoint": {"freq": 0},
    }
    base.update(raw)
    return compose(base, overrides or [])


def image_only(env: gym.Env, fast_view: bool) -> gym.Env:
    """The minigrid docs' env: the image alone (``ImgObsWrapper``), observed the way the FiLM
    variants' envs observe (``env.fast_view``), so that the ratios compare the networks."""
    if fast_view:
        use_fast_view(env)
    return ImgObsWrapper(env)


def reference_model(config: ExperimentConfig) -> PPO:
    """SB3 PPO with :class:`MinigridCNN` on the image alone, with the FiLM agent's PPO settings."""
    algo = config.agent.algorithm
    venv = sb3_make_vec_env(
        config.env.levels[0],
        n_envs=config.env.n_envs,
        seed=config.seed,
        wrapper_class=image_only,  # type: ignore[arg-type]  # SB3 passes wrapper_kwargs along
        wrapper_kwargs={"fast_view": getattr(config.env, "fast_view", True)},
        vec_env_cls=SubprocVecEnv if use_subprocesses(config) else DummyVecEnv,
    )
    return PPO(
        "CnnPolicy",
        venv,
        **ppo_settings(algo, config.budget.timesteps),
        policy_kwargs={"features_extractor_class": MinigridCNN, "normalize_images": False, "net_arch": [64]},
        seed=config.seed,
        device="cpu",
    )


def _alternate(
    variants: Sequence[str],
    build: Callable[[str], BaseAlgorithm],
    timesteps: int,
    repeats: int,
    progress: Callable[[str], None],
) -> dict[str, list[float]]:
    """Steps/s of each variant's ``learn(timesteps)``, ``repeats`` rounds alternated (a, b, c, a, b, c, ...),
    so that a noisy machine's slow spells fall on every variant alike."""
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(repeats):
        for variant in variants:
            model = build(variant)
            started = time.perf_counter()
            model.learn(timesteps)
            sps = model.num_timesteps / (time.perf_counter() - started)
            model.get_env().close()  # type: ignore[union-attr]
            samples[variant].append(sps)
            progress(f"round {round_ + 1}/{repeats} {variant:<15} {sps:8.0f} steps/s")
    return samples


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0  # Linux reports KiB


def machine() -> str:
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{platform.machine()} {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def throughput(
    level: str = "BabyAI-GoToLocal-v0",
    n_envs: int = 8,
    timesteps: int = 20_000,
    repeats: int = 3,
    device: str = "cpu",
    progress: Callable[[str], None] = print,
    overrides: list[str] | None = None,
    variants: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Training steps per second of the reference and the FiLM ``variants``, alternated, medians
    and ratios to the reference.

    ``overrides`` apply to every variant (the reference takes the PPO settings and ``env.*``);
    ``variants`` (default: every FiLM variant) leaves out those an override does not apply to
    (``agent.critic_features=own`` is the FiLM CNN's).
    """
    variants = THROUGHPUT_VARIANTS[1:] if variants is None else variants
    unknown = [v for v in variants if v not in THROUGHPUT_VARIANTS[1:]]
    if unknown or not variants:
        raise UserError(f"--variants: {', '.join(unknown) or 'none'}; choose from {', '.join(THROUGHPUT_VARIANTS[1:])}")
    timed = ("reference", *dict.fromkeys(variants))
    configs = {
        v: bench_config(level, _AGENT_OF.get(v, "film-cnn"), [f"env.n_envs={n_envs}", *(overrides or [])])
        for v in timed
    }
    for variant, config in configs.items():
        if variant != "reference":  # an override a run would refuse is refused before any timing
            validate(config)

    def build(variant: str) -> BaseAlgorithm:
        config = configs[variant]
        set_up_torch(config)  # every variant, the reference too, with the threads and flush a run would take
        if variant == "reference":
            return reference_model(config)
        return film_model(config, device)

    samples = _alternate(timed, build, timesteps, repeats, progress)
    medians = {v: statistics.median(s) for v, s in samples.items()}
    result: dict[str, Any] = {
        "benchmark": "throughput",
        "level": level,
        "n_envs": n_envs,
        "timesteps": timesteps,
        "repeats": repeats,
        "overrides": overrides or [],
        "machine": machine(),
        "steps_per_second": medians,
        "samples": samples,
        "peak_rss_mb": peak_rss_mb(),
    }
    for variant in timed[1:]:
        result[f"ratio_{variant}"] = medians[variant] / medians["reference"]
    return result


ATARI_VARIANTS = ("reference", "multigame", "multigame_lstm")
_ATARI_AGENT_OF = {"multigame": "atari-film-cnn", "multigame_lstm": "atari-film-lstm"}


def atari_bench_config(suite: str, agent: str, n_envs: int, overrides: list[str] | None = None) -> ExperimentConfig:
    """An Atari experiment from an env recipe (``atari-4game``) and an agent recipe, wandb off."""
    base: dict[str, Any] = {
        "name": "bench-atari",
        "env": suite,
        "agent": agent,
        "logging": {"wandb": "disabled", "progress_bar": False, "tensorboard": False},
        "checkpoint": {"freq": 0},
    }
    config = compose(base, [f"env.n_envs={n_envs}", *(overrides or [])])
    if config.env.kind != "atari":
        raise UserError(f"env recipe '{suite}' is not an Atari suite (env.kind: {config.env.kind})")
    config.eval.episodes = max(config.eval.episodes, len(config.env.levels))
    validate(config)
    return config


def atari_reference_model(game: str, config: ExperimentConfig) -> PPO:
    """SB3's own single-game Atari recipe: ``make_atari_env`` + ``VecFrameStack(4)`` + ``CnnPolicy``
    (Nature CNN), with the multi-game agent's PPO settings.

    ``make_atari_env``'s ``AtariWrapper`` skips frames itself and expects a ``NoFrameskip`` id;
    ``ALE/<Game>-v5`` gets ``frameskip=1`` through ``env_kwargs`` so that, as in the multi-game
    env, frames are skipped exactly 4 at a time.
    """
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from film_rl.tasks.atari_envs import register_envs

    register_envs()  # the ALE ids

    algo = config.agent.algorithm
    venv = make_atari_env(
        game,
        n_envs=config.env.n_envs,
        seed=config.seed,
        env_kwargs={"frameskip": 1},
        vec_env_cls=SubprocVecEnv if use_subprocesses(config) else DummyVecEnv,
    )
    return PPO(
        "CnnPolicy",
        VecFrameStack(venv, cast(AtariEnvConfig, config.env).atari.frame_stack),
        **ppo_settings(algo, config.budget.timesteps),
        seed=config.seed,
        device=config.device,
    )


def atari(
    suite: str = "atari-4game",
    game: str | None = None,
    n_envs: int = 8,
    timesteps: int = 20_000,
    repeats: int = 3,
    progress: Callable[[str], None] = print,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Training steps/s of one FiLM policy over the ``suite``'s games (PPO, and RecurrentPPO with the
    LSTM) against SB3's single-game recipe on ``game`` (default: the suite's first), alternated,
    medians; ``ratio_multigame`` is the FiLM PPO's median over the reference's.

    Every variant runs ``n_envs`` workers with the same PPO settings (the agent recipe's, after
    ``overrides``) on the same device (``device=`` override; ``auto`` picks CUDA).
    """
    from film_rl.run.train import resolve_device
    from film_rl.tasks.atari_envs import check_games

    configs = {v: atari_bench_config(suite, _ATARI_AGENT_OF.get(v, "atari-film-cnn"), n_envs, overrides)
               for v in ATARI_VARIANTS}  # fmt: skip
    games = configs["multigame"].env.levels
    game = game or games[0]
    check_games([game])
    device = resolve_device(configs["multigame"].device)
    set_up_torch(configs["multigame"])  # auto: one thread on 2 cores, where two contend

    def build(variant: str) -> BaseAlgorithm:
        config = configs[variant]
        if variant == "reference":
            config.device = device
            return atari_reference_model(game, config)
        return film_model(config, device)

    samples = _alternate(ATARI_VARIANTS, build, timesteps, repeats, progress)
    medians = {v: statistics.median(s) for v, s in samples.items()}
    settings = configs["multigame"].agent.algorithm
    result: dict[str, Any] = {
        "benchmark": "atari",
        "level": f"{suite} vs {game}",
        "suite": suite,
        "games": games,
        "reference_game": game,
        "reference": "SB3 make_atari_env(ALE v5, frameskip=1) + VecFrameStack(4) + PPO CnnPolicy",
        "frame_skip": cast(AtariEnvConfig, configs["multigame"].env).atari.frame_skip,
        "n_envs": n_envs,
        "n_steps": settings.n_steps,
        "batch_size": settings.batch_size,
        "n_epochs": settings.n_epochs,
        "timesteps": timesteps,
        "repeats": repeats,
        "overrides": overrides or [],
        "device": device,
        "machine": machine(),
        "steps_per_second": medians,
        "samples": samples,
        "peak_rss_mb": peak_rss_mb(),
    }
    for variant in ATARI_VARIANTS[1:]:
        result[f"ratio_{variant}"] = medians[variant] / medians["reference"]
    return result


def _run(config: ExperimentConfig, level: str | None = None) -> dict[str, Any]:
    """One run's figures; ``level``: one level of a run on several, whose own episodes count."""
    result = train(config)
    figures: dict[str, Any] = {
        "seed": config.seed,
        "episodes_to_90": result.episodes_to.get(0.9),
        "episodes_to_99": result.episodes_to.get(0.99),
        # BabyAI's own figure (a centred window of 2.56M frames, 256k on GoToRedBallGrey)
        "babyai_episodes_to_90": result.babyai_episodes_to.get(0.9),
        "babyai_episodes_to_99": result.babyai_episodes_to.get(0.99),
        "episodes": result.episodes,
        "frames": result.timesteps,
        "seconds": round(result.seconds, 1),
        "final_success_rate": result.eval.success_rate,
        "run_dir": str(result.run_dir),
    }
    if level is not None:
        reached = result.level_episodes_to.get(level, {})
        figures.update(
            {
                "episodes_to_90": reached.get(0.9),
                "episodes_to_99": reached.get(0.99),
                "babyai_episodes_to_90": None,
                "babyai_episodes_to_99": None,
                "level_episodes": result.level_episodes.get(level, 0),
                "final_success_rate": result.eval.per_kind.get(level),
                "final_success_rate_all_levels": result.eval.success_rate,
            }
        )
    return figures


def success_window(level: str) -> int:
    """BabyAI's window: 100 (episodes in our rolling figure, rows in BabyAI's centred one), 10 on
    the tiny GoToRedBallGrey."""
    return 10 if level == "BabyAI-GoToRedBallGrey-v0" else 100


def efficiency_levels(level: str, experiment: str | None = None, overrides: list[str] | None = None) -> list[str]:
    """The levels :func:`efficiency` trains on to measure ``level``: ``level`` alone (a one-level
    recipe is applied to it), or every level of a recipe on several, ``level`` among them."""
    if experiment is None:
        return [level]
    levels = list(getattr(load_experiment(experiment, overrides).env, "levels", []))
    if len(levels) <= 1:
        return [level]
    if level not in levels:
        raise UserError(f"--level {level}: {experiment} trains on {', '.join(levels)}")
    return levels


def efficiency(
    level: str,
    seeds: int = 1,
    agent: str = "film-cnn",
    budget: int = 1_000_000,
    overrides: list[str] | None = None,
    runs_dir: str = "runs",
    experiment: str | None = None,
) -> dict[str, Any]:
    """Episodes until the success first reaches 0.99, per seed: by BabyAI's centred window (the
    figure beside BabyAI's; training stops once that window is complete) and by the rolling window
    of the last 100 episodes (earlier and looser).

    :param experiment: a level's own recipe (``experiments/pickuploc.yaml``) instead of ``agent`` on
        the bench's defaults; the bench sets only the budget, the stopping rule, seeds and outputs.
        A recipe on several levels (a curriculum's second leg, which keeps its first level in the
        mix) keeps them: ``level`` is one of them, its own episodes are counted, and the run stops
        when its own rolling success reaches 0.99 (``budget.stop_level``). BabyAI's centred window
        counts every level's episodes, so it has no figure for one level among others.
    """
    runs = []
    window = success_window(level)
    levels = efficiency_levels(level, experiment, overrides)
    among_others = len(levels) > 1
    stopping = (
        {"stop_on": "rolling", "stop_level": level} if among_others else {"stop_on": "babyai", "babyai_window": window}
    )
    for seed in range(seeds):
        settings: dict[str, Any] = {
            "name": f"bench-efficiency-{level}",
            "seed": seed,
            "runs_dir": runs_dir,
            "budget": {"timesteps": budget, "stop_at_success": 0.99, "success_window": window, **stopping},
            # GoToLocal takes hours on a CPU: a checkpoint (with its episode count) now and then
            # lets `film-rl train --resume RUN_DIR` finish a run that something else stopped
            "checkpoint": {"freq": 500_000, "keep": 1},
        }
        if experiment is None:
            config = bench_config(level, agent, overrides, **settings)
        else:
            quiet = {"wandb": "disabled", "progress_bar": False, "tensorboard": False}
            fixed = [f"{key}={json.dumps(value)}" for key, value in flatten({**settings, "logging": quiet}).items()]
            one_level = [] if among_others else [f"env.levels=[{level}]"]
            config = load_experiment(experiment, [*fixed, *one_level, *(overrides or [])])
        runs.append(_run(config, level if among_others else None))
    reached = [r["babyai_episodes_to_99"] for r in runs if r["babyai_episodes_to_99"] is not None]
    rolling = [r["episodes_to_99"] for r in runs if r["episodes_to_99"] is not None]
    return {
        "benchmark": "efficiency",
        "level": level,
        "levels": levels,
        "agent": agent if experiment is None else None,
        "experiment": experiment,
        "budget": budget,
        "window": window,
        "machine": machine(),
        "runs": runs,
        "median_babyai_episodes_to_99": statistics.median(reached) if reached else None,
        "reached_99": f"{len(reached)}/{len(runs)}",
        "median_episodes_to_99": statistics.median(rolling) if rolling else None,
        "babyai": BABYAI_EPISODES_TO_99.get(level, {}),
    }


def floor(level: str, episodes: int = 1000, seed: int = 0, count: int | None = None) -> dict[str, Any]:
    """The fewest episodes BabyAI's centred metric can count on ``level``
    (:func:`film_rl.tasks.babyai_metric.fewest_episodes`), for a policy that walks minigrid's BabyAI
    bot's paths from its first frame: the bot plans shortest routes, so its mean episode length is
    about the least any policy reaches. Beside BabyAI's published counts, it says how much of a
    figure is left to win and whether a target is reachable at all. The metric counts episodes, so
    a policy with longer paths than the bot's is counted for fewer: ``count`` asks how long its
    successful episodes would have to be for the window to count only ``count``.
    """
    from minigrid.utils.baby_ai_bot import BabyAIBot

    from film_rl.tasks.babyai_envs import make_level, silence_rejection_sampling
    from film_rl.tasks.babyai_metric import fewest_episodes, success_length_for

    silence_rejection_sampling()
    env = make_level(level)
    env.reset(seed=seed)
    if not hasattr(env.unwrapped, "instrs"):
        raise UserError(f"{level} is not a BabyAI level (no instructions for minigrid's BabyAI bot to follow)")
    lengths = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        limit = int(env.unwrapped.max_steps)  # type: ignore[attr-defined]  # a level sets it at reset
        bot = BabyAIBot(env.unwrapped)
        steps, done, reward = 0, False, 0.0
        while not done:
            try:
                action = bot.replan()
            except Exception:  # the bot is a heuristic: where its planner gives up, it failed the episode
                break
            _, r, terminated, truncated, _ = env.step(action)
            steps, done, reward = steps + 1, terminated or truncated, float(r)
        if reward > 0:
            lengths.append(steps)
    env.close()
    if not lengths:
        raise UserError(f"minigrid's BabyAI bot solved none of {episodes} episodes of {level}")
    length = statistics.mean(lengths)
    window = success_window(level)
    needed = {}
    if count is not None:
        needed = {"count": count, "success_length_for_count": round(success_length_for(count, limit, window), 2)}
    return {
        "benchmark": "floor",
        "level": level,
        "machine": machine(),
        "bot_episodes": episodes,
        "bot_success_rate": len(lengths) / episodes,
        "bot_mean_length": round(length, 2),
        "max_steps": limit,
        "window": window,
        "fewest_babyai_episodes_to_99": round(fewest_episodes(length, limit, window)),
        **needed,
        "babyai": BABYAI_EPISODES_TO_99.get(level, {}),
    }


def conditioning(
    level: str,
    budget: int = 200_000,
    agent: str = "film-cnn",
    seed: int = 0,
    overrides: list[str] | None = None,
    runs_dir: str = "runs",
) -> dict[str, Any]:
    """The same budget for every conditioning mechanism: episodes to 0.9 / 0.99 and final success."""
    rows = {}
    for mechanism in ("film", "concat", "bias", "scale", "gate", "none"):
        config = bench_config(
            level,
            agent,
            [*(overrides or []), f"agent.conditioning={mechanism}"],
            name=f"bench-conditioning-{level}",
            seed=seed,
            runs_dir=runs_dir,
            budget={"timesteps": budget, "success_window": success_window(level)},
        )
        rows[mechanism] = _run(config)
    return {
        "benchmark": "conditioning",
        "level": level,
        "agent": agent,
        "budget": budget,
        "machine": machine(),
        "results": rows,
    }


def write_result(result: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create {path.parent}: {err.strerror or err}") from None
        write_json(path, result, indent=2)
