"""Multi-game Atari through real ALE games: one action set, preprocessing done once, per-game scores,
and a FiLM policy trained and evaluated on two games through the command line."""

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ROOT, only_run_dir, run_cli
from gymnasium.utils.env_checker import check_env
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_atari_env as sb3_make_atari_env

from film_rl.config import AtariConfig, load_experiment
from film_rl.model.conditioning import CONDITIONINGS
from film_rl.model.policies import GameFeatures
from film_rl.run.train import train
from film_rl.tasks.atari_envs import (
    ENV_ID,
    MultiGameAtariEnv,
    atari_games,
    game_name,
    make_atari_env,
    make_atari_vec_env,
    make_game,
    register_envs,
)
from film_rl.tasks.atari_scores import REFERENCE_SCORES, GameScores, human_normalized

TWO = ["ALE/Pong-v5", "ALE/Breakout-v5"]
#: a CPU-cheap run: 2 workers, one PPO update a rollout, 100-step games (400 frames), one torch thread
TINY = [
    "env.levels=[ALE/Pong-v5,ALE/Breakout-v5]",
    "env.n_envs=2",
    "env.vec_env=dummy",
    "env.atari.max_episode_frames=400",
    "agent.algorithm.n_steps=64",
    "agent.algorithm.batch_size=64",
    "agent.algorithm.n_epochs=1",
    "budget.timesteps=256",
    "eval.episodes=2",
    "eval.freq=128",
    "eval.freq_episodes=2",
    "threads=1",
    "logging.progress_bar=false",
]


def _frame(info):
    return int(info["episode_frame_number"])


# --------------------------------------------------------------------------- the environment


def test_ten_game_suite_ships_with_ale_py_and_shares_18_actions():
    games = load_experiment(ROOT / "experiments/atari-10game.yaml").env.levels
    assert len(games) == 10 and all(game_name(g) in REFERENCE_SCORES for g in games)
    meanings = set()
    for game in games:
        single = make_game(game, AtariConfig())
        assert single.action_space == gym.spaces.Discrete(18)
        meanings.add(tuple(single.unwrapped.get_action_meanings()))
        single.close()
    assert len(meanings) == 1  # the same 18 actions, in the same order, for every game: one action head
    env = MultiGameAtariEnv(games, preload=False)
    assert env.action_space == gym.spaces.Discrete(18)
    for index, game in enumerate(games):
        obs, info = env.reset(seed=index, options={"game": game})
        assert obs["game_id"].tolist() == [index] and info["game"] == game_name(game)
        env.step(17)
    env.close()


def test_reference_scores_name_real_games_and_normalize_random_to_0_and_human_to_1():
    shipped = {game_name(g) for g in atari_games()}
    assert set(REFERENCE_SCORES) <= shipped and len(REFERENCE_SCORES) == 57
    for game, (random, human) in REFERENCE_SCORES.items():
        assert human_normalized(game, random) == 0.0 and human_normalized(game, human) == pytest.approx(1.0)
    assert np.isnan(human_normalized("Tetris", 10.0))  # no published reference


def test_frames_are_84x84_grayscale_stacked_and_skipped_exactly_four_at_a_time():
    env = MultiGameAtariEnv(["ALE/Breakout-v5"], settings=AtariConfig(noop_max=0))
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (4, 84, 84) and obs["image"].dtype == np.uint8
    assert obs["image"][:3].max() == 0 and obs["image"][3].max() > 0  # zero-padded until the stack fills
    start = _frame(info)
    for step in range(1, 4):
        newest = obs["image"][3].copy()
        obs, _, _, _, info = env.step(0)
        assert _frame(info) == start + 4 * step
        assert np.array_equal(obs["image"][2], newest)  # the stack shifts by one frame per step
    assert obs in env.observation_space

    noops = MultiGameAtariEnv(["ALE/Breakout-v5"])
    starts = {_frame(noops.reset(seed=seed)[1]) for seed in range(6)}
    assert all(1 <= s <= 30 for s in starts) and len(starts) > 1  # random no-op starts, 1 frame each


@pytest.mark.parametrize(("env_kwargs", "skipped"), [({"frameskip": 1}, 4), ({}, 16)])
def test_bench_reference_skips_four_frames_only_with_frameskip_1(env_kwargs, skipped):
    """SB3's AtariWrapper skips frames itself: an ALE v5 id keeps its own skip of 4 unless told not to."""
    venv = sb3_make_atari_env("ALE/Breakout-v5", n_envs=1, seed=0, env_kwargs=env_kwargs)
    venv.reset()
    frames = [_frame(venv.step(np.array([0]))[3][0]) for _ in range(2)]
    assert frames[1] - frames[0] == skipped
    venv.close()


