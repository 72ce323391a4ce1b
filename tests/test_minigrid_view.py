"""The fast egocentric view against minigrid's own ``gen_obs``, at every step of real play."""

import copy
import pickle

import gymnasium as gym
import minigrid  # noqa: F401  (registers the levels)
import numpy as np
import pytest
import torch
from minigrid.core.grid import Grid
from minigrid.envs import EmptyEnv
from minigrid.minigrid_env import MiniGridEnv

from film_rl.bench import bench_config, film_model, reference_model
from film_rl.tasks.babyai_envs import InstructionWrapper, make_babyai_env
from film_rl.tasks.instructions import Vocabulary
from film_rl.tasks.minigrid_view import egocentric_view, use_fast_view
from film_rl.tasks.registry import task_for

#: turn, turn, forward, pickup, drop, toggle: enough pickups and toggles to carry things and open doors
ACTION_ODDS = [0.22, 0.22, 0.3, 0.1, 0.06, 0.1]


def play(env: gym.Env, seed: int, steps: int):
    """Random play from ``reset(seed)``, yielding after the reset and after every step."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    yield
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.choice(len(ACTION_ODDS), p=ACTION_ODDS)))
        if terminated or truncated:
            env.reset()
        yield


def assert_same(fast: dict, stock: dict) -> None:
    assert fast["image"].dtype == stock["image"].dtype == np.uint8
    np.testing.assert_array_equal(fast["image"], stock["image"])
    assert fast["direction"] == stock["direction"] and fast["mission"] == stock["mission"]


@pytest.mark.parametrize(
    "level",
    [
        "BabyAI-GoToLocal-v0",  # one 8x8 room: the 7x7 window mostly pokes out of the grid
        "BabyAI-PutNextLocal-v0",  # objects carried into the agent's own cell
        "BabyAI-GoTo-v0",  # nine rooms, doors opened and walked through
        "BabyAI-BossLevel-v0",  # locked doors, boxes, keys
        "MiniGrid-DoorKey-8x8-v0",  # a plain MiniGrid env
    ],
)
def test_fast_view_equals_minigrid_observation_at_every_step(level):
    env = gym.make(level)
    core = env.unwrapped
    seen, carried = 0, 0
    for seed in range(3):
        for _ in play(env, seed, 250):
            assert_same(egocentric_view(core), MiniGridEnv.gen_obs(core))
            seen += 1
            carried += core.carrying is not None
    assert seen > 700 and (carried > 0 or level == "BabyAI-GoToLocal-v0")


def test_fast_view_equals_minigrid_observation_seeing_through_walls():
    env = gym.make("BabyAI-GoTo-v0")
    env.unwrapped.see_through_walls = True
    for _ in play(env, 0, 300):
        assert_same(egocentric_view(env.unwrapped), MiniGridEnv.gen_obs(env.unwrapped))


def test_training_envs_observe_through_it_and_play_as_minigrid_does():
    """Two envs, same seeds and actions: film-rl's (fast view, every wrapper) and a stock one."""
    fast = make_babyai_env(["BabyAI-PickupLoc-v0"], Vocabulary.babyai())
    stock = InstructionWrapper(gym.make("BabyAI-PickupLoc-v0"), Vocabulary.babyai())
    assert "gen_obs" in vars(fast.unwrapped) and "gen_obs" not in vars(stock.unwrapped)
    rng = np.random.default_rng(0)
    for seed in range(5):
        a, _ = fast.reset(seed=seed)
        b, _ = stock.reset(seed=seed)
        for _ in range(64):
            for key in b:
                np.testing.assert_array_equal(a[key], b[key])
            action = int(rng.choice(len(ACTION_ODDS), p=ACTION_ODDS))
            a, ra, ta, tra, _ = fast.step(action)
            b, rb, tb, trb, _ = stock.step(action)
            assert (ra, ta, tra) == (rb, tb, trb)
            if ta or tra:
                break


def test_a_copied_or_pickled_env_observes_itself():
    env = gym.make("BabyAI-GoTo-v0")
    assert use_fast_view(env)
    env.reset(seed=1)
    for clone in (copy.deepcopy(env.unwrapped), pickle.loads(pickle.dumps(env.unwrapped))):
        clone.step(clone.actions.left)  # the clone turns, the original does not
        assert_same(clone.gen_obs(), MiniGridEnv.gen_obs(clone))
        assert clone.gen_obs()["direction"] != env.unwrapped.gen_obs()["direction"]


class OwnObservation(EmptyEnv):
    def gen_obs(self):
        return {"image": np.zeros((7, 7, 3), np.uint8), "direction": 0, "mission": "mine"}


class WalledIn(Grid):
    """A grid class whose windows show nothing but wall (its own ``slice``)."""

    def slice(self, topX, topY, width, height):
        window = Grid(width, height)
        window.wall_rect(0, 0, width, height)
        window.grid = [window.grid[0]] * (width * height)
        return window


def test_envs_that_observe_their_own_way_keep_it():
    own = OwnObservation()
    assert not use_fast_view(own) and own.gen_obs()["mission"] == "mine"
    assert not use_fast_view(gym.make("CartPole-v1"))
    # a grid class of its own: minigrid's observation through it, not the fast view's
    env = gym.make("MiniGrid-Empty-8x8-v0")
    assert use_fast_view(env)
    env.reset(seed=0)
    core = env.unwrapped
    open_room = core.gen_obs()["image"]
    grid = WalledIn(core.grid.width, core.grid.height)
    grid.grid = list(core.grid.grid)
    core.grid = grid
    assert_same(core.gen_obs(), MiniGridEnv.gen_obs(core))
    assert not np.array_equal(core.gen_obs()["image"], open_room)


@pytest.mark.parametrize("fast", [True, False])
def test_env_fast_view_setting_reaches_training_evaluation_and_the_bench_reference(fast):
    config = bench_config("BabyAI-GoToLocal-v0", "film-cnn", ["env.n_envs=2", f"env.fast_view={str(fast).lower()}"])
    task = task_for(config)
    training = task.training_env(0, False)
    reference = reference_model(config)
    cores = [
        *(env.unwrapped for env in training.envs),
        task.evaluation_env().unwrapped,
        *(env.unwrapped for env in reference.get_env().envs),
    ]
    assert [("gen_obs" in vars(core)) for core in cores] == [fast] * len(cores)
    training.close()


def test_training_with_the_fast_view_is_training_with_minigrids_own():
    """Same seed, same everything but ``env.fast_view``: PPO ends with the very same weights."""
    weights = []
    for fast in ("true", "false"):
        config = bench_config(
            "BabyAI-PutNextLocal-v0",
            "film-cnn",
            ["env.n_envs=2", f"env.fast_view={fast}", "agent.algorithm.n_steps=64", "agent.algorithm.batch_size=64"],
        )
        model = film_model(config, "cpu")
        model.learn(256)
        weights.append({k: v.clone() for k, v in model.policy.state_dict().items()})
        model.get_env().close()
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert any(not torch.equal(weights[0][k], v) for k, v in film_model(config, "cpu").policy.state_dict().items())
