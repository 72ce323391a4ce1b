"""MinAtar as a task family: the multi-game env, MinAtar's FiLM-ed network, training through the
command line, and the sweep whose report normalises every game by its specialists."""

import csv
import json
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, only_run_dir, run_cli
from gymnasium.utils.env_checker import check_env
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from film_rl.config import MinAtarConfig
from film_rl.model.conditioning import CONDITIONINGS
from film_rl.model.policies import MinAtarFeatures
from film_rl.tasks.minatar_envs import ENV_ID, GAMES, MultiGameMinAtarEnv, game_channels, register_envs

THREE = ["MinAtar/Breakout-v0", "MinAtar/SpaceInvaders-v0", "MinAtar/Seaquest-v0"]


def test_registered_env_passes_gymnasium_and_sb3_env_checkers():
    register_envs()
    env = gym.make(ENV_ID, games=THREE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
        sb3_check_env(env)
    env.close()
    # SB3 warns that a 10x10 grid of 0/1 cells would not suit its default CnnPolicy (which wants
    # 36x36 pixels in [0, 255]); MinAtar's own network reads it unnormalised. Nothing else may warn.
    advice = ("minimal resolution for an image is 36x36", "upper and lower bounds are not in [0, 255]")
    assert [str(w.message) for w in caught if not any(a in str(w.message) for a in advice)] == []
    assert len(caught) == 2


def test_every_games_channels_are_padded_to_the_widest_games():
    widths = {game: game_channels(game) for game in GAMES}
    assert widths["MinAtar/Breakout-v0"] == 4 and widths["MinAtar/Seaquest-v0"] == 10  # MinAtar's own state shapes
    env = MultiGameMinAtarEnv(THREE)
    assert env.observation_space["image"].shape == (10, 10, 10)
    obs, info = env.reset(seed=0, options={"game": "Breakout"})
    assert info["game"] == "Breakout" and obs["game_id"].tolist() == [0]
    assert obs["image"][:4].any() and not obs["image"][4:].any()  # Breakout's 4 channels, then zeros
    assert set(np.unique(obs["image"])) <= {0, 1}


def test_the_same_seed_plays_the_same_episodes():
    def play(seed: int) -> list[tuple[str, float, int]]:
        env = MultiGameMinAtarEnv(THREE)
        env.reset(seed=seed)
        rng, played = np.random.default_rng(0), []
        for _ in range(6):
            _, info = env.reset()
            total, steps, done = 0.0, 0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(int(rng.integers(6)))
                total, steps, done = total + float(reward), steps + 1, terminated or truncated
            played.append((info["game"], total, steps))
        return played

    assert play(3) == play(3)
    assert play(3) != play(4)


def test_sticky_actions_and_step_cap_are_minatars_settings():
    env = MultiGameMinAtarEnv(["MinAtar/Freeway-v0"], settings=MinAtarConfig(max_episode_steps=5))
    assert env._envs[0].sticky_action_prob == 0.1  # MinAtar's default
    env.reset(seed=0)
    ends = [env.step(0)[3] for _ in range(5)]
    assert ends == [False] * 4 + [True]  # Freeway itself runs 2,500 steps: the cap truncated it
    frame = MultiGameMinAtarEnv(THREE, render_mode="rgb_array")
    frame.reset(seed=0)
    assert frame.render().shape == (160, 160, 3)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_features_depend_on_the_game_exactly_when_conditioned(conditioning):
    space = MultiGameMinAtarEnv(THREE).observation_space
    torch.manual_seed(0)
    features = MinAtarFeatures(space, conditioning=conditioning)
    # MinAtar's torso: one 3x3 conv of 16 maps (8x8 after it), a 128-unit hidden layer, both conditioned
    assert features.cnn.blocks[0].conv.out_channels == 16 and features.features_dim == 128
    expected = {"film": [32, 256], "scale": [16, 128], "bias": [16, 128], "gate": [16, 128], "none": [0, 0]}
    assert features.cnn.param_sizes == expected.get(conditioning, [32, 32])  # concat: 32 extra inputs each
    image = torch.randint(0, 2, (1, 10, 10, 10)).float().repeat(2, 1, 1, 1)
    obs = {"image": image, "game_id": torch.tensor([[0.0], [2.0]])}
    features.reset_film_head()
    fresh = features(obs)
    assert fresh.shape == (2, 128)
    if features.generator is not None:
        torch.nn.init.normal_(features.generator.head.weight)
    trained = features(obs)
    assert torch.equal(fresh[0], fresh[1])  # a zero generator head: every game starts as the shared network
    assert torch.equal(trained[0], trained[1]) == (conditioning == "none")


def test_unknown_and_minimal_action_set_games_are_one_line_errors():
    typo = run_cli("train", "experiments/minatar.yaml", "env.levels=[MinAtar/Breakot-v0]")
    assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1, typo.stderr
    assert "unknown MinAtar game 'MinAtar/Breakot-v0' (did you mean: MinAtar/Breakout-v0?)" in typo.stderr
    minimal = run_cli("train", "experiments/minatar.yaml", "env.levels=[MinAtar/Breakout-v1]")
    assert minimal.returncode == 2 and "full set: MinAtar/Breakout-v0" in minimal.stderr
    narrow = run_cli("train", "experiments/minatar.yaml", "agent.channels=[8,8,8,8,8]")
    assert narrow.returncode == 2 and "shrink the 10x10 grid" in narrow.stderr


# --------------------------------------------------------------------------- through the command line


@pytest.mark.parametrize(("agent", "algorithm"), [("minatar-film-cnn", PPO), ("minatar-film-lstm", RecurrentPPO)])
def test_a_tiny_run_logs_and_evaluates_every_game(tmp_path, agent, algorithm):
    done = run_cli(
        "train", "experiments/minatar.yaml", f"agent={agent}", "agent.lstm_hidden=16", f"runs_dir={tmp_path}",
        *TINY, "env.n_envs=3", "eval.episodes=3", "eval.freq_episodes=3",
        # 256 steps per game: a random Asterix episode lasts up to ~190 steps (56 at the median),
        # and each game must end one in training for its rollout column to exist
        "budget.timesteps=768",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = only_run_dir(tmp_path)
    header = (run / "progress.csv").read_text().splitlines()[0].split(",")
    for game in ("Breakout", "SpaceInvaders", "Asterix"):
        assert f"rollout/ep_return/{game}" in header and f"eval/ep_return/{game}" in header
    result = json.loads((run / "eval.json").read_text())
    assert list(result["per_game"]) == ["Breakout", "SpaceInvaders", "Asterix"]
    assert "human_normalized" not in result  # MinAtar has no human reference scores
    model = algorithm.load(run / "model.zip", device="cpu")
    assert isinstance(model.policy.features_extractor, MinAtarFeatures)
    assert model.action_space == gym.spaces.Discrete(6)


def test_declared_sweep_reports_every_game_normalised_by_its_specialists(tmp_path):
    experiment = tmp_path / "minatar-tiny.yaml"
    experiment.write_text(
        f"base: {ROOT / 'experiments/minatar.yaml'}\n"
        "name: minatar-tiny\n"
        "sweep:\n"
        "  settings:\n"
        "    - {name: film}\n"
        "    - {name: specialist-Breakout, env.levels: [MinAtar/Breakout-v0], budget.timesteps: 128}\n"
        "    - {name: specialist-Asterix, env.levels: [MinAtar/Asterix-v0], budget.timesteps: 128}\n"
        "  seeds: 1\n"
    )
    tiny = [t for t in TINY if not t.startswith("eval.freq")]
    two = "env.levels=[MinAtar/Breakout-v0,MinAtar/Asterix-v0]"
    runs = f"runs_dir={tmp_path}"
    done = run_cli("sweep", str(experiment), runs, "--max-concurrent", "1", two, *tiny, "eval.episodes=2")
    assert done.returncode == 0, done.stdout + done.stderr
    folder = next((tmp_path / "sweeps").iterdir())
    trials = sorted(p.name for p in (folder / "trials").iterdir())
    assert trials == ["film,seed=0", "specialist-Asterix,seed=0", "specialist-Breakout,seed=0"]
    done = run_cli("report", str(folder))
    assert done.returncode == 0, done.stderr
    text = (folder / "report" / "report.md").read_text()
    assert "specialist-normalized return" in text and "## Per game" in text
    rows = list(csv.DictReader((folder / "report" / "per-game.csv").open()))
    by = {(r["setting"], r["game"]): r for r in rows}
    assert set(by) == {("film", "Breakout"), ("film", "Asterix"), ("specialist-Breakout", "Breakout"),
                       ("specialist-Asterix", "Asterix")}  # fmt: skip
    for game in ("Breakout", "Asterix"):  # a specialist is its own yardstick
        specialist = by[(f"specialist-{game}", game)]
        if float(specialist["return_mean"]) != 0:
            assert float(specialist["normalized_mean"]) == pytest.approx(1.0)
            film = by[("film", game)]
            ratio = float(film["return_mean"]) / float(specialist["return_mean"])
            assert float(film["normalized_mean"]) == pytest.approx(ratio)
    assert (folder / "report" / "curves-per-game.png").stat().st_size > 10_000


def test_one_runs_report_draws_each_game_and_leaves_out_an_evaluation_it_trained_past(tmp_path):
    done = run_cli(
        "train", "experiments/minatar.yaml", "env.levels=[MinAtar/Breakout-v0,MinAtar/Asterix-v0]",
        f"runs_dir={tmp_path}", *TINY, "eval.episodes=2", "checkpoint.freq=64",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = only_run_dir(tmp_path)
    report = run_cli("report", str(run))
    assert report.returncode == 0, report.stderr
    text = (run / "report" / "report.md").read_text()
    assert text.startswith(f"# Run {run}") and "## Per game" in text and "No final figure" not in text
    assert {r["game"] for r in csv.DictReader((run / "report" / "per-game.csv").open())} == {"Breakout", "Asterix"}
    assert (run / "report" / "curves-per-game.png").stat().st_size > 10_000
    # resumed with a larger budget, the run's newest checkpoint is younger than its evaluation
    checkpoint = max((run / "checkpoints").glob("step_*.zip"), key=lambda p: p.stat().st_mtime)
    evaluated = (run / "eval.json").stat().st_mtime
    os.utime(checkpoint, (evaluated + 60, evaluated + 60))
    stale = run_cli("report", str(run), "--out", str(tmp_path / "stale"))
    assert stale.returncode == 0, stale.stderr
    assert "No final figure" in stale.stdout and "## Per game" not in stale.stdout
    assert (tmp_path / "stale" / "curves-per-game.png").is_file()  # the curves are all the log's
    assert run_cli("report", str(tmp_path)).returncode == 2  # neither a sweep nor a run
