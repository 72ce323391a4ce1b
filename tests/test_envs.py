"""The instruction wrapper, success bookkeeping and multi-level suites, through real minigrid envs."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from film_rl.tasks.babyai_envs import InstructionWrapper, MultiLevelEnv, make_babyai_env, make_vec_env, worker_levels
from film_rl.tasks.instructions import Vocabulary

VOCAB = Vocabulary.babyai()


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
@pytest.mark.parametrize(
    "levels", [["BabyAI-GoToRedBallGrey-v0"], ["BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0", "BabyAI-PutNextLocal-v0"]]
)
def test_wrapped_env_passes_gymnasium_env_checker(levels):
    env = make_babyai_env(levels, VOCAB)
    check_env(env, skip_render_check=True)


def test_observation_is_integer_arrays_a_network_can_read():
    env = InstructionWrapper(gym.make("BabyAI-PutNextLocal-v0"), VOCAB, max_length=16)
    obs, info = env.reset(seed=3)
    space = env.observation_space
    assert isinstance(space["instruction"], gym.spaces.Box) and space["instruction"].dtype == np.int64
    assert obs["image"].shape == (3, 7, 7) and obs["image"].dtype == np.uint8
    assert VOCAB.decode(obs["instruction"][: obs["instruction_length"][0]]) == info["mission"].replace(",", "")
    assert all(obs[k] in space[k] for k in space)


def test_success_is_reported_when_the_verifier_says_so():
    env = make_babyai_env(["BabyAI-GoToRedBallNoDists-v0"], VOCAB)
    env.reset(seed=0)
    base = env.unwrapped
    # stand in front of the red ball and call done: the verifier ends the episode with reward > 0
    ball = next(o for o in base.grid.grid if o is not None and o.type == "ball")
    bx, by = ball.cur_pos
    for direction, (dx, dy) in enumerate([(1, 0), (0, 1), (-1, 0), (0, -1)]):
        cell = (bx - dx, by - dy)
        if base.grid.get(*cell) is None:
            base.agent_pos, base.agent_dir = np.array(cell), direction
            break
    _, reward, terminated, _, info = env.step(base.actions.done)
    assert terminated and reward > 0 and info["is_success"] is True
    assert info["level"] == "BabyAI-GoToRedBallNoDists-v0" and "episode" in info


def test_timeout_is_a_failure():
    env = make_babyai_env(["BabyAI-GoToRedBallGrey-v0"], VOCAB)
    env.reset(seed=0)
    truncated = False
    while not truncated:
        _, _, terminated, truncated, info = env.step(0)  # spin left forever
        assert not terminated
    assert info["is_success"] is False


def test_multi_level_env_draws_every_level_and_reports_it():
    env = make_babyai_env(["BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0"], VOCAB)
    seen = set()
    for seed in range(20):
        env.reset(seed=seed)
        seen.add(env.unwrapped.current_level)
    assert seen == {"BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0"}
    assert isinstance(env.unwrapped, MultiLevelEnv)


def test_worker_sampling_assigns_levels_round_robin():
    assert worker_levels(["a", "b", "c"], 4, "worker") == [["a"], ["b"], ["c"], ["a"]]
    assert worker_levels(["a", "b"], 2, "episode") == [["a", "b"], ["a", "b"]]


def test_rejection_sampling_prints_are_silenced(capfd):
    env = gym.make("BabyAI-PutNextLocal-v0")
    for seed in range(60):
        env.reset(seed=seed)
    assert "Sampling rejected" not in capfd.readouterr().out


def test_vec_env_in_subprocesses_steps_and_is_seeded():
    venv = make_vec_env(["BabyAI-GoToLocal-v0"], VOCAB, 2, seed=7, subprocess=True)
    try:
        first = venv.reset()
        venv.seed(7)
        again = venv.reset()
        assert np.array_equal(first["image"], again["image"])
        obs, *_ = venv.step(np.array([2, 2]))
        assert obs["instruction"].shape == (2, 48)
    finally:
        venv.close()


def test_a_timeout_is_bootstrapped_unless_the_run_makes_it_terminal():
    """SB3's PPO adds gamma * V(last observation) to the reward of a step that truncated its
    episode; with ``env.timeout_bootstrap=false`` the level's step limit ends the episode as a
    terminal state, and the rollout keeps the level's own 0 there. The same seed plays the same
    actions in both rollouts, so they differ at the timeouts and nowhere else."""
    from film_rl.bench import bench_config, film_model

    buffers = {}
    for bootstrap in (True, False):
        overrides = ["env.n_envs=2", "agent.algorithm.n_steps=96", "agent.algorithm.batch_size=64"]
        overrides.append(f"env.timeout_bootstrap={str(bootstrap).lower()}")
        model = film_model(bench_config("BabyAI-GoToObjS4-v0", "film-cnn", overrides), "cpu")
        model.learn(2 * 96)  # one rollout (the buffer keeps it), then its update
        buffers[bootstrap] = model.rollout_buffer
        model.get_env().close()
    kept, cut = buffers[False], buffers[True]
    assert np.array_equal(kept.actions, cut.actions)
    ended = kept.episode_starts[1:] == 1  # the step before each start ended an episode
    differs = kept.rewards[:-1] != cut.rewards[:-1]
    assert differs.any()  # a random policy runs out GoToObjS4's 16 steps in most episodes
    assert not (differs & ~ended).any()
    assert (kept.rewards[:-1][differs] == 0).all()  # a timeout: the level pays nothing
    assert (kept.rewards[:-1][ended & ~differs] > 0).all()  # the episodes that ended in success
