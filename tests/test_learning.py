"""Short real training runs through the CLI: PPO and RecurrentPPO must actually learn.

BabyAI-GoToObjS4 (a 4x4 room, one object) is small enough to learn in seconds: an untrained
policy succeeds in about a quarter of the episodes (in ~15 steps), a trained one in nearly all
(in ~4 steps).
"""

import csv
import re

import pytest
import yaml
from conftest import TINY, eval_json, only_run_dir, run_cli
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl.model.policies import FilmCnnPolicy, FilmLstmPolicy, ResidualLSTM

FAST = [
    "env.levels=[BabyAI-GoToObjS4-v0]",
    "env.vec_env=dummy",
    "agent.algorithm.n_steps=64",
    "eval.episodes=100",
    "logging.progress_bar=false",
]


# the CNN learns faster at 1e-3; the LSTM, at 1e-3, reaches 1.0 by 14k steps and then falls back to
# ~0.5 (constant or linearly decayed alike): it keeps its recipe's 5e-4
@pytest.mark.parametrize(
    "agent,timesteps,lr,memory",
    [
        ("film-cnn", 16000, "1e-3", []),
        ("film-lstm", 20000, "5e-4", []),
        # the residual memory reading normalized features and writing at their scale, trained on
        # sequences of 8 steps, observing its previous action: one run for the five settings (the
        # suite's time)
        (
            "film-lstm",
            20000,
            "5e-4",
            [
                "agent.memory=residual",
                "agent.memory_norm=true",
                "agent.memory_scale=true",
                "agent.algorithm.sequence_length=8",
                "env.previous_action=true",
            ],
        ),
    ],
)
def test_policy_learns_through_the_cli(tmp_path, agent, timesteps, lr, memory):
    budget = f"budget.timesteps={timesteps}"
    rate = f"agent.algorithm.learning_rate={lr}"
    done = run_cli(
        "train", "experiments/quickstart.yaml", f"agent={agent}", *memory, budget, rate, f"runs_dir={tmp_path}", *FAST
    )
    assert done.returncode == 0, done.stderr
    assert "success_rate=" in done.stdout and "run directory:" in done.stdout
    result = eval_json(only_run_dir(tmp_path))
    assert result["success_rate"] >= 0.8, result
    assert result["mean_episode_length"] < 8, result
    if agent == "film-cnn":
        assert "memory" not in result
        return
    # what the memory did in the final evaluation: a residual one's projection, drawn at zero, has moved
    assert result["memory"]["steps"] > 0 and ("adds" in result["memory"]) == bool(memory), result
    if memory:
        assert result["memory"]["adds"] > 0, result
        shown = run_cli("evaluate", str(only_run_dir(tmp_path)), "--episodes", "4")
        assert shown.returncode == 0, shown.stderr
        line = r"^memory \(the actor's LSTM, [\d,]+ steps\): adds \d\.\d{3} of the features' norm; "
        line += r"gate pre-activations beyond \|5\|: \d\.\d{3}$"
        assert re.search(line, shown.stdout, re.M), shown.stdout


