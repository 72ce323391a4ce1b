"""Held-out instructions: which missions training never sees, that it indeed never sees them (in
its envs, AGILE's goal states, anything above the level), and evaluation on either split."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY, run_cli

from film_rl.agile.goals import make_goals
from film_rl.agile.training import without_heldout
from film_rl.config import load_experiment
from film_rl.run import run_dir as runs
from film_rl.sweep.runner import parse_grid
from film_rl.tasks.babyai_envs import make_babyai_env
from film_rl.tasks.holdout import Holdout, combinations
from film_rl.tasks.instructions import Vocabulary
from film_rl.tasks.registry import task_for
from film_rl.tasks.splits import from_config

RED_BALL = "env.holdout.combinations=[{color: red, object: ball}]"
FIXTURES = Path(__file__).parent / "fixtures" / "runs-first-release"


def holdout_of(level: str, *overrides: str):
    config = load_experiment("experiments/gotolocal.yaml", [f"env.levels=[{level}]", *overrides])
    return config, from_config(config.env)


def test_missions_are_matched_on_the_colour_object_pairs_they_name_whatever_the_verb() -> None:
    assert combinations("put the red ball next to a blue key") == {("red", "ball"), ("blue", "key")}
    assert combinations("pick up the ball on your left") == set()  # an object without a colour: no pair
    assert combinations("open the yellow door, then go to a grey box") == {("yellow", "door"), ("grey", "box")}
    held = Holdout(frozenset({("red", "ball")}), frozenset({"go to the blue key"}))
    assert held.held_out("pick up a red ball") and held.held_out("go to the blue key")
    assert not held.held_out("go to a blue key") and not held.held_out("go to the red box")
    assert held.in_split("go to a ball", "train") and held.in_split("go to the red ball", "heldout")
    assert held.in_split("go to the red ball", "all")


def test_a_fraction_is_drawn_reproducibly_from_its_seed_and_the_levels_combinations() -> None:
    _, a = holdout_of("BabyAI-GoToLocal-v0", "env.holdout.fraction=0.2")
    _, b = holdout_of("BabyAI-GoToLocal-v0", "env.holdout.fraction=0.2")
    _, c = holdout_of("BabyAI-GoToLocal-v0", "env.holdout.fraction=0.2", "env.holdout.seed=1")
    # GoToLocal names 6 colours x 3 objects: 20% of 18 is 4 combinations
    assert a == b and len(a.combos) == 4 and a != c
    assert {obj for _, obj in a.combos} <= {"ball", "box", "key"}
    _, both = holdout_of("BabyAI-GoToLocal-v0", "env.holdout.fraction=0.2", RED_BALL)
    assert both.combos == a.combos | {("red", "ball")}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["env.holdout.combinations=[{color: rde, object: ball}]"], "'rde' is not one of"),
        (["env.holdout.combinations=[{color: red, object: bal}]"], "did you mean: ball"),
        (["env.holdout.combinations=[{color: red}]"], "env.holdout.combinations[0]: missing object"),
        (["env.holdout.fraction=1"], "env.holdout.fraction must be in [0, 1)"),
        (["env.holdout.missions=[go to the red dog]"], "matches none of 200 sampled missions"),
        (["env.levels=[BabyAI-GoToRedBallGrey-v0]", RED_BALL], "holds out every mission of BabyAI-GoToRedBallGrey-v0"),
        (["env.levels=[BabyAI-GoToRedBallGrey-v0]", "env.holdout.fraction=0.5"], "holds out every mission"),
    ],
)
def test_a_bad_holdout_is_a_one_line_error_before_anything_runs(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    done = run_cli("train", "experiments/gotolocal.yaml", f"runs_dir={tmp_path}", *overrides)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not list(tmp_path.iterdir())  # refused before a run directory was made


@pytest.mark.parametrize(
    "levels",
    [
        ["BabyAI-GoToLocal-v0"],
        ["BabyAI-PickupLoc-v0"],
        ["BabyAI-PutNextLocal-v0"],
        ["BabyAI-GoToLocal-v0", "BabyAI-Open-v0"],
    ],
)
def test_training_never_sees_a_held_out_mission(levels: list[str]) -> None:
    """Thousands of episodes of the training VecEnv (every reset, auto-resets too), read back from
    the very tokens the policy gets."""
    config = load_experiment(
        "experiments/gotolocal.yaml",
        [f"env.levels={json.dumps(levels)}", "env.holdout.fraction=0.25", "env.n_envs=4", "env.vec_env=dummy"],
    )
    vocab = Vocabulary.babyai()
    task = task_for(config, vocab)
    holdout = task.holdout
    assert holdout
    env = task.training_env(seed=0, subprocess=False)
    obs = env.reset()
    seen, redraws, rng = set(), 0, np.random.default_rng(0)
    for _ in range(1500):  # random walks end many episodes (every done, the mission's object picked up ...)
        for row in obs["instruction"]:
            seen.add(vocab.decode(row))
        obs, _, dones, infos = env.step(rng.integers(0, 7, size=env.num_envs))
        redraws += sum(info.get("heldout_redraws", 0) for info, done in zip(infos, dones, strict=True) if done)
    # and straight resets, thousands of them, through every wrapper a training worker has
    worker = task.worker(levels)()
    for seed in range(1000):
        _, info = worker.reset(seed=seed)
        seen.add(str(info["mission"]))
    assert len(seen) > 20
    assert not [m for m in seen if holdout.held_out(m)]
    assert redraws > 0  # held-out missions did come up, and were redrawn


def test_redraws_are_deterministic_and_the_held_out_split_plays_only_held_out_missions() -> None:
    holdout = Holdout(frozenset({("red", "ball"), ("green", "key")}))
    vocab = Vocabulary.babyai()

    def missions(split: str) -> list[str]:
        env = make_babyai_env(["BabyAI-GoToLocal-v0"], vocab, holdout=holdout, split=split)  # type: ignore[arg-type]
        return [str(env.reset(seed=seed)[1]["mission"]) for seed in range(60)]

    held = missions("heldout")
    assert held == missions("heldout") and all(holdout.held_out(m) for m in held)
    assert len(set(held)) > 2
    trained = missions("train")
    assert not any(holdout.held_out(m) for m in trained)
    everything = missions("all")
    assert any(holdout.held_out(m) for m in everything) and not all(holdout.held_out(m) for m in everything)


def test_agile_goal_states_leave_out_held_out_missions(tmp_path: Path) -> None:
    vocab = Vocabulary.babyai()
    holdout = Holdout(frozenset({("red", "ball"), ("blue", "box"), ("grey", "key")}))
    made = make_goals(["BabyAI-GoToLocal-v0"], 60, 0, vocab, holdout=holdout)  # the bot plays training missions
    assert len(made) > 30 and not any(holdout.held_out(str(m)) for m in made.missions)
    unfiltered = make_goals(["BabyAI-GoToLocal-v0"], 60, 0, vocab)  # a file made without the holdout
    assert any(holdout.held_out(str(m)) for m in unfiltered.missions)
    kept = without_heldout(unfiltered, holdout, tmp_path / "goals.npz")
    assert 0 < len(kept) < len(unfiltered) and not any(holdout.held_out(str(m)) for m in kept.missions)


@pytest.fixture(scope="module")
def heldout_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny sweep of a run holding out 20% of GoToLocal's colour-object combinations."""
    runs_dir = tmp_path_factory.mktemp("runs")
    overrides = [o for o in TINY if not o.startswith("eval.freq")] + ["eval.freq=0", "env.holdout.fraction=0.2"]
    done = run_cli(
        "sweep", "experiments/gotolocal.yaml", f"runs_dir={runs_dir}", *overrides, "--name", "heldout",
        "--grid", "agent.conditioning=film,concat",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return runs_dir / "sweeps" / "heldout"


def _run(sweep: Path, conditioning: str) -> Path:
    (config,) = (sweep / "trials" / f"agent.conditioning={conditioning},seed=0").glob("*/*/config.yaml")
    return config.parent


def test_a_run_with_a_holdout_reports_both_splits_and_its_redraws(heldout_sweep: Path) -> None:
    run = _run(heldout_sweep, "film")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["env"]["holdout"] == {"combinations": [], "missions": [], "fraction": 0.2, "seed": 0}
    evaluation = runs.read_eval(run / runs.EVAL)
    assert evaluation["split"] == "train" and set(evaluation["splits"]) == {"train", "heldout"}
    assert evaluation["splits"]["heldout"]["episodes"] == 4 and len(evaluation["heldout"]) == 4
    assert evaluation["success_rate"] == evaluation["splits"]["train"]["success_rate"]
    rows = list(csv.DictReader((run / "progress.csv").open()))
    assert max(float(r["instructions/heldout_redraws"] or 0) for r in rows) > 0
    assert "final_eval/heldout/success_rate" in rows[-1]


def test_evaluate_plays_one_split_reproducibly(heldout_sweep: Path) -> None:
    run = _run(heldout_sweep, "film")
    first = run_cli("evaluate", str(run), "--episodes", "6", "--split", "heldout", "--json")
    again = run_cli("evaluate", str(run), "--episodes", "6", "--split", "heldout", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == json.loads(again.stdout)  # same command, same numbers
    result = json.loads(first.stdout)
    assert result["split"] == "heldout" and list(result["splits"]) == ["heldout"] and result["episodes"] == 6
    # per held-out instruction: every episode names one of them, and the rates average to the split's
    per = result["per_heldout"]
    assert set(per) <= set(result["heldout"]) and sum(f["episodes"] for f in per.values()) >= 6
    rates = sum(f["success_rate"] * f["episodes"] for f in per.values()) / sum(f["episodes"] for f in per.values())
    assert sum(f["episodes"] for f in per.values()) > 6 or rates == pytest.approx(result["success_rate"])


def test_a_run_without_a_holdout_has_no_held_out_split() -> None:
    """A run saved before holdouts existed (the first release's) evaluates as before, and refuses a split."""
    (run,) = [p.parent for p in (FIXTURES / "babyai-film-cnn").glob("**/config.yaml")]
    assert "splits" not in json.loads((run / "eval.json").read_text())
    refused = run_cli("evaluate", str(run), "--episodes", "2", "--split", "heldout")
    assert refused.returncode == 2 and "holds no instruction out" in refused.stderr


def test_the_report_has_train_and_held_out_success_and_their_ratio(heldout_sweep: Path, tmp_path: Path) -> None:
    done = run_cli("report", str(heldout_sweep), "--out", str(tmp_path), "--wandb", "disabled")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "report.md").read_text()
    assert "## Held-out instructions" in text and "| held-out success | held-out ÷ train |" in text
    # each split's episode length beside its success, taken from the runs' own evaluations
    (film_row,) = [line for line in text.split("## Held-out")[1].splitlines() if "conditioning=film" in line]
    evaluation = runs.read_eval(_run(heldout_sweep, "film") / runs.EVAL)
    assert film_row.endswith(f"| {evaluation['splits']['heldout']['mean_episode_length']:,.1f} |")
    table = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert {row["setting"] for row in table} == {"agent.conditioning=film", "agent.conditioning=concat"}
    for row in table:
        assert 0.0 <= float(row["heldout_mean"]) <= 1.0 and 0.0 <= float(row["train_mean"]) <= 1.0


def test_analyze_marks_the_held_out_missions(heldout_sweep: Path, tmp_path: Path) -> None:
    run = _run(heldout_sweep, "film")
    done = run_cli("analyze", str(run), "--episodes", "0", "--out", str(tmp_path), "--instructions", "40")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "film_params.csv").open()))
    holdout = from_config(runs.read_config(run).env)  # type: ignore[arg-type]
    assert {row["split"] for row in rows} == {"held out", "trained"}
    for row in rows:
        assert (row["split"] == "held out") == holdout.held_out(row["instruction"])
    assert (tmp_path / "projection_pca.png").is_file()
    # another level only supplies missions: the run's holdout is not checked against it (red ball,
    # held out here, is GoToRedBallGrey's only mission)
    assert ("red", "ball") in holdout.combos
    other = run_cli("analyze", str(run), "--episodes", "0", "--out", str(tmp_path / "other"),
                    "--level", "BabyAI-GoToRedBallGrey-v0")  # fmt: skip
    assert other.returncode == 0, other.stderr


def test_grid_values_parse_as_holdouts() -> None:
    assert parse_grid(["env.holdout.fraction=0.1,0.2"]) == {"env.holdout.fraction": [0.1, 0.2]}
