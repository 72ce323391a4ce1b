"""Roll a saved policy out for N episodes and report success overall, per instruction kind and level
(BabyAI), or returns and human-normalized scores per game (Atari).

Episodes are assigned up front (episode ``i`` is reset with seed ``seed + i``) and run in a few
parallel slots with one batched forward pass per step, so the result does not depend on which
episodes happen to end first; sampled actions come from a generator seeded with ``seed``, so the
same call gives the same numbers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl.agile.reward_model import RewardModelTrainer
from film_rl.config import EnvConfig
from film_rl.tasks.babyai_envs import make_babyai_env
from film_rl.tasks.instructions import Vocabulary, instruction_kind


@dataclass
class EvalResult:
    """An evaluation's figures; what does not apply to the env family (success on Atari, games on
    BabyAI) is ``None`` or empty and left out of the JSON."""

    #: BabyAI's verdict; ``None`` on Atari, where games have scores, not success
    success_rate: float | None
    #: raw (unclipped) returns; on Atari a mix of games' scales, see ``per_game`` instead
    mean_return: float
    #: in agent steps (on Atari, 4 emulator frames each)
    mean_episode_length: float
    episodes: int
    #: success rate per instruction kind, and per level for multi-level suites
    per_kind: dict[str, float] = field(default_factory=dict)
    #: an AGILE run's reward model judged on the episodes' final states (``--reward-model``)
    reward_model: dict[str, float] | None = None
    #: Atari: per game ``episodes``, ``mean_return``, ``std_return``, ``mean_episode_length`` and
    #: ``human_normalized`` (of the mean return; left out for games without reference scores)
    per_game: dict[str, dict[str, float]] | None = None
    #: Atari: ``mean`` and ``median`` across games of the per-game human-normalized scores
    human_normalized: dict[str, float] | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None and v != {}}, indent=2)

    def scalars(self) -> dict[str, float]:
        """Flat numbers for a logger: ``success_rate/<kind>``, ``ep_return/<game>``,
        ``human_normalized/<game>``, ``human_normalized_mean`` ... beside the headline figures."""
        out: dict[str, float] = {"mean_return": self.mean_return, "mean_episode_length": self.mean_episode_length}
        out["episodes"] = float(self.episodes)
        if self.success_rate is not None:
            out["success_rate"] = self.success_rate
        out.update({f"success_rate/{kind}": rate for kind, rate in self.per_kind.items()})
        for game, figures in (self.per_game or {}).items():
            out[f"ep_return/{game}"] = figures["mean_return"]
            if "human_normalized" in figures:
                out[f"human_normalized/{game}"] = figures["human_normalized"]
        out.update({f"human_normalized_{k}": v for k, v in (self.human_normalized or {}).items()})
        out.update({f"reward_model/{k}": v for k, v in (self.reward_model or {}).items()})
        return out


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
    options: Callable[[int], dict[str, Any]] | None = None,
) -> list[Episode]:
    """Run ``episodes`` episodes; the first ``record`` keep their rendered frames.

    :param make_env: zero-argument callable returning one wrapped env (``render_mode="rgb_array"``
        when recording).
    :param options: episode index -> its reset options, e.g. which Atari game it plays.
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
        o, info = envs[slot].reset(seed=seed + episode, options=options(episode) if options else None)
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
    video_episodes: int | None = None,
    reward_model: RewardModelTrainer | None = None,
) -> EvalResult:
    """Evaluate on the true environment reward and BabyAI's own success verdict (Atari: see
    :func:`evaluate_games`).

    Every run, AGILE's included, plays the level's own episodes here (success ends them, ``done``
    does nothing), so AGILE and true-reward runs compare on the same terms. With
    ``reward_model``, D also judges each episode's final state, which is a goal state exactly
    when the episode succeeded: its precision and recall go to ``EvalResult.reward_model``.

    ``video_episodes``: how many of the first episodes to record (default 4).
    """
    if env_config.kind == "atari":
        return evaluate_games(model, env_config, episodes, seed, deterministic, video_dir, video_episodes)
    record = min(video_episodes or 4, episodes) if video_dir is not None else 0

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
        from film_rl.run.video import write_episode_videos

        write_episode_videos(results[:record], video_dir)
    result = summarize(results, multi_level=len(env_config.levels) > 1)
    if reward_model is not None:
        result.reward_model = judge_final_states(reward_model, results)
    return result


def evaluate_games(
    model: PPO | RecurrentPPO,
    env_config: EnvConfig,
    episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    video_dir: Path | None = None,
    video_episodes: int | None = None,
) -> EvalResult:
    """Atari: episode ``i`` plays game ``i mod K`` of the suite, a whole game (no life-loss ends, raw
    rewards, ALE's 30-minute cap); returns and human-normalized scores per game, mean and median
    across games.

    ``video_episodes``: how many of the first episodes to record; default one per game.
    """
    from film_rl.tasks.atari_envs import game_name, make_atari_env

    games = list(env_config.levels)
    record = min(len(games) if video_episodes is None else video_episodes, episodes) if video_dir is not None else 0

    def make_env() -> gym.Env:
        render_mode = "rgb_array" if record else None
        return make_atari_env(games, env_config.atari, training=False, render_mode=render_mode)

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        results = rollout(
            model, make_env, episodes, seed, deterministic, record=record, options=lambda i: {"game": i % len(games)}
        )
    for i, ep in enumerate(results):
        ep.level = game_name(games[i % len(games)])
    if video_dir is not None:
        from film_rl.run.video import write_game_videos

        write_game_videos(results[:record], video_dir)
    return summarize_per_game(results)


def summarize_per_game(episodes: list[Episode]) -> EvalResult:
    """Per-game figures of finished Atari episodes (``Episode.level`` holds the game's name)."""
    from film_rl.tasks.atari_scores import human_normalized

    by_game: dict[str, list[Episode]] = defaultdict(list)
    for ep in episodes:
        by_game[ep.level].append(ep)
    per_game: dict[str, dict[str, float]] = {}
    for game, played in by_game.items():
        returns = [ep.ret for ep in played]
        figures = {
            "episodes": float(len(played)),
            "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)),
            "mean_episode_length": float(np.mean([ep.length for ep in played])),
        }
        score = human_normalized(game, figures["mean_return"])
        if not np.isnan(score):
            figures["human_normalized"] = score
        per_game[game] = figures
    scores = [f["human_normalized"] for f in per_game.values() if "human_normalized" in f]
    return EvalResult(
        success_rate=None,
        mean_return=float(np.mean([ep.ret for ep in episodes])),
        mean_episode_length=float(np.mean([ep.length for ep in episodes])),
        episodes=len(episodes),
        per_game=per_game,
        human_normalized={"mean": float(np.mean(scores)), "median": float(np.median(scores))} if scores else None,
    )


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
