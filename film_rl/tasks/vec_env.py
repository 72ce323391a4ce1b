"""The one vectorized-env factory: a task hands in one env constructor per worker.

Workers step in subprocesses or in this process; a subprocess worker ignores Ctrl-C, which is the
trainer's to handle (it saves a checkpoint, then closes the workers).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence

import gymnasium as gym
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv


def worker_levels(levels: Sequence[str], n_envs: int, sampling: str) -> list[list[str]]:
    """Which levels (games) each of ``n_envs`` workers plays.

    ``episode``: every worker draws among all levels each episode. ``worker``: worker ``i``
    plays ``levels[i % len(levels)]`` only, so every batch still mixes levels.
    """
    if sampling == "worker":
        return [[levels[i % len(levels)]] for i in range(n_envs)]
    return [list(levels) for _ in range(n_envs)]


class _Worker:
    """A picklable constructor that, in a subprocess, leaves SIGINT to the trainer."""

    def __init__(self, make: Callable[[], gym.Env], subprocess: bool) -> None:
        self.make, self.subprocess = make, subprocess

    def __call__(self) -> gym.Env:
        if self.subprocess:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return self.make()


def make_vec_env(workers: Sequence[Callable[[], gym.Env]], seed: int, subprocess: bool) -> VecEnv:
    """One worker per constructor, in subprocesses or in this process, seeded ``seed + i``."""
    factories = [_Worker(make, subprocess) for make in workers]
    venv: VecEnv = SubprocVecEnv(factories) if subprocess else DummyVecEnv(factories)  # type: ignore[arg-type]
    venv.seed(seed)
    return venv
