"""BabyAI's episodes-to-0.99 metric: the centred window of BabyAI's own scripts, through real runs."""

import csv
import json
from pathlib import Path

import numpy as np
import pandas
import pytest
from conftest import run_cli

from film_rl.tasks.babyai_metric import ROW_FRAMES, CentredSuccess, fewest_episodes, success_length_for


def _rl_dataeff(rows: list[tuple[int, float]], window: int, threshold: float) -> int | None:
    """mila-iqia/babyai scripts/rl_dataeff.py, on a table of (episodes, success_rate) rows."""
    df = pandas.DataFrame(rows, columns=["episodes", "success_rate"])
    smoothed = df["success_rate"].rolling(window, center=True).mean()
    if smoothed.max() < threshold:
        return None
    return int(df[smoothed >= threshold].iloc[0].episodes)


def _feed(metric: CentredSuccess, outcomes_per_row: list[list[bool]]) -> None:
    for i, outcomes in enumerate(outcomes_per_row):
        for success in outcomes:
            metric.episode(success)
        metric.advance((i + 1) * ROW_FRAMES)


@pytest.mark.parametrize("window", [1, 10, 100])
def test_the_centred_window_gives_what_babyais_script_gives(window):
    rng = np.random.default_rng(window)
    # success climbing from 0.3 to 1.0 with noise: several rows per window above and below 0.9
    rows = [[bool(x) for x in rng.random(rng.integers(20, 60)) < min(1.0, 0.3 + i / 150)] for i in range(300)]
    metric = CentredSuccess(window, thresholds=(0.9, 0.99))
    _feed(metric, rows)
    for t in (0.9, 0.99):
        assert metric.reached.get(t) == _rl_dataeff(metric.rows, window, t)
    assert metric.reached[0.9] is not None and metric.reached[0.9] < metric.reached[0.99]


def test_the_reported_count_is_the_windows_centre_not_its_end():
    metric = CentredSuccess(window=10, thresholds=(0.99,))
    _feed(metric, [[False] * 5] * 10 + [[True] * 5] * 10)
    # the first all-success window is rows 10..19, centred on row 15: 16 rows' episodes counted
    assert metric.reached == {0.99: 16 * 5}


def test_a_row_without_an_ending_episode_repeats_the_last_rate():
    metric = CentredSuccess(window=3)
    metric.episode(True)
    metric.advance(3 * ROW_FRAMES)  # one episode in the first row, none in the next two
    assert [rate for _, rate in metric.rows] == [1.0, 1.0, 1.0]
    fresh = CentredSuccess(window=3)
    fresh.advance(ROW_FRAMES)
    assert fresh.rows == [(0, 0.0)]  # BabyAI's placeholders are failures


def test_the_window_survives_a_save_and_restore():
    rows = [[True, False, True]] * 7
    whole, first = CentredSuccess(window=5), CentredSuccess(window=5)
    _feed(whole, rows)
    _feed(first, rows[:4])
    first.episode(True)  # an open row is saved too
    second = CentredSuccess(window=5)
    second.restore(json.loads(json.dumps(first.state())))
    assert second.rows == first.rows and second.state() == first.state()


