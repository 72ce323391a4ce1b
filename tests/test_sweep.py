"""`film-rl sweep` and `film-rl report`: grids x seeds as ordinary runs, locally and on Ray, resumed
without rerunning finished trials, aggregated into a table and curves."""

import csv
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY, cli_env, run_cli

from film_rl.sweep.report import mean_ci, wandb_rows
from film_rl.sweep.runner import parse_grid

#: the tiny run, checkpointing half-way so that an interrupted trial has something to resume
SWEEP_TINY = [o for o in TINY if not o.startswith(("eval.freq", "logging."))] + ["checkpoint.freq=128"]
GRID = ["--grid", "agent.conditioning=film,none", "--seeds", "2"]
TRIALS = [f"agent.conditioning={c},seed={s}" for c in ("film", "none") for s in (0, 1)]


def sweep(runs: Path, name: str, *extra: str, timeout: float = 300, **env: str):
    return run_cli(
        "sweep",
        "experiments/quickstart.yaml",
        f"runs_dir={runs}",
        *SWEEP_TINY,
        *GRID,
        "--name",
        name,
        *extra,
        timeout=timeout,
        **env,
    )


def trial_run(folder: Path, trial: str) -> Path:
    (run,) = [p.parent for p in (folder / "trials" / trial).glob("*/*/config.yaml")]
    return run


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    done = sweep(runs, "local")
    assert done.returncode == 0, done.stdout + done.stderr
    # off a terminal, the sweep's progress is plain lines; the last one when every trial is done
    lines = [line for line in done.stdout.splitlines() if line.startswith("sweep local: ") and " steps (" in line]
    assert lines and " steps (100%)  4/4 trials done" in lines[-1], done.stdout
    return runs / "sweeps" / "local"


def test_local_sweep_runs_every_setting_and_seed_as_an_ordinary_run(local_sweep: Path) -> None:
    summary = json.loads((local_sweep / "summary.json").read_text())
    assert sorted(row["trial"] for row in summary["trials"]) == sorted(TRIALS)
    assert {row["state"] for row in summary["trials"]} == {"done"}
    for trial in TRIALS:
        run = trial_run(local_sweep, trial)
        config = yaml.safe_load((run / "config.yaml").read_text())
        conditioning, seed = trial.split(",")
        assert config["agent"]["conditioning"] == conditioning.split("=")[1]
        assert config["seed"] == int(seed.split("=")[1])
        assert config["logging"]["group"] == "local"  # one wandb group per sweep
        assert "sweep:local" in config["logging"]["tags"] and conditioning in config["logging"]["tags"]
        assert config["threads"] == 1
        assert (run / "model.zip").is_file() and (run / "eval.json").is_file()
        assert "run directory:" in (local_sweep / "trials" / trial / "trial.log").read_text()