def test_linear_schedules_reach_sb3_and_are_saved_with_the_model(tmp_path):
    """``*_schedule: linear`` gives SB3 its own LinearSchedule: the optimiser's rate falls over the
    budget, and the saved zip carries the schedule, so a resumed run goes on along it."""
    overrides = [
        "agent.algorithm.learning_rate=1e-3",
        "agent.algorithm.learning_rate_schedule=linear",
        "agent.algorithm.clip_range_schedule=linear",
        "budget.timesteps=512",
    ]
    done = run_cli("train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY, *overrides)
    assert done.returncode == 0, done.stderr
    run = only_run_dir(tmp_path)
    model = PPO.load(run / "model.zip")
    assert model.lr_schedule(1.0) == pytest.approx(1e-3) and model.lr_schedule(0.5) == pytest.approx(5e-4)
    assert model.clip_range(0.25) == pytest.approx(0.05)
    rates = [
        float(r["train/learning_rate"])
        for r in csv.DictReader((run / "progress.csv").open())
        if r.get("train/learning_rate")
    ]
    assert len(rates) >= 3 and rates == sorted(rates, reverse=True) and rates[-1] < 0.5e-3


def test_a_linear_entropy_bonus_falls_over_the_budget_and_a_resumed_run_goes_on_along_it(tmp_path):
    """SB3 takes ``ent_coef`` as a number: the schedule sets it before every update, from the
    timesteps so far, so PPO's loss sees 0.02 x (1 - t / budget), and a run stopped and resumed
    with a longer budget picks the line up from where it is."""
    overrides = ["agent.algorithm.ent_coef=0.02", "agent.algorithm.ent_coef_schedule=linear", "budget.timesteps=512"]
    done = run_cli("train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY, *overrides)
    assert done.returncode == 0, done.stderr
    run = only_run_dir(tmp_path)

    def logged(log: str) -> list[tuple[int, float]]:
        rows = csv.DictReader((run / log).open())
        return [(int(r["time/total_timesteps"]), float(r["train/ent_coef"])) for r in rows if r.get("train/ent_coef")]

    first = logged("progress.csv")
    assert len(first) >= 3
    for steps, coef in first:
        assert coef == pytest.approx(0.02 * (1 - steps / 512))
    assert PPO.load(run / "model.zip").ent_coef == pytest.approx(first[-1][1])
    done = run_cli("train", "--resume", str(run), "budget.timesteps=1024")
    assert done.returncode == 0, done.stderr
    resumed = logged("progress.1.csv")  # the resumed leg's log, beside the first
    assert resumed and all(s > 512 for s, _ in resumed)
    for steps, coef in resumed:
        assert coef == pytest.approx(0.02 * (1 - steps / 1024))


@pytest.mark.parametrize("agent", ["film-cnn", "film-lstm"])
def test_schedule_timesteps_pins_the_linear_schedules_through_a_resume_with_a_raised_budget(tmp_path, agent):
    """``schedule_timesteps`` is the horizon of the linear schedules, in timesteps: the learning rate,
    the clipping range and the entropy bonus fall along 1 - t / 768 whatever the budget, so a run of
    512 steps resumed to 640 goes on along the same line (without the setting, the line would
    stretch to the new budget; without the resume taking the config's schedules, SB3 would read the
    zip's, made for 512)."""
    horizon = 768
    overrides = [
        f"agent={agent}",
        "agent.algorithm.learning_rate=1e-3",
        "agent.algorithm.learning_rate_schedule=linear",
        "agent.algorithm.clip_range_schedule=linear",
        "agent.algorithm.ent_coef=0.02",
        "agent.algorithm.ent_coef_schedule=linear",
        f"agent.algorithm.schedule_timesteps={horizon}",
        "budget.timesteps=512",
    ]
    done = run_cli("train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY, *overrides)
    assert done.returncode == 0, done.stderr
    run = only_run_dir(tmp_path)
    done = run_cli("train", "--resume", str(run), "budget.timesteps=640")
    assert done.returncode == 0, done.stderr

    def line(steps: int) -> float:
        return 1.0 - steps / horizon

    # what SB3 reads: its schedules take the fraction of the (new) budget left
    model = (RecurrentPPO if agent == "film-lstm" else PPO).load(run / "model.zip")
    for steps in (0, 128, 256, 512, 640):
        left = 1 - steps / 640
        assert model.lr_schedule(left) == pytest.approx(1e-3 * line(steps), abs=1e-12), steps
        assert model.clip_range(left) == pytest.approx(0.2 * line(steps), abs=1e-12), steps
    for log in ("progress.csv", "progress.1.csv"):  # the first leg, then the resumed one
        rows = [r for r in csv.DictReader((run / log).open()) if r.get("train/ent_coef")]
        assert rows, log
        for r in rows:
            steps = int(r["time/total_timesteps"])
            assert float(r["train/ent_coef"]) == pytest.approx(0.02 * line(steps), abs=1e-12), (log, steps)
    resumed = [int(r["time/total_timesteps"]) for r in csv.DictReader((run / "progress.1.csv").open())]
    assert max(resumed) == 640


def test_a_resume_that_raises_the_budget_can_pin_the_entropy_line_where_it_ended(tmp_path):
    """A run whose bonus fell to 0 over its budget, resumed with a larger one: with the horizon set
    at the old budget the bonus stays at 0 (without it, it would climb back to 0.01 at 512 of 1,024)."""
    overrides = ["agent.algorithm.ent_coef=0.02", "agent.algorithm.ent_coef_schedule=linear", "budget.timesteps=512"]
    done = run_cli("train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *TINY, *overrides)
    assert done.returncode == 0, done.stderr
    run = only_run_dir(tmp_path)
    done = run_cli("train", "--resume", str(run), "budget.timesteps=1024", "agent.algorithm.schedule_timesteps=512")
    assert done.returncode == 0, done.stderr
    rows = [r for r in csv.DictReader((run / "progress.1.csv").open()) if r.get("train/ent_coef")]
    assert rows and all(float(r["train/ent_coef"]) == 0.0 for r in rows)
    assert yaml.safe_load((run / "config.yaml").read_text())["agent"]["algorithm"]["schedule_timesteps"] == 512
    refused = run_cli("train", "--resume", str(run), "agent.algorithm.ent_coef=0.5")
    assert refused.returncode == 2 and "cannot change 'agent.algorithm.ent_coef' when resuming" in refused.stderr


@pytest.mark.parametrize(
    "recipe,parts,started",
    [
        ("goto-lstm-from-cnn", "features", "FiLM network started from"),
        ("goto-lstm-residual", "memoryless", "policy but its memory started from"),
    ],
)
def test_the_goto_lstm_recipes_start_from_a_cnn_run(tmp_path, tiny_run, recipe, parts, started):
    """The GoTo LSTM recipes take a FiLM CNN run (here the quickstart's: the same network on
    another level): its FiLM network, or its whole policy for the residual memory. They train, save
    the memory they name, and play GoTo; without init_from each is one line and exit status 2."""
    recipe = f"experiments/{recipe}.yaml"
    done = run_cli("train", recipe, f"runs_dir={tmp_path}", *TINY, f"init_from={tiny_run}")
    assert done.returncode == 0, done.stderr
    assert started in done.stdout
    run = only_run_dir(tmp_path)
    policy = RecurrentPPO.load(run / "model.zip").policy
    assert isinstance(policy, FilmLstmPolicy)
    assert isinstance(policy.lstm_actor, ResidualLSTM) == (parts == "memoryless")  # saved and loaded back
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["init_parts"] == parts and saved["env"]["levels"] == ["BabyAI-GoTo-v0"]
    assert eval_json(run)["episodes"] == 4
    refused = run_cli("train", recipe, f"runs_dir={tmp_path / 'refused'}", *TINY)
    assert refused.returncode == 2 and "init_from" in refused.stderr and len(refused.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "recipe,level,memory",
    [
        ("pickuploc", "BabyAI-PickupLoc-v0", False),
        ("putnextlocal", "BabyAI-PutNextLocal-v0", False),
        ("gotolocal-efficiency", "BabyAI-GoToLocal-v0", False),
        ("gotolocal-lstm", "BabyAI-GoToLocal-v0", True),
        ("goto-memory", "BabyAI-GoTo-v0", True),
        ("goto-cnn", "BabyAI-GoTo-v0", False),
    ],
)
def test_a_level_recipe_trains_a_few_hundred_steps_and_its_policy_plays(tmp_path, recipe, level, memory):
    """The long recipes of the harder levels, on a tiny budget: they compose, train, checkpoint,
    save and evaluate on their own level, with the policy they name."""
    done = run_cli("train", f"experiments/{recipe}.yaml", f"runs_dir={tmp_path}", *TINY, "checkpoint.freq=128")
    assert done.returncode == 0, done.stderr
    run = only_run_dir(tmp_path)
    assert (run / "model.zip").is_file() and list((run / "checkpoints").glob("step_*.zip"))
    result = eval_json(run)
    assert result["episodes"] == 4 and 0.0 <= result["success_rate"] <= 1.0
    if memory:  # the FiLM CNN + LSTM, for RecurrentPPO, with the critic's own memory
        policy = RecurrentPPO.load(run / "model.zip").policy
        assert isinstance(policy, FilmLstmPolicy) and policy.lstm_critic is not None
        if recipe == "goto-memory":  # memory from the first frame, with every fix of the bolted-on ones
            lstm = policy.lstm_actor
            assert isinstance(lstm, ResidualLSTM) and lstm.norm is not None and lstm.scale
            assert "previous_action" in policy.observation_space.spaces
    else:  # the memoryless FiLM CNN, for PPO
        assert isinstance(PPO.load(run / "model.zip").policy, FilmCnnPolicy)
    assert yaml.safe_load((run / "config.yaml").read_text())["env"]["levels"] == [level]
