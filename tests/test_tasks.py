"""The language family takes any env that observes like minigrid: every registered MiniGrid and
BabyAI id, a user's own registered env, or a ``package.module:Class`` entry point; words outside
the vocabulary become ``<unk>`` and are counted."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import TINY, only_run_dir
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball
from minigrid.minigrid_env import MiniGridEnv

from film_rl import cli
from film_rl.tasks.registry import TASKS, task_class

OFFLINE = [o for o in TINY if not o.startswith("eval.freq")] + ["logging.wandb=disabled"]


class GlowingBallEnv(MiniGridEnv):
    """A user's own env: a 5x5 room, a ball, and a mission with words BabyAI never uses."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(
            mission_space=MissionSpace(mission_func=lambda: "fetch the glowing ball"),
            grid_size=5,
            max_steps=20,
            render_mode=render_mode,
        )

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        self.put_obj(Ball("red"), 3, 3)
        self.place_agent()
        self.mission = "fetch the glowing ball"


def unknown_words(run: Path) -> int:
    with (run / "progress.csv").open() as f:
        return max(int(float(row["instructions/unknown_words"] or 0)) for row in csv.DictReader(f))


def test_every_family_is_one_registered_task_class() -> None:
    for kind in TASKS:
        assert task_class(kind).kind == kind


def test_a_minigrid_level_trains_as_a_language_task(tmp_path: Path) -> None:
    args = ["train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *OFFLINE]
    assert cli.main([*args, "env.levels=[MiniGrid-DoorKey-5x5-v0]"]) == 0
    run = only_run_dir(tmp_path)
    assert unknown_words(run) > 0  # "use the key to open the door and then get to the goal": "use", "get", "goal"


def test_a_users_own_env_by_entry_point(tmp_path: Path) -> None:
    args = ["train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *OFFLINE]
    assert cli.main([*args, "env.levels=[test_tasks:GlowingBallEnv]"]) == 0
    run = only_run_dir(tmp_path)
    assert unknown_words(run) > 0  # "fetch", "glowing"
    assert cli.main(["evaluate", str(run), "--episodes", "2"]) == 0


@pytest.mark.parametrize(
    ("level", "message"),
    [
        ("MiniGrid-DoorKey-5x5-v9", "unknown env id 'MiniGrid-DoorKey-5x5-v9' (did you mean: MiniGrid-DoorKey-5x5-v0"),
        ("CartPole-v1", "not minigrid's {image, direction, mission}"),
        ("no_such_package:Env", "cannot be imported"),
        ("ALE/Pong-v5", "set env.kind=atari"),
    ],
)
def test_an_env_the_family_cannot_read_is_one_line(
    level: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["train", "experiments/quickstart.yaml", f"runs_dir={tmp_path}", *OFFLINE, f"env.levels=[{level}]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not any(tmp_path.iterdir())  # refused before anything was written
