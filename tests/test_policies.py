"""The FiLM policies as SB3 sees them: build, save, and load back with plain PPO / RecurrentPPO.load."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl.envs import make_vec_env
from film_rl.instructions import Vocabulary
from film_rl.policies import FilmCnnPolicy, FilmLstmPolicy, InstructionFeatures

LEVELS = ["BabyAI-GoToLocal-v0"]

LOAD_AND_ACT = """
import sys, numpy as np
import film_rl
from {module} import {cls}
model = {cls}.load(sys.argv[1], device="cpu")
obs = dict(np.load(sys.argv[2]))
kwargs = {{}}
if {recurrent}:
    kwargs = dict(state=None, episode_start=np.ones(len(obs["image"]), dtype=bool))
actions, _ = model.predict(obs, deterministic=True, **kwargs)
print(" ".join(map(str, actions.tolist())))
"""


def _observations(venv, n=32):
    rng = np.random.default_rng(0)
    batches = []
    obs = venv.reset()
    for _ in range(n // venv.num_envs):
        batches.append(obs)
        obs, *_ = venv.step(rng.integers(0, 7, venv.num_envs))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@pytest.mark.parametrize("recurrent", [False, True])
def test_saved_model_acts_the_same_in_a_fresh_process(tmp_path, recurrent):
    venv = make_vec_env(LEVELS, Vocabulary.babyai(), 2, seed=0)
    algo, policy = (RecurrentPPO, FilmLstmPolicy) if recurrent else (PPO, FilmCnnPolicy)
    extra = (
        {"policy_kwargs": {"lstm_hidden_size": 16, "shared_lstm": True, "enable_critic_lstm": False}}
        if recurrent
        else {}
    )
    model = algo(policy, venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu", **extra)
    model.learn(64)  # move the weights away from their initial values
    obs = _observations(venv)
    kwargs = {"state": None, "episode_start": np.ones(len(obs["image"]), dtype=bool)} if recurrent else {}
    before, _ = model.predict(obs, deterministic=True, **kwargs)
    model.save(tmp_path / "model.zip")
    np.savez(tmp_path / "obs.npz", **obs)
    module = "sb3_contrib" if recurrent else "stable_baselines3"
    script = LOAD_AND_ACT.format(module=module, cls=algo.__name__, recurrent=recurrent)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model.zip"), str(tmp_path / "obs.npz")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(a) for a in before.tolist()]
    venv.close()


def test_policy_defaults_suit_symbolic_grids():
    venv = make_vec_env(LEVELS, Vocabulary.babyai(), 1, seed=0)
    model = PPO(FilmCnnPolicy, venv, n_steps=16, batch_size=16, device="cpu")
    assert isinstance(model.policy.features_extractor, InstructionFeatures)
    assert model.policy.normalize_images is False
    # SB3's orthogonal init must not have touched the FiLM head: fresh layers are identities
    head = model.policy.features_extractor.generator.head
    assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0
    venv.close()
