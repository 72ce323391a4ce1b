"""What can go wrong around a training run, and what a user gets: an extension interrupted anywhere
resumes from its newest state, wandb failing never stops training, a full disk or a diverging
learning rate ends with one line and a resumable checkpoint, and values that parse but break the
maths are refused before anything is written."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, TINY, cli_env, only_run_dir, run_cli
from stable_baselines3 import PPO

from film_rl import cli
from film_rl.sweep.report import progress_rows

#: TINY with a checkpoint every rollout, all kept
CHECKPOINTED = [o for o in TINY if not o.startswith("eval.freq")] + ["checkpoint.freq=128", "checkpoint.keep=100"]


def steps_of(path: Path) -> int:
    return PPO.load(path, device="cpu").num_timesteps


def one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------- resume never goes back


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished 256-step run, and the same run extended to 1024 steps with every checkpoint kept."""
    runs = tmp_path_factory.mktemp("runs")
    done = run_cli("train", "experiments/quickstart.yaml", f"runs_dir={runs}", *CHECKPOINTED)
    assert done.returncode == 0, done.stderr
    finished = only_run_dir(runs)
    longer = tmp_path_factory.mktemp("extended") / finished.name
    shutil.copytree(finished, longer)
    done = run_cli("train", "--resume", str(longer), "budget.timesteps=1024")
    assert done.returncode == 0, done.stderr
    return finished, longer


