"""Evaluation bookkeeping: instruction kinds, per-level success, and reproducible roll-outs."""

from stable_baselines3 import PPO

from film_rl.config import BabyAIEnvConfig, ExperimentConfig
from film_rl.model.policies import FilmCnnPolicy
from film_rl.run.evaluate import Episode, evaluate
from film_rl.tasks.babyai import summarize
from film_rl.tasks.babyai_envs import make_vec_env
from film_rl.tasks.instructions import Vocabulary, instruction_kind
from film_rl.tasks.registry import task_for


def test_instruction_kinds_follow_the_babyai_grammar():
    assert instruction_kind("go to the red ball") == "go to"
    assert instruction_kind("pick up a blue key") == "pick up"
    assert instruction_kind("open the yellow door") == "open"
    assert instruction_kind("put the grey box next to the green ball") == "put next"
    assert instruction_kind("open a door, then go to the red ball") == "sequence"
    assert instruction_kind("pick up the key after you open the door") == "sequence"


def test_multi_level_summary_reports_every_level_and_kind():
    episodes = [
        Episode("go to the red ball", "BabyAI-GoToLocal-v0", True, 0.9, 5),
        Episode("go to a key", "BabyAI-GoToLocal-v0", False, 0.0, 64),
        Episode("pick up the blue box", "BabyAI-PickupLoc-v0", True, 0.5, 11),
    ]
    result = summarize(episodes, multi_level=True)
    assert result.episodes == 3 and abs(result.success_rate - 2 / 3) < 1e-9
    assert result.per_kind == {
        "BabyAI-GoToLocal-v0": 0.5,
        "BabyAI-PickupLoc-v0": 1.0,
        "go to": 0.5,
        "pick up": 1.0,
    }
    assert abs(result.mean_episode_length - 80 / 3) < 1e-9


def test_evaluation_is_reproducible_for_a_seed_and_covers_each_level():
    vocab = Vocabulary.babyai()
    levels = ["BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0"]
    venv = make_vec_env(levels, vocab, 1, seed=0)
    model = PPO(FilmCnnPolicy, venv, n_steps=16, batch_size=16, seed=0, device="cpu")
    task = task_for(ExperimentConfig(env=BabyAIEnvConfig(levels=levels)), vocab)
    a = evaluate(model, task, episodes=12, seed=5, deterministic=False)
    b = evaluate(model, task, episodes=12, seed=5, deterministic=False)
    assert a == b
    assert set(levels) <= set(a.per_kind) and a.episodes == 12
    venv.close()