def test_resume_skips_finished_trials_and_resumes_an_interrupted_one(
    local_sweep: Path, tmp_path: Path, ray_cluster
) -> None:
    folder = tmp_path / "sweep"
    shutil.copytree(local_sweep, folder)
    before = {t: (trial_run(folder, t) / "model.zip").stat().st_mtime_ns for t in TRIALS}
    interrupted = trial_run(folder, TRIALS[1])  # as if stopped after its first checkpoint
    (interrupted / "model.zip").unlink()
    (interrupted / "eval.json").unlink()
    assert list((interrupted / "checkpoints").glob("step_*.zip"))

    # resumed on a Ray the sweep starts for itself, although another cluster runs on the machine
    # (plain ray.init() would attach to it): the disk, not the backend, says what is done
    _, env = ray_cluster
    done = run_cli("sweep", "--resume", str(folder), "--backend", "ray", RAY_AUTH_MODE="disabled", TMPDIR=env["TMPDIR"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 trials (3 finished), backend ray" in done.stdout
    assert trial_run(folder, TRIALS[1]) == interrupted  # resumed in place, not started over
    assert (interrupted / "eval.json").is_file()
    assert "continued from checkpoints/step_" in (folder / "trials" / TRIALS[1] / "trial.log").read_text()
    for trial in (t for t in TRIALS if t != TRIALS[1]):
        assert (trial_run(folder, trial) / "model.zip").stat().st_mtime_ns == before[trial]

    again = run_cli("sweep", "--resume", str(folder))
    assert again.returncode == 0 and "(4 finished)" in again.stdout

    # a third seed for the same sweep: the four finished trials count, the two new ones are pending
    more = run_cli("sweep", "--resume", str(folder), "--seeds", "3", "--dry-run")
    assert more.returncode == 0 and "6 trials (4 finished)" in more.stdout, more.stderr
    assert "agent.conditioning=none,seed=2: pending" in more.stdout
    fewer = run_cli("sweep", "--resume", str(folder), "--seeds", "1", "--dry-run")
    assert fewer.returncode == 2 and "seeds are only added" in fewer.stderr


@pytest.fixture
def ray_cluster():
    """A 2-CPU Ray cluster of its own, as `ray start --head` makes one on a workstation or a
    cluster's head node: ``(address, environment)``. Its temp folder (``TMPDIR``) is its own, so
    that a command run with that environment sees this cluster as "the running one" and nothing
    of another test suite's Ray; it is stopped by its process group, leaving other clusters alone."""
    pytest.importorskip("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="film-rl-test-ray-"))  # short: Ray's socket paths are limited
    env = cli_env(RAY_AUTH_MODE="disabled", TMPDIR=str(temp))  # a throwaway local cluster needs no token
    start = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus=2"]
    start += ["--include-dashboard=false", f"--port={port}", "--disable-usage-stats"]
    head = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        while not (temp / "ray" / "ray_current_cluster").is_file():  # written once the head is up
            assert head.poll() is None, head.stderr.read().decode() if head.stderr else ""
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", env
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and the processes it started: its group alone
        head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_sweep_progress_counts_a_running_trial_the_backend_has_not_named_yet(local_sweep: Path, tmp_path: Path) -> None:
    """The local backend learns a fresh trial's run directory only when the trial ends: until
    then its steps are read from the run it is writing on disk."""
    from film_rl.sweep.runner import Sweep, SweepProgress, load_spec

    folder = tmp_path / "sweep"
    shutil.copytree(local_sweep, folder)
    (trial_run(folder, TRIALS[2]) / "eval.json").unlink()  # still running, 256 steps logged
    sweep = Sweep(load_spec(folder), folder)
    sweep.set(sweep.states[TRIALS[2]].trial, "running", run_dir=None)
    assert SweepProgress(sweep, dict.fromkeys(TRIALS, 256)).steps() == 4 * 256


def test_ray_backend_runs_the_same_trials_on_a_ray_cluster(local_sweep: Path, tmp_path: Path, ray_cluster) -> None:
    address, _ = ray_cluster
    done = sweep(tmp_path, "ray", "--backend", "ray", "--ray-address", address, timeout=400, RAY_AUTH_MODE="disabled")
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "sweeps" / "ray"
    summary = json.loads((folder / "summary.json").read_text())
    assert {row["state"] for row in summary["trials"]} == {"done"}
    for trial in TRIALS:  # same config, seed and threads: the same run as the local backend's
        ray_eval = json.loads((trial_run(folder, trial) / "eval.json").read_text())
        local_eval = json.loads((trial_run(local_sweep, trial) / "eval.json").read_text())
        assert ray_eval == local_eval
    assert (folder / "ray").is_dir()  # Tune's own records of the trials


def test_failed_trials_are_retried_then_reported(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-goals.npz"
    done = run_cli(
        "sweep", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *SWEEP_TINY, "--name", "broken",
        "--grid", f"agent.reward_model.goals={missing}", "agent.reward_model.enabled=true", "--retries", "1",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((tmp_path / "sweeps" / "broken" / "summary.json").read_text())
    (row,) = summary["trials"]
    assert row["state"] == "failed" and row["attempts"] == 2
    log = (tmp_path / "sweeps" / "broken" / "trials" / row["trial"] / "trial.log").read_text()
    assert log.count("$ film-rl train") == 2 and "no-such-goals.npz" in log
    assert "1 trial(s) failed" in done.stdout


def test_report_aggregates_seeds_into_a_table_and_curves(local_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = run_cli("report", str(local_sweep), "--out", str(out), WANDB_MODE="offline")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [r["setting"] for r in rows] == ["agent.conditioning=film", "agent.conditioning=none"]
    for row in rows:
        finals = [
            json.loads((trial_run(local_sweep, f"{row['setting']},seed={s}") / "eval.json").read_text())["success_rate"]
            for s in (0, 1)
        ]
        assert row["seeds"] == "2" and row["agent.conditioning"] == row["setting"].split("=")[1]
        assert float(row["final_mean"]) == pytest.approx(statistics.mean(finals))
        assert float(row["final_ci95"]) == pytest.approx(12.706 * statistics.stdev(finals) / math.sqrt(2), abs=1e-3)
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 4
    table = (out / "report.md").read_text()
    assert "| agent.conditioning=film | 2† |" in table and "† fewer than 3 seeds" in table  # n beside it
    for row in rows:  # a success rate's interval stays a rate
        assert 0.0 <= float(row["final_low"]) <= float(row["final_mean"]) <= float(row["final_high"]) <= 1.0
    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    assert list((out / "wandb").glob("offline-run-*"))  # the table and curves, logged to wandb


def test_declared_sweep_and_command_line_grid() -> None:
    listed = run_cli("sweep", "experiments/conditioning-ablation.yaml", "--dry-run", "--seeds", "2")
    assert listed.returncode == 0, listed.stderr
    assert "12 trials" in listed.stdout and "agent.conditioning=gate,seed=1: pending" in listed.stdout
    assert 'agent.conditioning="gate" seed=1' in listed.stdout  # the overrides each trial's run takes
    # seed by seed: every setting's first seed runs before any setting's second
    order = [line.split(":")[0].strip() for line in listed.stdout.splitlines() if line.endswith(": pending")]
    assert [t.rsplit("seed=", 1)[1] for t in order] == ["0"] * 6 + ["1"] * 6, order
    assert parse_grid(["agent.channels=[16,32],[32,64]", "seed_like=1,2"]) == {
        "agent.channels": [[16, 32], [32, 64]],
        "seed_like": [1, 2],
    }
    assert mean_ci([0.5])[0] == 0.5 and math.isnan(mean_ci([0.5])[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiments/quickstart.yaml", "--grid", "agent.conditioning=film,flim"], "is not one of"),
        (["experiments/quickstart.yaml", "--grid", "agent.conditoning=film"], "did you mean"),
        (["experiments/quickstart.yaml", "--grid", "seed=1,2"], "--seeds"),
        (["experiments/quickstart.yaml", "--grid", "oops"], "key=value1,value2"),
        (["--resume", "tests"], "not a sweep directory"),
        (["experiments/quickstart.yaml", "--max-concurrent", "0"], "--max-concurrent must be positive"),
        (["experiments/quickstart.yaml", "--seeds", "0"], "positive count"),
        (["experiments/quickstart.yaml", "--retries", "-1"], "must not be negative"),
        ([], "name an experiment file"),
    ],
)
def test_bad_sweeps_are_one_line_errors(args: list[str], message: str) -> None:
    done = run_cli("sweep", *args, "--dry-run")
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_an_existing_sweep_is_never_overwritten(local_sweep: Path) -> None:
    done = run_cli("sweep", "experiments/quickstart.yaml", f"runs_dir={local_sweep.parent.parent}", "--name", "local")
    assert done.returncode == 2 and "--resume" in done.stderr


def test_ray_backend_without_ray_says_how_to_install(tmp_path: Path) -> None:
    fake = tmp_path / "site"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    done = run_cli(
        "sweep", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *SWEEP_TINY, "--backend", "ray",
        PYTHONPATH=str(fake),
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'film-rl[distributed]'" in done.stderr


def test_ctrl_c_stops_every_trial_at_a_checkpoint(tmp_path: Path) -> None:
    """Ctrl-C reaches each running trial once: each saves a checkpoint, the sweep says how to resume."""
    longer = [o for o in SWEEP_TINY if not o.startswith(("budget.", "checkpoint."))]
    args = ["sweep", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *longer, "budget.timesteps=100000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "film_rl", *args, "checkpoint.freq=256", "--seeds", "2", "--name", "stop"],
        cwd=Path(__file__).resolve().parent.parent, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    trials = tmp_path / "sweeps" / "stop" / "trials"
    deadline = time.monotonic() + 120
    while len({p.parents[3] for p in trials.glob("*/*/*/checkpoints/step_*.zip")}) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "film-rl sweep --resume" in out
    summary = json.loads((tmp_path / "sweeps" / "stop" / "summary.json").read_text())
    assert {row["state"] for row in summary["trials"]} == {"interrupted"}
    for log in trials.glob("*/trial.log"):
        assert "SIGINT: checkpoint saved to" in log.read_text()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("sweep:\n  grdi: {seed: [1]}\n", "unknown sweep key 'grdi' (did you mean: grid?)"),
        ("sweep:\n  retries: two\n", "sweep.retries must be an integer"),
        ("sweep:\n  grid: {agent.conditioning: film}\n", "non-empty lists"),
    ],
)
def test_a_bad_declared_sweep_is_a_one_line_error(tmp_path: Path, section: str, message: str) -> None:
    experiment = tmp_path / "experiments" / "x.yaml"
    experiment.parent.mkdir()
    experiment.write_text("name: x\nenv: babyai-gotoredballgrey\nagent: film-cnn\n" + section)
    done = run_cli("sweep", str(experiment), "--dry-run")
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_resume_refuses_a_changed_experiment_but_not_a_newer_film_rl(tmp_path: Path) -> None:
    from film_rl.sweep.runner import make_spec, save_spec

    experiment = tmp_path / "experiments" / "x.yaml"
    experiment.parent.mkdir()
    experiment.write_text("name: x\nenv: babyai-gotoredballgrey\nagent: film-cnn\nbudget: {timesteps: 1000}\n")
    spec = make_spec(str(experiment), [], ["agent.conditioning=film,none"], name="x")
    folder = tmp_path / "sweep"
    save_spec(spec, folder)
    saved = yaml.safe_load((folder / "sweep.yaml").read_text())
    del saved["base"]["env"]["episode_end"]  # as written by a film-rl that had no such key yet
    saved["base"]["agent_recipe"] = ""  # as an earlier film-rl lost a recipe's name: a label, not a value
    (folder / "sweep.yaml").write_text(yaml.safe_dump(saved))
    ok = run_cli("sweep", "--resume", str(folder), "--dry-run")
    assert ok.returncode == 0 and "2 trials (0 finished)" in ok.stdout, ok.stderr

    experiment.write_text(experiment.read_text().replace("1000", "2000"))
    changed = run_cli("sweep", "--resume", str(folder), "--dry-run")
    assert changed.returncode == 2
    assert "changed since the sweep started (budget.timesteps: 1000 -> 2000)" in changed.stderr


@pytest.mark.parametrize(("agent", "refused"), [("film-lstm", True), ("film-cnn", False)])
def test_a_sweep_saved_before_critic_memory_keeps_the_critic_its_trials_had(
    tmp_path: Path, agent: str, refused: bool
) -> None:
    """An LSTM sweep saved before ``agent.critic_memory`` ran its trials with the shared critic;
    today's default (``own``) would make its remaining trials another experiment, so resuming it
    is refused, naming the option. A feed-forward sweep has no critic memory: it resumes."""
    from film_rl.errors import UserError
    from film_rl.sweep.runner import load_spec, make_spec, save_spec

    experiment = tmp_path / "x.yaml"
    experiment.write_text(f"name: x\nenv: babyai-gotoredballgrey\nagent: {agent}\nbudget: {{timesteps: 1000}}\n")
    folder = tmp_path / "sweep"
    save_spec(make_spec(str(experiment), [], seeds=2, name="x"), folder)
    saved = yaml.safe_load((folder / "sweep.yaml").read_text())
    del saved["base"]["agent"]["critic_memory"]  # as written before the option existed
    (folder / "sweep.yaml").write_text(yaml.safe_dump(saved))
    if refused:
        with pytest.raises(UserError, match=re.escape("agent.critic_memory: 'shared' -> 'own'")):
            load_spec(folder)
    else:
        assert load_spec(folder).base["agent"]["critic_memory"] == "own"


def test_intervals_are_cut_to_what_the_figure_can_be() -> None:
    from film_rl.sweep.report import _ci

    assert _ci(0.370, 2.414, 3, 0.0, 1.0) == "0.370 [0.000, 1.000]"  # not 0.370 ± 2.414
    assert _ci(114.0, 578.0, 0, 0.0) == "114 [0, 692]"
    assert _ci(0.5, float("nan"), 3, 0.0, 1.0) == "0.500"  # one seed: no interval at all
    assert _ci(-0.3, 0.1, 3) == "-0.300 [-0.400, -0.200]"  # a score has no bounds


def test_a_report_table_whose_settings_set_different_keys_logs_to_wandb() -> None:
    """Settings that set different keys leave empty cells beside numbers (pickuploc-levers:
    ``ent_coef`` set by two settings of five): wandb's table takes the rows, typed per column."""
    import wandb

    header = ["setting", "agent.algorithm.ent_coef", "agent.conditioning", "mixed", "final_mean"]
    data = [
        ["film", "", "", 1, 0.2],
        ["none", "", "none", True, 0.59],
        ["ent-0.1", 0.1, "", "wide", float("nan")],
    ]
    rows = wandb_rows(data)
    table = wandb.Table(columns=header, data=rows)
    assert [row[1] for row in table.data] == [None, None, 0.1]
    assert [row[3] for row in table.data] == ["1", "True", "wide"]  # kinds mixed: text
    assert [row[0] for row in table.data] == ["film", "none", "ent-0.1"]
