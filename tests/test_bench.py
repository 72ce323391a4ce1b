"""`film-rl bench` at tiny budgets: every subcommand produces its JSON with every key."""

import json

import yaml
from conftest import run_cli

SMALL = ["env.n_envs=2", "agent.algorithm.n_steps=64", "agent.algorithm.batch_size=64", "eval.episodes=4"]


def test_throughput_reports_ratios_and_memory(tmp_path):
    out = tmp_path / "throughput.json"
    done = run_cli(
        "bench", "throughput", "--timesteps", "256", "--repeats", "2", "--n-envs", "2", "--out", str(out),
        "agent.algorithm.n_steps=64",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for key in ("ratio_film_cnn", "ratio_film_lstm", "ratio_concat_lstm", "peak_rss_mb"):
        assert result[key] > 0, key
    assert set(result["steps_per_second"]) == {"reference", "film_cnn", "film_lstm", "concat_lstm"}
    assert all(len(s) == 2 for s in result["samples"].values())  # every variant ran in both rounds
    assert result["overrides"] == ["agent.algorithm.n_steps=64"]
    assert "ratio to reference" in done.stdout


def test_efficiency_reports_babyai_metric_beside_the_paper(tmp_path):
    out = tmp_path / "efficiency.json"
    done = run_cli(
        "bench", "efficiency", "--level", "BabyAI-GoToRedBallGrey-v0", "--budget", "256", "--seeds", "2",
        "--runs-dir", str(tmp_path / "runs"), "--out", str(out), *SMALL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["window"] == 10 and result["babyai"]["babyai_1.0"] == [15900, 17400]
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    for run in result["runs"]:
        assert {"episodes_to_99", "frames", "seconds", "final_success_rate"} <= set(run)
        assert run["frames"] >= 256


def test_efficiency_runs_a_levels_own_recipe(tmp_path):
    out = tmp_path / "efficiency.json"
    done = run_cli(
        "bench", "efficiency", "--experiment", "experiments/gotolocal-efficiency.yaml", "--budget", "256",
        "--runs-dir", str(tmp_path / "runs"), "--out", str(out), *SMALL, "agent.channels=[8,8]",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["level"] == "BabyAI-GoToLocal-v0" and result["experiment"] == "experiments/gotolocal-efficiency.yaml"
    (run,) = (tmp_path / "runs").glob("*/*/config.yaml")
    config = yaml.safe_load(run.read_text())
    assert config["env"]["reward_scale"] == 20 and config["agent"]["algorithm"]["normalize_advantage"] is False
    assert config["agent"]["channels"] == [8, 8]  # the recipe's settings, then ours
    assert config["env"]["levels"] == ["BabyAI-GoToLocal-v0"]
    assert config["budget"] == {**config["budget"], "timesteps": 256, "stop_on": "babyai", "babyai_window": 100}
    several = run_cli("bench", "efficiency", "--experiment", "experiments/local-suite.yaml")
    assert several.returncode == 2 and "name the one to measure (--level)" in several.stderr, several.stderr


def test_efficiency_measures_a_curriculums_level_among_the_levels_it_keeps(tmp_path, tiny_run):
    """A recipe on several levels (PutNextLocal with PickupLoc kept in the mix) keeps them: the run
    stops on the named level's own rolling success, and its figures are that level's."""
    out = tmp_path / "efficiency.json"
    recipe, level = "experiments/putnextlocal-after-pickuploc.yaml", "BabyAI-PutNextLocal-v0"
    args = ["bench", "efficiency", "--experiment", recipe, "--level", level, "--budget", "512"]
    alone = run_cli(*args, "--runs-dir", str(tmp_path / "alone"), *SMALL)
    assert alone.returncode == 2 and len(alone.stderr.strip().splitlines()) == 1, alone.stderr
    assert (
        "init_from: required: this recipe starts from another run's policy; pass init_from=" in alone.stderr
    )  # not measured from scratch
    assert not (tmp_path / "alone").exists()
    done = run_cli(
        *args, "--runs-dir", str(tmp_path / "runs"), "--out", str(out), *SMALL, "eval.episodes=20",
        f"init_from={tiny_run}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cannot report its metric" not in done.stderr  # BabyAI's window is not this bench's figure here
    result = json.loads(out.read_text())
    assert result["levels"] == [level, "BabyAI-PickupLoc-v0"]
    (run_dir,) = (tmp_path / "runs").glob("*/*/config.yaml")
    config = yaml.safe_load(run_dir.read_text())
    assert config["env"]["levels"] == result["levels"] and config["env"]["timeout_bootstrap"] is False
    assert config["budget"] == {**config["budget"], "stop_level": level, "stop_on": "rolling", "stop_at_success": 0.99}
    (run,) = result["runs"]
    stats = json.loads((run_dir.parent / "stats.json").read_text())
    assert run["level_episodes"] == stats["level_episodes"][level] > 0
    assert run["level_episodes"] < run["episodes"] == stats["episodes"]
    evaluation = json.loads((run_dir.parent / "eval.json").read_text())
    assert run["final_success_rate"] == evaluation["per_kind"].get(level)
    assert run["babyai_episodes_to_99"] is None
    other = run_cli("bench", "efficiency", "--experiment", recipe, "--level", "BabyAI-GoTo-v0")
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert "trains on BabyAI-PutNextLocal-v0, BabyAI-PickupLoc-v0" in other.stderr


def test_conditioning_ablation_covers_every_mechanism(tmp_path):
    out = tmp_path / "conditioning.json"
    done = run_cli(
        "bench", "conditioning", "--level", "BabyAI-GoToObjS4-v0", "--budget", "128",
        "--runs-dir", str(tmp_path / "runs"), "--out", str(out), *SMALL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())["results"]
    assert list(results) == ["film", "concat", "bias", "scale", "gate", "none"]
    assert all({"episodes_to_90", "episodes_to_99", "final_success_rate"} <= set(r) for r in results.values())


def test_bench_rejects_bad_input_in_one_line():
    done = run_cli("bench", "efficiency", "--level", "BabyAI-GoToNowhere-v0")
    assert done.returncode == 2 and "unknown env id" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = run_cli("bench", "throughput", "--repeats", "0")
    assert done.returncode == 2 and "--repeats must be positive" in done.stderr
    # an override one variant's run would refuse (the LSTMs have no critic_features) is refused
    # before any variant is timed, not measured on a policy no run can train
    done = run_cli("bench", "throughput", "--timesteps", "64", "--repeats", "1", "agent.critic_features=own")
    assert done.returncode == 2 and "critic_features=own is for policy: cnn" in done.stderr
    assert "round" not in done.stdout and len(done.stderr.strip().splitlines()) == 1
    done = run_cli("bench", "throughput", "--variants", "film_cnn,film_gru")
    assert done.returncode == 2 and "--variants: film_gru; choose from" in done.stderr


def test_throughput_times_the_variants_named_with_an_override_only_one_takes(tmp_path):
    out = tmp_path / "throughput.json"
    done = run_cli(
        "bench", "throughput", "--timesteps", "128", "--repeats", "1", "--n-envs", "2", "--out", str(out),
        "--variants", "film_cnn", "agent.algorithm.n_steps=64", "agent.critic_features=own",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result["steps_per_second"]) == {"reference", "film_cnn"} and result["ratio_film_cnn"] > 0
    assert "ratio_film_lstm" not in result


def test_atari_reports_multigame_ratio_against_sb3_single_game_recipe(tmp_path):
    out = tmp_path / "atari.json"
    done = run_cli(
        "bench", "atari", "--timesteps", "128", "--repeats", "1", "--n-envs", "2", "--out", str(out),
        "env.levels=[ALE/Pong-v5,ALE/Breakout-v5]", "agent.algorithm.n_steps=64", "agent.algorithm.batch_size=64",
        "agent.algorithm.n_epochs=1", "agent.lstm_hidden=32", "threads=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for key in ("ratio_multigame", "ratio_multigame_lstm", "peak_rss_mb"):
        assert result[key] > 0, key
    assert set(result["steps_per_second"]) == {"reference", "multigame", "multigame_lstm"}
    assert result["games"] == ["ALE/Pong-v5", "ALE/Breakout-v5"] and result["reference_game"] == "ALE/Pong-v5"
    assert result["frame_skip"] == 4 and result["n_envs"] == 2 and result["device"] == "cpu"
    assert "ratio to reference" in done.stdout
