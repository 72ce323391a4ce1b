"""`film-rl train` / `film-rl evaluate` end to end, through the console entry point."""

import csv
import json
import zipfile

import pytest
import torch
from conftest import TINY, only_run_dir, run_cli
from stable_baselines3 import PPO

from film_rl import cli

EVAL_KEYS = {"success_rate", "mean_return", "mean_episode_length", "episodes", "per_kind"}


def assert_documented_keys(result: dict) -> None:
    """The headline keys, and on GoToRedBallGrey, whose one mission never varies, at most the
    split by where the red ball starts (when the episodes had it in view and out of view)."""
    assert EVAL_KEYS <= set(result) <= EVAL_KEYS | {"per_description"}, set(result)
    starts = {"object meant in view", "object meant in the agent's room"}
    assert set(result.get("per_description", starts)) == starts


def test_train_writes_a_complete_run_directory(tiny_run):
    for name in ("config.yaml", "model.zip", "vocab.json", "eval.json", "progress.csv"):
        assert (tiny_run / name).is_file(), name
    assert (tiny_run / "checkpoints").is_dir()
    assert any((tiny_run / "tensorboard").rglob("events.out.tfevents.*"))
    result = json.loads((tiny_run / "eval.json").read_text())
    assert_documented_keys(result)
    assert result["episodes"] == 4
    header = (tiny_run / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("rollout/success_rate", "eval/success_rate", "instructions/unknown_words", "train/loss"):
        assert key in header, key


def test_the_final_evaluation_reaches_tensorboard_and_the_csv_log(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = json.loads((tiny_run / "eval.json").read_text())
    rows = list(csv.DictReader((tiny_run / "progress.csv").open()))
    last = rows[-1]  # the final evaluation is the log's last row, at the run's last step
    assert float(last["final_eval/success_rate"]) == pytest.approx(result["success_rate"])
    assert float(last["time/total_timesteps"]) == 256
    (events,) = {p.parent for p in (tiny_run / "tensorboard").rglob("events.out.tfevents.*")}
    scalars = EventAccumulator(str(events)).Reload()
    (point,) = scalars.Scalars("final_eval/success_rate")
    assert point.step == 256 and point.value == pytest.approx(result["success_rate"])
    assert "eval/success_rate" in scalars.Tags()["scalars"]  # the periodic evaluations, as before


def test_evaluate_shows_progress_on_stderr_and_keeps_stdout_for_the_result(tiny_run):
    done = run_cli("evaluate", str(tiny_run), "--episodes", "20", "--json")
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # stdout is the JSON alone
    lines = [line for line in done.stderr.splitlines() if line.startswith("evaluation: ")]
    assert [line.split()[1] for line in lines] == [f"{n}/20" for n in range(2, 21, 2)]
    assert "episodes/s" in lines[-1] and "0:00 left" in lines[-1]


def test_evaluate_json_has_exactly_the_documented_keys(tiny_run):
    done = run_cli("evaluate", str(tiny_run), "--episodes", "6", "--json", "--stochastic")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert_documented_keys(result)
    assert result["episodes"] == 6 and 0.0 <= result["success_rate"] <= 1.0
    assert set(result["per_kind"]) == {"go to"}


def test_evaluate_by_default_gives_the_runs_own_evaluation_back(tiny_run):
    """Its default seed is the final evaluation's: the same episodes, so eval.json's very figures."""
    done = run_cli("evaluate", str(tiny_run), "--episodes", "4", "--json")  # TINY: eval.episodes=4
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads((tiny_run / "eval.json").read_text())


def test_evaluate_is_reproducible_and_accepts_a_model_zip(tiny_run):
    a = run_cli("evaluate", str(tiny_run / "model.zip"), "--episodes", "5", "--json", "--seed", "3", "--stochastic")
    b = run_cli("evaluate", str(tiny_run), "--episodes", "5", "--json", "--seed", "3", "--stochastic")
    assert a.returncode == b.returncode == 0
    assert json.loads(a.stdout) == json.loads(b.stdout)


def test_a_run_repeated_with_its_seed_trains_the_same_policy(tiny_run, tmp_path):
    """One seed, one machine, one code: the same weights, so a curve can be re-made (and a lever
    compared with the run it changes) rather than only re-sampled."""
    done = run_cli("train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY)
    assert done.returncode == 0, done.stderr
    first, again = (
        PPO.load(run / "model.zip", device="cpu").policy.state_dict() for run in (tiny_run, only_run_dir(tmp_path))
    )
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


def test_evaluate_writes_videos_with_the_mission(tiny_run, tmp_path):
    done = run_cli("evaluate", str(tiny_run), "--episodes", "2", "--video", str(tmp_path / "videos"))
    assert done.returncode == 0, done.stderr
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)
    assert "go-to-the-red-ball" in videos[0].name


def test_wandb_offline_leaves_a_syncable_run(tmp_path):
    done = run_cli(
        "train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY, "logging.wandb=offline", WANDB_MODE=None
    )
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(tmp_path)
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert offline and any(offline[0].glob("*.wandb"))


def _error(capsys, *args: str) -> str:
    """The one line ``film-rl ARGS`` prints on stderr for bad input (run in this process, where a
    traceback fails the test as the one a user would see)."""
    code = cli.main(list(args))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


def test_bad_input_is_one_line_and_exit_status_2(tiny_run, tmp_path, capsys):
    assert "no such experiment file" in _error(capsys, "train", "experiments/nope.yaml")
    line = _error(capsys, "train", "experiments/quickstart.yaml", "agent.conditionng=film")
    assert "agent.conditionng" in line and "conditioning" in line
    assert "expected an integer" in _error(capsys, "train", "experiments/quickstart.yaml", "seed=abc")
    line = _error(capsys, "train", "experiments/quickstart.yaml", "env.levels=[BabyAI-GoToRedBal-v0]")
    assert "unknown env id" in line and "BabyAI-GoToRedBall-v0" in line
    line = _error(capsys, "train", "experiments/quickstart.yaml", "agent=film-lstm", "agent.critic_features=own")
    assert "critic_features=own is for policy: cnn" in line and "critic_memory=own" in line
    with pytest.raises(SystemExit) as exit_info:  # argparse's own errors exit from inside parse_args
        cli.main(["evaluate", str(tiny_run), "--episodes", "x"])
    assert exit_info.value.code == 2 and "--episodes" in capsys.readouterr().err
    assert "no such run" in _error(capsys, "evaluate", str(tmp_path / "nothing"))
    assert "has no memory to forget" in _error(capsys, "evaluate", str(tiny_run), "--forget")  # a CNN policy

    corrupted = tmp_path / "run"
    corrupted.mkdir()
    for name in ("config.yaml", "vocab.json"):
        (corrupted / name).write_bytes((tiny_run / name).read_bytes())
    (corrupted / "model.zip").write_bytes((tiny_run / "model.zip").read_bytes()[:2000])
    assert "corrupted" in _error(capsys, "evaluate", str(corrupted))
    with zipfile.ZipFile(corrupted / "model.zip", "w") as z:
        z.writestr("data", "{not json")
    assert "not a saved model" in _error(capsys, "evaluate", str(corrupted))
    (corrupted / "vocab.json").unlink()
    assert "vocab.json is missing" in _error(capsys, "evaluate", str(corrupted))
    (corrupted / "config.yaml").unlink()
    assert "not a run directory" in _error(capsys, "evaluate", str(corrupted))


def test_help_lists_the_commands():
    done = run_cli("--help")
    assert done.returncode == 0 and "train" in done.stdout and "evaluate" in done.stdout
