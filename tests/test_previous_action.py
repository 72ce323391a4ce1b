"""``env.previous_action``: the policy observes the action it took last, as IMPALA's and R2D2's
LSTMs do, through a learned vector per action that starts at zero."""

import gymnasium as gym
import numpy as np
import torch
from conftest import TINY

from film_rl.config import load_experiment
from film_rl.model.policies import InstructionFeatures
from film_rl.run.policy import Policy
from film_rl.run.train import build_env, build_model
from film_rl.tasks.babyai_envs import make_babyai_env
from film_rl.tasks.instructions import Vocabulary
from film_rl.tasks.registry import task_for


def test_the_observation_holds_the_action_taken_last_and_none_at_an_episode_start():
    env = make_babyai_env(["BabyAI-GoToObjS4-v0"], Vocabulary.babyai(), previous_action=True)
    none = env.action_space.n  # minigrid's 7 actions: 7 means none yet
    obs, _ = env.reset(seed=0)
    assert obs["previous_action"].tolist() == [none] and env.observation_space.contains(obs)
    for action in (2, 0, 1, 6):
        obs, _, terminated, truncated, _ = env.step(action)
        assert obs["previous_action"].tolist() == [action] and env.observation_space.contains(obs)
        if terminated or truncated:
            break
    obs, _ = env.reset(seed=1)
    assert obs["previous_action"].tolist() == [none]
    assert (
        "previous_action" not in make_babyai_env(["BabyAI-GoToObjS4-v0"], Vocabulary.babyai()).observation_space.spaces
    )


def _features(space: gym.spaces.Dict) -> InstructionFeatures:
    torch.manual_seed(0)
    return InstructionFeatures(space)


def test_the_previous_action_starts_as_nothing_and_learns():
    """The network with it computes what the network without it does (same draw) until it is
    trained, and training reaches its vectors."""
    env = make_babyai_env(["BabyAI-GoToObjS4-v0"], Vocabulary.babyai(), previous_action=True)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(2)
    batch = {k: torch.as_tensor(v[None], dtype=torch.float32) for k, v in obs.items()}
    with_it = _features(env.observation_space)
    without = _features(
        gym.spaces.Dict({k: v for k, v in env.observation_space.spaces.items() if k != "previous_action"})
    )
    assert torch.equal(with_it(batch), without(batch))
    with torch.no_grad():  # the vector is added at the features' scale (their root mean square)
        with_it.previous_action.weight.fill_(1.0)
        assert torch.allclose(with_it(batch), without(batch) + without(batch).pow(2).mean().sqrt(), rtol=1e-5)
        with_it.previous_action.weight.zero_()
    with_it(batch).sum().backward()
    grad = with_it.previous_action.weight.grad
    assert grad[2].abs().sum() > 0 and grad[np.arange(8) != 2].abs().sum() == 0  # the action taken, only


def test_a_policy_in_your_own_loop_gets_its_previous_action_as_training_does():
    """A policy built with ``env.previous_action`` acts through :class:`Policy` (what
    ``load_policy`` returns) on minigrid's own env, whose observation has no such key, as it acts
    in film-rl's env, which adds it. Its vectors are drawn large, so that a previous action the
    loop got wrong would change the actions."""
    config = load_experiment("experiments/quickstart.yaml", [*TINY, "env.previous_action=true"])
    task = task_for(config)
    env = build_env(config, task, config.seed, None)
    policy = Policy(build_model(config, task, env, "cpu"), task)
    env.close()
    torch.manual_seed(0)
    with torch.no_grad():
        policy.model.policy.features_extractor.previous_action.weight.normal_(0.0, 5.0)
    ours = make_babyai_env(["BabyAI-GoToRedBallGrey-v0"], Vocabulary.babyai(), previous_action=True)
    theirs = gym.make("BabyAI-GoToRedBallGrey-v0")
    telling = 0  # steps whose action depends on the previous action: where a wrong one would show
    for seed in range(3):
        obs, _ = ours.reset(seed=seed)
        raw, _ = theirs.reset(seed=seed)
        policy.reset()
        for _ in range(20):
            action = policy.act(raw)
            batch = {k: np.repeat(v[None], 8, axis=0) for k, v in obs.items()}
            batch["previous_action"] = np.arange(8).reshape(8, 1)  # every action and none
            each, _ = policy.model.predict(batch, deterministic=True)
            assert action == int(each[obs["previous_action"][0]])
            telling += len(set(each.tolist())) > 1
            obs, _, end, cut, _ = ours.step(action)
            raw, *_ = theirs.step(action)
            if end or cut:
                break
    assert telling >= 10
