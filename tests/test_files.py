"""The one atomic writer, and the run directory's naming and reading helpers built on it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from film_rl.agile.goals import make_goals
from film_rl.config import ExperimentConfig
from film_rl.errors import UserError
from film_rl.files import read_json, write_atomically, write_json, write_text
from film_rl.run import run_dir as runs
from film_rl.sweep.report import progress_rows
from film_rl.tasks.instructions import UNK, Vocabulary


def test_a_written_file_has_the_permissions_a_plain_write_gives(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "atomic.txt", "x")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "eval.json"
    write_json(target, {"success_rate": 1.0})

    def fill_the_disk(tmp: Path) -> None:
        tmp.write_bytes(b'{"success')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(UserError, match=f"no space left on device while writing {target}"):
        write_atomically(target, fill_the_disk)
    assert read_json(target) == {"success_rate": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]


@pytest.mark.parametrize(
    ("content", "problem"), [(b"", "empty"), (b'{"a": ', "not valid JSON"), (b"\xff\xfe", "binary")]
)
def test_a_damaged_json_file_is_named_in_one_line(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "stats.json").write_bytes(content)
    with pytest.raises(UserError, match=problem) as caught:
        read_json(tmp_path / "stats.json")
    assert str(tmp_path / "stats.json") in str(caught.value) and "\n" not in str(caught.value)


def test_goal_datasets_are_readable_by_whoever_could_read_a_plain_file(tmp_path: Path) -> None:
    data = make_goals(["BabyAI-GoToRedBallGrey-v0"], 2, 0, Vocabulary.babyai())
    old = os.umask(0o022)
    try:
        data.save(tmp_path / "goals.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "goals.npz").stat().st_mode) == 0o644


def test_runs_started_together_never_share_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(runs.secrets, "token_hex", lambda n: next(draws))
    monkeypatch.setattr(runs.time, "strftime", lambda fmt: "20261203-120000")
    config = ExperimentConfig(runs_dir=str(tmp_path))
    first, second = runs.new_run_dir(config), runs.new_run_dir(config)
    assert first != second and second.name.endswith("-bbbbbb")


def test_resumed_legs_are_read_in_order_and_the_curve_never_goes_back(tmp_path: Path) -> None:
    header = "time/total_timesteps,rollout/success_rate\n"
    # killed at 300 after a checkpoint at 250, then resumed ten times from there on
    legs = {"progress.csv": [100, 200, 300], **{f"progress.{i}.csv": [100 * i + 150] for i in range(1, 11)}}
    for name, steps in legs.items():
        (tmp_path / name).write_text(header + "".join(f"{s},0.5\n" for s in steps))
    assert [p.name for p in runs.progress_files(tmp_path)][-2:] == ["progress.9.csv", "progress.10.csv"]
    steps = [float(r["time/total_timesteps"]) for r in progress_rows(tmp_path)]
    assert steps == sorted(set(steps))
    assert steps == [100, 200, *(100 * i + 150 for i in range(1, 11))]  # 300: a branch the kill lost


@pytest.mark.parametrize("word", ["ballé", "ball3", "BALL_"])
def test_a_word_outside_the_vocabulary_is_unknown_not_another_word(word: str) -> None:
    vocab = Vocabulary.babyai()
    tokens, length = vocab.encode(f"go to the red {word}", max_length=8)
    expected = vocab.stoi[UNK] if word != "BALL_" else vocab.stoi["ball"]  # "_" separates like punctuation
    assert length == 5 and tokens[4] == expected