@pytest.fixture(autouse=True)
def _registered() -> None:
    """ALE's ids and film_rl/MultiGameAtari-v0, as a user's own script registers them."""
    register_envs()


def test_registered_env_passes_gymnasium_and_sb3_env_checkers():
    env = gym.make(ENV_ID, games=TWO)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure too
        check_env(env.unwrapped)
        sb3_check_env(env)
    env.close()


def test_games_are_pinned_per_worker_or_drawn_per_episode():
    venv = make_atari_vec_env(TWO, AtariConfig(), 4, seed=0, sampling="worker")
    assert venv.reset()["game_id"].ravel().tolist() == [0, 1, 0, 1]  # every batch mixes the games
    venv.close()
    env = MultiGameAtariEnv(TWO)
    env.reset(seed=0)
    drawn = {env.reset()[1]["game"] for _ in range(12)}
    assert drawn == {"Pong", "Breakout"}


def test_life_loss_ends_the_training_episode_but_the_game_goes_on():
    env = make_atari_env(["ALE/Breakout-v5"], AtariConfig())
    _, info = env.reset(seed=0)
    lives, rng = info["lives"], np.random.default_rng(0)
    for _ in range(2000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(18)))
        if terminated or truncated:
            break
    assert terminated and info["lives"] == lives - 1 and "episode" not in info  # Monitor: the game is not over
    before = _frame(info)
    _, info = env.reset()
    assert _frame(info) == before + 4  # one no-op step on, not a new game
    env.close()


def test_rewards_are_clipped_for_training_only_and_monitor_logs_raw_whole_games():
    settings = AtariConfig(max_episode_frames=1200, terminal_on_life_loss=False)
    training = make_atari_env(["ALE/SpaceInvaders-v5"], settings)
    raw = make_atari_env(["ALE/SpaceInvaders-v5"], settings, training=False)
    training.reset(seed=3)
    raw.reset(seed=3)
    rng = np.random.default_rng(0)
    clipped, scores = [], []
    while True:
        action = int(rng.integers(18))
        _, r_train, *_, info = training.step(action)
        _, r_raw, terminated, truncated, _ = raw.step(action)
        clipped.append(r_train)
        scores.append(r_raw)
        if terminated or truncated:
            break
    assert max(scores) > 1 and set(clipped) <= {-1.0, 0.0, 1.0}
    assert np.array_equal(np.sign(scores), clipped)
    assert info["episode"]["r"] == sum(scores) and info["episode"]["game"] == "SpaceInvaders"


# --------------------------------------------------------------------------- scores and the policy


def test_game_scores_keep_a_window_per_game_and_summarize_across_games():
    scores = GameScores(window=2)
    for game, ret in [("Pong", -21), ("Pong", -19), ("Pong", 14.6), ("Breakout", 1.7), ("Tetris", 3)]:
        scores.add(game, ret)
    summary = scores.summary()
    assert summary["ep_return/Pong"] == pytest.approx((-19 + 14.6) / 2)  # the window drops the first game
    assert summary["episodes/Pong"] == 3 and summary["ep_return/Tetris"] == 3
    assert "human_normalized/Tetris" not in summary  # no reference: kept out of the mean and median
    pong, breakout = human_normalized("Pong", -2.2), 0.0
    assert summary["human_normalized/Pong"] == pytest.approx(pong)
    assert summary["human_normalized_mean"] == pytest.approx((pong + breakout) / 2)
    assert summary["human_normalized_median"] == pytest.approx((pong + breakout) / 2)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_features_depend_on_the_game_exactly_when_conditioned(conditioning):
    space = MultiGameAtariEnv(TWO, preload=False).observation_space
    torch.manual_seed(0)
    features = GameFeatures(space, conditioning=conditioning, channels=(8, 16, 16), features_dim=32)
    image = torch.rand(1, 4, 84, 84).repeat(2, 1, 1, 1)
    obs = {"image": image, "game_id": torch.tensor([[0.0], [1.0]])}  # SB3 hands Box ids over as floats
    features.reset_film_head()
    fresh = features(obs)
    assert fresh.shape == (2, 32)
    if features.generator is not None:
        torch.nn.init.normal_(features.generator.head.weight)
    trained = features(obs)
    assert torch.equal(fresh[0], fresh[1])  # a zero generator head: every game starts as the shared network
    assert torch.equal(trained[0], trained[1]) == (conditioning == "none")


