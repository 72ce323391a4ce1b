"""Roll a saved policy out for N episodes and report success overall, per instruction kind and level.

Episodes are assigned up front (episode ``i`` is reset with seed ``seed + i``) and run in a few
parallel slots with one batched forward pass per step, so the result does not depend on which
episodes happen to end first; sampled actions come from a generator seeded with ``seed``, so the
same call gives the same numbers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl.config import EnvConfig
from film_rl.envs import make_babyai_env
from film_rl.instructions import Vocabulary, instruction_kind
from film_rl.reward_model import RewardModelTrainer


@dataclass
class EvalResult:
    success_rate: float
    mean_return: float
    mean_episode_length: float
    episodes: int
    #: success rate per instruction kind, and per level for multi-level suites
    per_kind: dict[str, float] = field(default_factory=dict)
    #: an AGILE run's reward model judged on the episodes' final states (``--reward-model``)
    reward_model: dict[str, float] | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, indent=2)


@dataclass
class Episode:
    mission: str
    level: str
    success: bool
    ret: float
    length: int
    frames: list[np.ndarray] = field(default_factory=list)
    #: the observation the episode ended on: a goal state exactly when ``success``
    final_obs: dict[str, np.ndarray] | None = None


def summarize(episodes: list[Episode], multi_level: bool) -> EvalResult:
    groups: dict[str, list[bool]] = defaultdict(list)
    for ep in episodes:
        groups[instruction_kind(ep.mission)].append(ep.success)
        if multi_level:
            groups[ep.level].append(ep.success)
    return EvalResult(
        success_rate=float(np.mean([e.success for e in episodes])),
        mean_return=float(np.mean([e.ret for e in episodes])),
        mean_episode_length=float(np.mean([e.length for e in episodes])),
        episodes=len(episodes),
        per_kind={k: float(np.mean(v)) for k, v in sorted(groups.items())},
    )


def _stack(observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([o[key] for o in observations]) for key in observations[0]}


def rollout(
    model: PPO | RecurrentPPO,
    make_env: Any,
    episodes: int,
    seed: int = 0,
    deterministic: bool = True,
    slots: int = 16,
    record: int = 0,
) -> list[Episode]:
    """Run ``episodes`` episodes; the first ``record`` keep their rendered frames.

    :param make_env: zero-argument callable returning one wrapped env (``render_mode="rgb_array"``
        when recording).
    """
    n = max(1, min(slots, episodes))
    envs: list[gym.Env] = [make_env() for _ in range(n)]
    queue = list(range(episodes))
    current: list[int | None] = [None] * n
    obs: list[dict[str, np.ndarray] | None] = [None] * n
    running: list[Episode | None] = [None] * n
    finished: dict[int, Episode] = {}
    recurrent = isinstance(model, RecurrentPPO)
    state: tuple[np.ndarray, ...] | None = None
    starts = np.ones(n, dtype=bool)

    def start(slot: int) -> None:
        episode = queue.pop(0)
        o, info = envs[slot].reset(seed=seed + episode)
        current[slot], obs[slot], starts[slot] = episode, o, True
        running[slot] = Episode(info.get("mission", ""), "", False, 0.0, 0)
        if episode < record:
            running[slot].frames.append(envs[slot].render())  # type: ignore[union-attr, arg-type]

    for slot in range(n):
        start(slot)
    if recurrent:
        layers, _, hidden = (int(v) for v in model.policy.lstm_hidden_state_shape)  # type: ignore[union-attr]
        state = (np.zeros((layers, n, hidden), np.float32), np.zeros((layers, n, hidden), np.float32))

    try:
        while any(c is not None for c in current):
            active = [i for i in range(n) if current[i] is not None]
            batch = _stack([obs[i] for i in active])  # type: ignore[misc]
            if recurrent:
                assert state is not None
                sub = tuple(s[:, active] for s in state)
                actions, new = model.predict(
                    batch, state=sub, episode_start=starts[active], deterministic=deterministic
                )
                for s, ns in zip(state, new, strict=True):  # type: ignore[arg-type]
                    s[:, active] = ns
            else:
                actions, _ = model.predict(batch, deterministic=deterministic)
            starts[:] = False
            for slot, action in zip(active, actions, strict=True):
                o, reward, terminated, truncated, info = envs[slot].step(int(action))
                ep = running[slot]
                assert ep is not None
                ep.ret += float(reward)
                ep.length += 1
                if current[slot] is not None and current[slot] < record:  # type: ignore[operator]
                    ep.frames.append(envs[slot].render())  # type: ignore[arg-type]
                obs[slot] = o
                if terminated or truncated:
                    ep.final_obs = o
                    ep.success = bool(info.get("is_success", terminated and float(reward) > 0))
                    ep.level = str(info.get("level", ep.level))
                    finished[current[slot]] = ep  # type: ignore[index]
                    current[slot] = None
                    if queue:
                        start(slot)
    finally:
        for env in envs:
            env.close()
    return [finished[i] for i in range(episodes)]


def evaluate(
    model: PPO | RecurrentPPO,
    env_config: EnvConfig,
    vocab: Vocabulary,
    episodes: int = 200,
    seed: int = 0,
    deterministic: bool = True,
    video_dir: Path | None = None,
    video_episodes: int = 4,
    reward_model: RewardModelTrainer | None = None,
) -> EvalResult:
    """Evaluate on the true environment reward and BabyAI's own success verdict.

    Every run, AGILE's included, plays the level's own episodes here (success ends them, ``done``
    does nothing), so AGILE and true-reward runs compare on the same terms. With
    ``reward_model``, D also judges each episode's final state, which is a goal state exactly
    when the episode succeeded: its precision and recall go to ``EvalResult.reward_model``.
    """
    record = min(video_episodes, episodes) if video_dir is not None else 0

    def make_env() -> gym.Env:
        return make_babyai_env(
            env_config.levels,
            vocab,
            max_length=env_config.max_instruction_length,
            render_mode="rgb_array" if record else None,
        )

    # Sampled actions draw from torch's global generator: seed it for this evaluation only, so the
    # same seed gives the same numbers in any process, and training's own random stream is untouched.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        results = rollout(model, make_env, episodes, seed=seed, deterministic=deterministic, record=record)
    if video_dir is not None:
        from film_rl.video import write_episode_videos

        write_episode_videos(results[:record], video_dir)
    result = summarize(results, multi_level=len(env_config.levels) > 1)
    if reward_model is not None:
        result.reward_model = judge_final_states(reward_model, results)
    return result


def judge_final_states(reward_model: RewardModelTrainer, episodes: list[Episode]) -> dict[str, float]:
    """D's verdict on each episode's final state against the level's: precision, recall, accuracy."""
    finals = [ep.final_obs for ep in episodes if ep.final_obs is not None]
    truth = np.array([ep.success for ep in episodes if ep.final_obs is not None])
    said = reward_model.reward(_stack(finals)) > 0 if finals else np.zeros(0, bool)  # type: ignore[arg-type]
    true_positives = float(np.sum(said & truth))
    return {
        "precision": true_positives / max(1.0, float(said.sum())),
        "recall": true_positives / max(1.0, float(truth.sum())),
        "accuracy": float(np.mean(said == truth)) if len(truth) else float("nan"),
        "threshold": reward_model.threshold,
        "goal_states": float(truth.sum()),
        "rewarded_states": float(said.sum()),
    }
