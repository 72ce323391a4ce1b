"""A trained policy outside film-rl's own loops: your env, your episode loop, its actions.

>>> import gymnasium as gym
>>> policy = load_policy(run_dir)                      # doctest: +SKIP
>>> env = gym.make("BabyAI-GoToLocal-v0")              # doctest: +SKIP
>>> obs, _ = env.reset(seed=0)                         # doctest: +SKIP
>>> action = policy.act(obs)                           # doctest: +SKIP

The observation is the env's own (minigrid's ``{image, direction, mission}``, or the multi-game
env's ``{image, game_id}``): the mission is tokenized with the run's vocabulary exactly as in
training. An LSTM policy keeps its memory between calls: call :meth:`Policy.reset` when an
episode starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl.run import run_dir as runs
from film_rl.tasks.base import Task
from film_rl.tasks.registry import task_for


class Policy:
    """One trained policy acting in one env, one observation at a time."""

    def __init__(self, model: PPO | RecurrentPPO, task: Task) -> None:
        self.model, self.task = model, task
        self._state: tuple[np.ndarray, ...] | None = None
        self._start = True
        # a run trained with env.previous_action observes its last action: this loop remembers it
        previous = getattr(model.observation_space, "spaces", {}).get("previous_action")
        self._none = None if previous is None else int(previous.high.max())
        self._previous = self._none

    def reset(self) -> None:
        """A new episode starts: an LSTM policy forgets the last one (and its last action)."""
        self._state, self._start, self._previous = None, True, self._none

    def act(self, observation: dict[str, Any], deterministic: bool = True) -> int:
        """The action for the env's ``observation`` (argmax by default; sampled when not)."""
        batch = {key: value[None] for key, value in self.task.policy_input(observation).items()}
        if self._previous is not None:
            batch["previous_action"] = np.array([[self._previous]], np.int64)
        if isinstance(self.model, RecurrentPPO):
            action, self._state = self.model.predict(
                batch, state=self._state, episode_start=np.array([self._start]), deterministic=deterministic
            )
        else:
            action, _ = self.model.predict(batch, deterministic=deterministic)
        self._start = False
        if self._previous is not None:
            self._previous = int(action[0])
        return int(action[0])


def load_policy(target: str | Path, device: str = "cpu") -> Policy:
    """The policy of a run directory (its newest model), or of a model / checkpoint zip inside one."""
    run_dir, model_path = runs.locate(target)
    config = runs.read_config(run_dir)
    task = task_for(config, runs.read_vocab(run_dir))
    return Policy(runs.load_model(config, model_path, device=device), task)
