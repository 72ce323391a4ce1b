"""``film_rl.load_policy``: a trained policy acting on the env's own observations, outside
film-rl's loops, exactly as it acted in training."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import minigrid  # noqa: F401  (registers the levels)
import numpy as np
from stable_baselines3 import PPO

import film_rl
from film_rl.tasks.babyai_envs import InstructionWrapper
from film_rl.tasks.instructions import Vocabulary

FIXTURES = Path(__file__).parent / "fixtures" / "runs-first-release"


def test_a_policy_acts_on_minigrids_own_observation_as_in_training(tiny_run: Path) -> None:
    policy = film_rl.load_policy(tiny_run)
    model = PPO.load(tiny_run / "model.zip", device="cpu")
    raw = gym.make("BabyAI-GoToRedBallGrey-v0")
    wrapped = InstructionWrapper(gym.make("BabyAI-GoToRedBallGrey-v0"), Vocabulary.load(tiny_run / "vocab.json"))
    for seed in range(5):
        obs, _ = raw.reset(seed=seed)
        seen, _ = wrapped.reset(seed=seed)
        expected, _ = model.predict({k: v[None] for k, v in seen.items()}, deterministic=True)
        assert policy.act(obs) == int(expected[0])


def test_a_recurrent_policy_keeps_its_memory_until_reset() -> None:
    policy = film_rl.load_policy(FIXTURES / "babyai-film-lstm")
    env = gym.make("BabyAI-GoToRedBallGrey-v0")
    obs, _ = env.reset(seed=0)
    actions = []
    for _ in range(5):
        actions.append(policy.act(obs))
        obs, *_ = env.step(actions[-1])
    assert all(0 <= a < env.action_space.n for a in actions)  # type: ignore[attr-defined]
    assert policy._state is not None
    policy.reset()
    assert policy._state is None and isinstance(policy.act(env.reset(seed=0)[0]), int)


def test_an_atari_policy_reads_the_multigame_observation() -> None:
    from film_rl.tasks.atari_envs import ENV_ID, register_envs

    register_envs()
    policy = film_rl.load_policy(FIXTURES / "atari-film-cnn")
    env = gym.make(ENV_ID, games=["ALE/Pong-v5", "ALE/Breakout-v5"], settings=policy.task.env.atari)  # type: ignore[attr-defined]
    obs, _ = env.reset(seed=0)
    assert 0 <= policy.act(obs) < 18 and np.asarray(obs["game_id"]).shape == (1,)
    env.close()