def test_a_run_stops_when_babyais_window_reaches_the_target(tmp_path):
    # one row of 25,600 frames is a window of one: the run stops the step that row closes
    done = run_cli(
        "train", "experiments/quickstart.yaml", "env.n_envs=8", "env.vec_env=dummy", "eval.episodes=2",
        "logging.wandb=disabled", "budget.timesteps=100000", "budget.stop_at_success=0.01", "budget.stop_on=babyai",
        "budget.babyai_window=1", "agent.algorithm.n_epochs=1", f"runs_dir={tmp_path}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (stats_path,) = tmp_path.glob("*/*/stats.json")
    stats = json.loads(stats_path.read_text())
    assert stats["centred"]["rows"] and len(stats["centred"]["rows"]) == 1
    assert stats["centred"]["reached"]["0.01"] == stats["centred"]["rows"][0][0] > 0
    progress = pandas.read_csv(stats_path.parent / "progress.csv")
    assert progress["time/total_timesteps"].max() < 100_000  # stopped early, at the first row
    # it stopped inside a rollout: the figure it stopped on is logged with the final evaluation
    assert progress["rollout/babyai_episodes_to_1"].dropna().tolist() == [stats["centred"]["reached"]["0.01"]]
    # `film-rl report` puts BabyAI's metric beside the rolling one, with the newest window's success
    report = run_cli("report", str(stats_path.parent), "--out", str(tmp_path / "report"), WANDB_MODE="disabled")
    assert report.returncode == 0, report.stderr
    (row,) = list(csv.DictReader((tmp_path / "report" / "runs.csv").open()))
    assert float(row["babyai_window"]) == pytest.approx(stats["centred"]["rows"][0][1])
    assert row["babyai_episodes_to_99"] == ""  # a row of 0.01 reaches neither 0.9 nor 0.99
    table = (tmp_path / "report" / "report.md").read_text()
    assert "| BabyAI's metric to 0.9 | BabyAI's metric to 0.99 | window |" in table
    assert f"| - (0/1) | - (0/1) | {stats['centred']['rows'][0][1]:.3f} |" in table


def test_a_run_resumed_without_rows_does_not_make_them_up():
    """A checkpoint saved before the rows were kept: the early rows are unknown, so no figure."""
    from film_rl.tasks.babyai import InstructionStats
    from film_rl.tasks.instructions import Vocabulary

    stats = InstructionStats(Vocabulary.babyai(), babyai_window=3)
    stats.restore({"episodes": 500, "unknown_words": 0, "episodes_to": {}, "recent": [True] * 100, "per_level": {}})
    stats.centred.episode(True)
    assert not stats.centred.advance(40 * ROW_FRAMES) and stats.babyai_episodes_to == {}
    again = CentredSuccess(window=3)
    again.restore(json.loads(json.dumps(stats.centred.state())))
    assert again.unknown  # and it stays unknown over further resumes


def _steady_policy(window: int, length: int, max_steps: int, fail_every: int | None) -> CentredSuccess:
    """A policy steady from its first frame: successes of ``length`` steps, one failure (a whole
    ``max_steps`` episode) every ``fail_every`` episodes, played frame by frame into the metric."""
    metric = CentredSuccess(window, thresholds=(0.99,))
    frames = episode = 0
    while 0.99 not in metric.reached and frames < 300 * ROW_FRAMES:
        episode += 1
        failed = fail_every is not None and episode % fail_every == 0
        frames += max_steps if failed else length
        metric.episode(not failed)
        metric.advance(frames)
    return metric


@pytest.mark.parametrize(
    ("window", "length", "fail_every"), [(10, 6, None), (10, 9, 100), (100, 5, None), (100, 7, 120)]
)
def test_no_policy_is_counted_below_the_floor_and_a_steady_one_lands_near_it(window, length, fail_every):
    """:func:`fewest_episodes` bounds what the centred window itself counts: a policy succeeding
    from its first frame is counted for (rows up to the centre) x frames / its mean episode length,
    never fewer than the floor for its successful episodes' length."""
    metric = _steady_policy(window, length, 64, fail_every)
    counted = metric.reached[0.99]
    floor = fewest_episodes(length, 64, window)
    failures = 0.0 if fail_every is None else 1 / fail_every
    steady = (window // 2 + 1) * ROW_FRAMES / ((1 - failures) * length + failures * 64)
    assert floor <= counted
    assert abs(counted - steady) <= steady * 0.01  # the rows' episode counts, up to one episode per row


def test_the_floor_falls_as_paths_lengthen_and_the_inverse_gives_the_length_back():
    """The metric counts episodes: a policy whose successful episodes are longer is counted for
    fewer, and success_length_for inverts fewest_episodes."""
    assert fewest_episodes(5.3, 64) > fewest_episodes(7.3, 64) > fewest_episodes(9.8, 64)
    for length in (4.0, 5.33, 12.0):
        assert success_length_for(fewest_episodes(length, 128), 128) == pytest.approx(length)
    assert fewest_episodes(5.33, 64, window=100) == pytest.approx(51 * ROW_FRAMES / (5.33 + (64 - 5.33) / 51))


def test_bench_floor_plays_babyais_bot_and_reports_the_floor(tmp_path):
    out = tmp_path / "floor.json"
    level = "BabyAI-GoToRedBallGrey-v0"
    done = run_cli("bench", "floor", "--level", level, "--episodes", "20", "--count", "10500", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "Sampling rejected" not in done.stdout
    result = json.loads(out.read_text())
    assert result["bot_success_rate"] == 1.0 and 1 < result["bot_mean_length"] < 64 and result["max_steps"] == 64
    assert result["window"] == 10
    assert result["fewest_babyai_episodes_to_99"] == round(fewest_episodes(result["bot_mean_length"], 64, 10))
    # BabyAI 1.0's 16-17k on this level is below the bot-path floor: its agent's paths were longer
    assert result["success_length_for_count"] > result["bot_mean_length"]
    for bad_input in (["--level", level, "--episodes", "0"], ["--level", "MiniGrid-Empty-5x5-v0"]):
        bad = run_cli("bench", "floor", *bad_input)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


TWO_LEVELS = ["BabyAI-GoToObjS4-v0", "BabyAI-GoToRedBallGrey-v0"]


@pytest.fixture(scope="module")
def two_level_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run on two levels, each episode drawing its level; rolling success over 1 episode."""
    from conftest import TINY, only_run_dir

    runs_dir = tmp_path_factory.mktemp("runs")
    done = run_cli(
        "train", "experiments/quickstart.yaml", f"runs_dir={runs_dir}", *TINY, f"env.levels=[{','.join(TWO_LEVELS)}]",
        "budget.timesteps=1024", "budget.success_window=1", "checkpoint.freq=512",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return only_run_dir(runs_dir)


def test_a_run_on_two_levels_counts_each_levels_episodes_and_thresholds(two_level_run: Path):
    """Each level's own episode count, and the count of its episodes at which its rolling success
    (window 1: its first success) first reached a threshold, in the log and in the checkpoint's
    statistics."""
    run = two_level_run
    rows = [r for r in csv.DictReader((run / "progress.csv").open()) if r.get("rollout/episodes")]
    last = rows[-1]
    counts = {level: int(last[f"rollout/episodes/{level}"]) for level in TWO_LEVELS}
    assert all(n > 0 for n in counts.values()) and sum(counts.values()) == int(last["rollout/episodes"])
    newest = max((run / "checkpoints").glob("*.stats.json"), key=lambda p: int(p.name.split("_")[1].split(".")[0]))
    stats = json.loads(newest.read_text())
    assert sum(stats["level_episodes"].values()) == stats["episodes"]
    reached = stats["level_episodes_to"]
    assert reached  # an untrained policy succeeds in ~1/4 of GoToObjS4's episodes
    for level, thresholds in reached.items():
        for t, n in thresholds.items():
            assert 1 <= n <= stats["level_episodes"][level]
            assert int(last[f"rollout/episodes_to_{round(float(t) * 100)}/{level}"]) == n


def test_a_run_resumed_without_level_counts_logs_none():
    """A checkpoint saved before each level's episodes were counted: counting from 0 would be
    wrong, so neither the counts nor their thresholds are kept from then on."""
    from film_rl.tasks.babyai import InstructionStats
    from film_rl.tasks.instructions import Vocabulary

    stats = InstructionStats(Vocabulary.babyai())
    stats.restore({"episodes": 500, "unknown_words": 0, "episodes_to": {}, "recent": [], "per_level": {}})
    assert stats.level_counts_unknown
    state = stats.state()
    assert state is not None and "level_episodes" not in state
    fresh = InstructionStats(Vocabulary.babyai())
    fresh.restore({**state, "episodes": 0})
    assert not fresh.level_counts_unknown  # a new run's empty statistics are not unknown


def test_a_report_of_one_level_shows_that_levels_figures(two_level_run: Path):
    """``film-rl report RUN --level LEVEL``: the level's evaluation, its rolling success and its own
    episode counts to the thresholds, where the plain report mixes every level's; a level the run
    does not play is one line and exit 2."""
    run, level = two_level_run, TWO_LEVELS[0]
    done = run_cli("report", str(run), "--level", level, WANDB_MODE="disabled")
    assert done.returncode == 0, done.stderr
    out = run / "report" / level
    line = next(csv.DictReader((out / "runs.csv").open()))
    evaluation = json.loads((run / "eval.json").read_text())
    assert float(line["final"]) == pytest.approx(evaluation["per_kind"][level])
    stats = json.loads((run / "stats.json").read_text())
    reached = stats["level_episodes_to"][level]  # an untrained policy succeeds in ~1/4 of GoToObjS4's episodes
    assert int(line["episodes_to_90"]) == reached["0.9"]
    assert line["babyai_episodes_to_90"] == ""  # BabyAI's window counts every level's episodes
    assert f"Level `{level}` alone" in (out / "report.md").read_text()
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    rows = [r for r in csv.DictReader((run / "progress.csv").open()) if r.get(f"rollout/success_rate/{level}")]
    assert rows  # the curve's points
    bad = run_cli("report", str(run), "--level", "BabyAI-GoTo-v0")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "plays BabyAI-GoToObjS4-v0, BabyAI-GoToRedBallGrey-v0" in bad.stderr


def test_a_run_stops_when_its_named_level_is_learnt_not_the_mixture():
    """``budget.stop_level``: a curriculum stops on its last level's own rolling success. The first
    level's successes lift the mixture's rate past the threshold and do not stop it; the named
    level's do, in the step its window first reaches the rate."""
    from film_rl.tasks.babyai import InstructionStats
    from film_rl.tasks.instructions import Vocabulary

    first, last = "BabyAI-PickupLoc-v0", "BabyAI-PutNextLocal-v0"
    stats = InstructionStats(Vocabulary.babyai(), window=2, stop_at=1.0, several_levels=True, stop_level=last)
    mixed = InstructionStats(Vocabulary.babyai(), window=2, stop_at=1.0, several_levels=True)

    def step(*episodes: tuple[str, bool]) -> list[bool]:
        infos = [{"level": level, "is_success": success} for level, success in episodes]
        dones = np.ones(len(infos), dtype=bool)
        going_on = []
        for s in (stats, mixed):
            s.locals = {"dones": dones, "infos": infos, "new_obs": np.zeros((len(infos), 7, 7, 3))}
            going_on.append(s._on_step())
        return going_on

    # (goes on, the mixture's rule goes on): its last 2 episodes of any level succeeded at once
    assert step((first, True), (first, True)) == [True, False]
    assert step((last, True), (first, True)) == [True, False]
    assert step((last, False), (last, True)) == [True, True]  # the level's window: [False, True]
    assert step((first, False), (last, True)) == [False, True]  # [True, True]: learnt
    thresholds = (0.9, 0.99, 1.0)  # the stopping rate is recorded too
    reached = {first: dict.fromkeys(thresholds, 2), last: dict.fromkeys(thresholds, 4)}
    assert stats.level_counts() == ({first: 4, last: 4}, reached)


def test_a_stop_level_is_one_of_the_runs_levels_and_reads_the_rolling_success():
    levels = f"env.levels=[{','.join(TWO_LEVELS)}]"
    base = ["train", "experiments/quickstart.yaml", levels, "budget.stop_at_success=0.9"]
    for override, expected in [
        ("budget.stop_level=BabyAI-GoTo-v0", "budget.stop_level: BabyAI-GoTo-v0 is not one of env.levels"),
        ("budget.stop_on=babyai", "use budget.stop_on=rolling"),
    ]:
        extra = [] if "stop_level" in override else [f"budget.stop_level={TWO_LEVELS[0]}"]
        done = run_cli(*base, override, *extra)
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def _one_rollout(levels: list[str]):
    """One rollout of 4 envs x 128 steps on ``levels``, then its update, with the task's training
    statistics as the callback: the model, the task, the statistics and the logged rows."""
    from stable_baselines3.common.logger import KVWriter, Logger

    from film_rl.bench import bench_config, film_model
    from film_rl.tasks.registry import task_for

    class Kept(KVWriter):
        def __init__(self) -> None:
            self.rows: list[dict] = []

        def write(self, key_values, key_excluded, step=0):
            self.rows.append(dict(key_values))

    overrides = [f"env.levels=[{','.join(levels)}]", "env.n_envs=4", "agent.algorithm.n_steps=128"]
    config = bench_config(levels[0], "film-cnn", overrides)
    model, task = film_model(config, "cpu"), task_for(config)
    kept = Kept()
    model.set_logger(Logger(None, [kept]))
    stats = task.training_stats()
    model.learn(4 * 128, callback=stats)
    model.get_env().close()
    return model, task, stats, kept.rows


def test_a_run_on_two_levels_logs_its_critics_explained_variance_on_each():
    """``train/explained_variance/<level>``: the critic's values against the returns of that
    level's steps in the rollout, each step's level read back from its mission here (GoToObjS4's
    start with "go", PickupDist's with "pick"); a level whose returns were all alike logs none."""
    levels = ["BabyAI-GoToObjS4-v0", "BabyAI-PickupDist-v0"]
    model, task, _, rows = _one_rollout(levels)
    buffer = model.rollout_buffer
    verbs = buffer.observations["instruction"][..., 0]
    logged = {k.split("/")[-1]: v for k, v in rows[-1].items() if k.startswith("train/explained_variance/")}
    expected = {}
    for level, verb in zip(levels, ("go", "pick"), strict=True):
        level_rows = verbs == task.vocab.stoi[verb]
        returns, values = buffer.returns[level_rows], buffer.values[level_rows]
        assert level_rows.any()  # each env draws its level per episode: both are played in 512 steps
        if returns.var() > 0:
            expected[level] = 1 - np.var(returns - values) / np.var(returns)
    assert levels[0] in expected  # an untrained policy finds GoToObjS4's object in ~1/4 of episodes
    assert logged.keys() == expected.keys()
    for level, value in expected.items():
        assert logged[level] == pytest.approx(value, rel=1e-4, abs=1e-5)


def test_a_run_on_one_level_keeps_no_per_level_figures():
    """One level: its per-level count and critic figure would repeat the overall ones, so neither
    is logged, and no step's level is kept."""
    _, _, stats, rows = _one_rollout(["BabyAI-GoToObjS4-v0"])
    assert int(rows[-1]["rollout/episodes"]) > 0  # the rollout ran and was logged
    assert not [k for row in rows for k in row if k.startswith(("train/explained_variance/", "rollout/episodes/"))]
    assert stats.step_levels == []