@pytest.mark.parametrize("conditioning", ["film", "scale", "bias", "gate"])
def test_training_batches_fold_each_games_modulation_into_the_convs_exactly(conditioning):
    space = MultiGameAtariEnv(TWO, preload=False).observation_space
    torch.manual_seed(0)
    features = GameFeatures(space, conditioning=conditioning, channels=(8, 16, 16), features_dim=32)
    assert features.foldable
    torch.nn.init.normal_(features.generator.head.weight, std=0.3)
    # in float64, so that the two summation orders agree to far below any real discrepancy (in
    # float32 a weight gradient summed over 40 x 20 x 20 positions differs by ~1e-3 between them)
    features.double()
    image, game_id = torch.rand(40, 4, 84, 84, dtype=torch.float64), torch.randint(0, 2, (40, 1)).double()

    def run(folded):
        features.zero_grad()
        if folded:  # what a training minibatch takes
            out = features.linear(features.cnn.forward_by_game(image, game_id, features.film_params))
        else:  # FiLM on the feature maps, what acting takes
            out = features.linear(features.cnn(image, features.film_params(game_id)))
        (out * torch.arange(32.0, dtype=torch.float64)).sum().backward()
        return out.detach(), [p.grad.clone() for p in features.parameters()]

    (plain, plain_grads), (folded, folded_grads) = run(False), run(True)
    torch.testing.assert_close(folded, plain, rtol=1e-9, atol=1e-10)
    for a, b in zip(folded_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert not GameFeatures(space, conditioning="concat").foldable  # concat widens the conv's input instead


# --------------------------------------------------------------------------- through the command line


@pytest.fixture(scope="module")
def atari_run(tmp_path_factory: pytest.TempPathFactory):
    runs = tmp_path_factory.mktemp("atari-runs")
    done = run_cli("train", "experiments/atari-4game.yaml", f"runs_dir={runs}", *TINY)
    assert done.returncode == 0, done.stderr
    assert "human_normalized across games" in done.stdout
    return only_run_dir(runs)


def test_training_logs_per_game_returns_and_human_normalized_scores(atari_run):
    header = (atari_run / "progress.csv").read_text().splitlines()[0].split(",")
    for game in ("Pong", "Breakout"):
        for key in (f"rollout/ep_return/{game}", f"rollout/human_normalized/{game}", f"eval/ep_return/{game}"):
            assert key in header, key
    for key in ("rollout/human_normalized_mean", "rollout/human_normalized_median", "eval/human_normalized_mean"):
        assert key in header, key
    result = json.loads((atari_run / "eval.json").read_text())
    assert set(result) == {"mean_return", "mean_episode_length", "episodes", "per_game", "human_normalized"}


def test_evaluate_reports_every_game_and_records_one_video_per_game(atari_run, tmp_path):
    videos = tmp_path / "videos"
    done = run_cli("evaluate", str(atari_run), "--episodes", "2", "--json", "--video", str(videos), OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result["per_game"]) == ["Pong", "Breakout"] and result["episodes"] == 2
    for figures in result["per_game"].values():
        assert {"episodes", "mean_return", "std_return", "mean_episode_length", "human_normalized"} <= set(figures)
        assert figures["mean_episode_length"] <= 100  # 400 frames, 4 per step: whole (capped) games
    assert set(result["human_normalized"]) == {"mean", "median"}
    names = sorted(p.name for p in videos.glob("*.mp4"))
    assert [v.split("_return")[0] for v in names] == ["episode_000_Pong", "episode_001_Breakout"]


def test_lstm_policy_trains_on_two_games_and_loads_with_recurrent_ppo(tmp_path):
    overrides = ["agent=atari-film-lstm", "agent.lstm_hidden=32", f"runs_dir={tmp_path}", "logging.wandb=disabled"]
    threads = torch.get_num_threads()
    try:
        result = train(load_experiment(ROOT / "experiments/atari-4game.yaml", [*overrides, *TINY]))
    finally:
        torch.set_num_threads(threads)
    assert set(result.eval.per_game or {}) == {"Pong", "Breakout"}
    model = RecurrentPPO.load(result.model_path, device="cpu")
    assert isinstance(model.policy.features_extractor, GameFeatures)
    assert model.action_space == gym.spaces.Discrete(18)


def test_unknown_game_is_one_line_naming_close_matches():
    done = run_cli("train", "experiments/atari-4game.yaml", "env.levels=[ALE/Pongg-v5,ALE/Breakout-v5]")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "unknown Atari game 'ALE/Pongg-v5' (did you mean: ALE/Pong-v5?)" in done.stderr