@pytest.mark.parametrize("killed_after", [384, 896])
def test_an_interrupted_extension_resumes_from_its_newest_checkpoint(
    extended: tuple[Path, Path], tmp_path: Path, killed_after: int
) -> None:
    """The disk as a kill -9 leaves it just after the extension's checkpoint at ``killed_after``:
    the finished run's model.zip (256 steps) and eval.json, the extension's newer checkpoints."""
    finished, longer = extended
    run = tmp_path / finished.name
    shutil.copytree(finished, run)
    (run / "config.yaml").write_bytes((longer / "config.yaml").read_bytes())  # budget.timesteps: 1024
    for checkpoint in (longer / "checkpoints").glob("step_*"):
        if 256 < int(checkpoint.name.split(".")[0].split("_")[1]) <= killed_after:
            shutil.copy(checkpoint, run / "checkpoints" / checkpoint.name)
    assert steps_of(run / "model.zip") == 256

    done = run_cli("train", "--resume", str(run))
    assert done.returncode == 0, done.stderr
    assert f"continued from checkpoints/step_{killed_after}.zip at {killed_after:,} timesteps" in done.stdout
    final = steps_of(run / "model.zip")
    assert final >= 1024 and all(final >= steps_of(c) for c in (run / "checkpoints").glob("step_*.zip"))
    steps = [float(r["time/total_timesteps"]) for r in progress_rows(run)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # the joined curve never goes back


def test_ctrl_c_during_an_extension_then_resume_goes_forward(extended: tuple[Path, Path], tmp_path: Path) -> None:
    finished, _ = extended
    run = tmp_path / finished.name
    shutil.copytree(finished, run)
    args = [sys.executable, "-m", "film_rl", "train", "--resume", str(run), "budget.timesteps=100000"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with subprocess.Popen(args, cwd=ROOT, env=cli_env(), **pipes) as p:  # type: ignore[call-overload]
        while not any(int(c.stem.split("_")[1]) > 256 for c in (run / "checkpoints").glob("step_*.zip")):
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(0.1)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGINT and "resume with: film-rl train --resume" in err, err
    newest = max(int(c.stem.split("_")[1]) for c in (run / "checkpoints").glob("step_*.zip"))
    assert newest > 256 and steps_of(run / "model.zip") == 256

    done = run_cli("train", "--resume", str(run), "budget.timesteps=" + str(newest + 128))
    assert done.returncode == 0, done.stderr
    assert f"continued from checkpoints/step_{newest}.zip" in done.stdout
    assert steps_of(run / "model.zip") >= newest + 128


def test_a_corrupt_newest_checkpoint_is_kept_aside_and_the_one_before_taken(
    extended: tuple[Path, Path], tmp_path: Path
) -> None:
    _, longer = extended
    run = tmp_path / longer.name
    shutil.copytree(longer, run)
    (run / "model.zip").unlink()  # as if killed before the end: the newest state is a checkpoint
    (run / "eval.json").unlink()
    (run / "checkpoints" / "step_1024.zip").write_bytes(b"PK\x03\x04 cut short")
    done = run_cli("train", "--resume", str(run))
    assert done.returncode == 0, done.stderr
    assert "skipped checkpoints/step_1024.zip" in done.stdout and "step_1024.zip.corrupt" in done.stdout
    assert "continued from checkpoints/step_896.zip at 896 timesteps" in done.stdout
    assert (run / "checkpoints" / "step_1024.zip.corrupt").is_file()  # kept, never deleted


def test_a_finished_model_whose_evaluation_was_interrupted_is_only_evaluated(
    extended: tuple[Path, Path], tmp_path: Path
) -> None:
    finished, _ = extended
    run = tmp_path / finished.name
    shutil.copytree(finished, run)
    (run / "eval.json").unlink()
    before = (run / "model.zip").read_bytes()
    done = run_cli("train", "--resume", str(run))
    assert done.returncode == 0, done.stderr
    assert "finished training; evaluating it" in done.stdout and (run / "eval.json").is_file()
    assert (run / "model.zip").read_bytes() == before  # not trained (nor saved) again


# --------------------------------------------------------------------------- wandb


def test_wandb_online_without_a_key_is_refused_before_any_work(tmp_path: Path) -> None:
    done = run_cli(
        "train", "experiments/quickstart.yaml", f"runs_dir={tmp_path / 'runs'}", *TINY, "logging.wandb=online",
        WANDB_MODE=None, WANDB_API_KEY=None, HOME=str(tmp_path), NETRC=str(tmp_path / "no-netrc"),
    )  # fmt: skip
    assert "no wandb API key" in one_line_error(done.returncode, done.stderr)
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_wandb_server_leaves_training_running_offline(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_cli(
        "train", "experiments/quickstart.yaml", f"runs_dir={tmp_path / 'runs'}", *TINY,
        WANDB_MODE=None, WANDB_API_KEY="k" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{port}",
        WANDB_INIT_TIMEOUT="5", HOME=str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wandb could not start online" in done.stderr and "Traceback" not in done.stderr
    run = only_run_dir(tmp_path / "runs")
    assert (run / "eval.json").is_file() and (run / "progress.csv").is_file()
    assert list((run / "wandb").glob("offline-run-*")), "no offline wandb run to sync later"


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1.5 MB tmpfs: a real full disk (needs mount rights; skipped where there are none)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_ends_with_one_line_and_a_resumable_checkpoint(small_disk: Path) -> None:
    done = run_cli(
        "train", "experiments/quickstart.yaml", f"runs_dir={small_disk}", *CHECKPOINTED,
        "budget.timesteps=100000", "logging.tensorboard=false",
    )  # fmt: skip
    line = one_line_error(done.returncode, done.stderr)
    assert "no space left on device while writing" in line
    run = only_run_dir(small_disk)
    assert not [p for p in run.rglob("*") if ".tmp" in p.name], "a temporary file was left behind"
    newest = max((run / "checkpoints").glob("step_*.zip"), key=lambda p: int(p.stem.split("_")[1]))
    assert steps_of(newest) == int(newest.stem.split("_")[1])  # intact

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space again
    done = run_cli("train", "--resume", str(run), "budget.timesteps=" + str(steps_of(newest) + 128))
    assert done.returncode == 0, done.stderr
    assert f"continued from checkpoints/{newest.name}" in done.stdout


# --------------------------------------------------------------------------- divergence


def test_a_diverging_learning_rate_stops_with_a_hint_and_a_good_checkpoint(tmp_path: Path) -> None:
    done = run_cli(
        "train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY,
        "agent.algorithm.learning_rate=1e6", "checkpoint.freq=64",
    )  # fmt: skip
    line = one_line_error(done.returncode, done.stderr)
    assert "diverged" in line and "agent.algorithm.learning_rate" in line
    run = only_run_dir(tmp_path)
    assert not (run / "model.zip").exists()
    checkpoint = line.split("the last good checkpoint is ")[1].split(". ")[0]
    evaluated = run_cli("evaluate", checkpoint, "--episodes", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "success_rate" in evaluated.stdout


# --------------------------------------------------------------------------- values that break the maths


BAD_TRAIN_VALUES = [
    "agent.algorithm.gamma=5",
    "agent.algorithm.learning_rate=0",
    "budget.success_window=-1",
    "agent.net_arch=[-1]",
    "agent.kernel_size=0",
    "agent.kernel_size=50",
    "device=bogus",
    "env.n_envs=10000",
    "env.max_instruction_length=1e9",
    "agent.channels=[]",
    "seed=-1",
]


@pytest.mark.parametrize("value", BAD_TRAIN_VALUES)
def test_a_value_that_breaks_the_maths_is_refused_before_anything_is_written(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["train", "experiments/quickstart.yaml", f"runs_dir={tmp_path / 'runs'}", *TINY, value])
    assert value.split("=")[0] in one_line_error(code, capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("schedule", ["learning_rate", "clip_range"])
def test_a_linear_rate_that_would_reach_0_before_the_budget_is_refused(
    schedule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past its horizon a linear learning rate (or clipping range) is 0: the rest of the budget
    would play rollouts for a policy that no longer learns."""
    linear = [f"agent.algorithm.{schedule}_schedule=linear", "agent.algorithm.schedule_timesteps=128"]
    code = cli.main(["train", "experiments/quickstart.yaml", f"runs_dir={tmp_path / 'runs'}", *TINY, *linear])
    assert f"a linear {schedule} would be 0 past it" in one_line_error(code, capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["eval.episodes=0", "device=cuda:7", "device=bogus", "budget.timesteps=-5"])
def test_a_bad_resume_override_leaves_the_saved_config_alone(
    value: str, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code = cli.main(["train", "--resume", str(run), value])
    one_line_error(code, capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "{run}", "--seed", "-5"],
        ["evaluate", "{run}", "--video", "{tmp}/a-file/videos"],
        ["goals", "make", "--env", "BabyAI-GoToRedBallGrey-v0", "--episodes", "2", "--seed", "-1", "--out", "{tmp}/g"],
        ["analyze", "{run}", "--seed", "-1"],
    ],
)
def test_a_bad_command_line_value_is_refused_before_any_work(
    args: list[str], tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    code = cli.main([a.format(run=tiny_run, tmp=tmp_path) for a in args])
    one_line_error(code, capsys.readouterr().err)
    assert not (tmp_path / "g").exists()


def test_a_signal_during_the_final_evaluation_says_how_to_evaluate_the_saved_model(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "film_rl", "train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY]
    args.append("eval.episodes=100000")  # an evaluation that outlasts the test's reaction
    with subprocess.Popen(
        args, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as p:
        while not list(tmp_path.glob("*/*/model.zip")):  # written just before the evaluation starts
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(0.1)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert "SIGTERM during the final evaluation" in err and "film-rl train --resume" in err
    run = only_run_dir(tmp_path)
    assert not (run / "eval.json").exists()

    done = run_cli("train", "--resume", str(run), "eval.episodes=4")
    assert done.returncode == 0, done.stderr
    assert "finished training; evaluating it" in done.stdout and (run / "eval.json").is_file()
