"""Goal-state datasets: made by BabyAI's bot, stored as one checked .npz, read back unchanged."""

import json
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import run_cli
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.utils.baby_ai_bot import BabyAIBot

from film_rl.agile.goals import SCHEMA_VERSION, GoalDataset, load_goals, make_goals
from film_rl.errors import UserError
from film_rl.tasks.babyai_envs import InstructionWrapper
from film_rl.tasks.instructions import Vocabulary, split_words

LEVELS = ["BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0"]
#: in the policy's (3, 7, 7) view, image[:, x, y]: the agent stands at (3, 6) facing (3, 5)
FRONT, AGENT = (3, 5), (3, 6)


@pytest.fixture(scope="module")
def dataset() -> GoalDataset:
    return make_goals(LEVELS, 20, seed=100, vocab=Vocabulary.babyai())


@pytest.fixture(scope="module")
def saved(dataset, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("goals") / "goals.npz"
    dataset.save(path)
    return str(path)


def test_round_trip_keeps_every_array(dataset, saved):
    loaded = load_goals(saved, vocab=Vocabulary.babyai())
    assert len(loaded) == len(dataset) == 20  # the bot solves every GoToLocal / PickupLoc episode
    for name in ("instructions", "lengths", "images", "directions", "levels", "missions", "seeds"):
        stored, original = getattr(loaded, name), getattr(dataset, name)
        assert stored.dtype == original.dtype and np.array_equal(stored, original), name
    assert loaded.images.shape == (20, 3, 7, 7) and loaded.images.dtype == np.uint8
    assert loaded.level_names == LEVELS and loaded.level_counts() == {LEVELS[0]: 10, LEVELS[1]: 10}
    assert loaded.kinds() == {"go to": 10, "pick up": 10}
    assert loaded.meta["schema_version"] == SCHEMA_VERSION and loaded.meta["seed"] == 100
    assert loaded.meta["episodes_attempted"] == 20 and loaded.meta["bot_failures"] == 0
    assert loaded.vocab == Vocabulary.babyai()


def test_every_state_is_the_last_view_of_a_solved_episode(dataset):
    """Replay each episode on the bare level, bot in charge: it must end in success on the stored view."""
    for i in range(len(dataset)):
        env = gym.make(dataset.level_names[dataset.levels[i]])
        obs, _ = env.reset(seed=int(dataset.seeds[i]))
        assert obs["mission"] == dataset.missions[i]
        bot = BabyAIBot(env.unwrapped)
        terminated = truncated = False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, _ = env.step(bot.replan())
        assert terminated and reward > 0
        assert np.array_equal(obs["image"].transpose(2, 0, 1), dataset.images[i])
        assert obs["direction"] == dataset.directions[i]


def _described(mission: str) -> tuple[int, int | None]:
    """(object type, colour or None) of "go to the red ball" / "pick up a key behind you"."""
    words = split_words(mission)
    at = next(i for i, word in enumerate(words) if word in OBJECT_TO_IDX)
    return OBJECT_TO_IDX[words[at]], COLOR_TO_IDX.get(words[at - 1])


def test_the_stored_view_shows_the_goal(dataset):
    """GoTo: the described object is right in front of the agent; PickUp: the agent holds it."""
    for image, mission in zip(dataset.images, dataset.missions, strict=True):
        kind, colour = _described(str(mission))
        x, y = FRONT if mission.startswith("go to") else AGENT
        assert image[0, x, y] == kind, mission
        assert colour is None or image[1, x, y] == colour, mission


def test_tokens_are_exactly_what_the_policy_reads(dataset):
    vocab = Vocabulary.babyai()
    for i in range(len(dataset)):
        env = InstructionWrapper(gym.make(dataset.level_names[dataset.levels[i]]), vocab)
        obs, info = env.reset(seed=int(dataset.seeds[i]))
        assert info["mission"] == dataset.missions[i]
        assert np.array_equal(obs["instruction"], dataset.instructions[i])
        assert obs["instruction_length"][0] == dataset.lengths[i]
    assert dataset.instructions.dtype == np.int64 and dataset.instructions.shape[1] == 48


def test_bot_failures_are_skipped_and_counted(tmp_path):
    """The bot cannot solve KeyInBox (it raises when a box is opened): nothing kept, all counted."""
    empty = make_goals(["BabyAI-KeyInBox-v0"], 3, seed=0, vocab=Vocabulary.babyai())
    assert len(empty) == 0 and empty.meta["bot_failures"] == 3 and empty.meta["bot_errors"] == 3
    empty.save(tmp_path / "empty.npz")
    assert len(load_goals(tmp_path / "empty.npz")) == 0
    with pytest.raises(UserError, match="positive"):
        make_goals(LEVELS, 0, seed=0, vocab=Vocabulary.babyai())


def test_split_is_disjoint_reproducible_and_complete(dataset):
    train, held = dataset.split(0.25, seed=1)
    assert len(train) == 15 and len(held) == 5
    assert set(train.seeds).isdisjoint(held.seeds) and set(train.seeds) | set(held.seeds) == set(dataset.seeds)
    again, _ = dataset.split(0.25, seed=1)
    assert np.array_equal(again.images, train.images)
    assert train.level_names == dataset.level_names and train.meta == dataset.meta
    with pytest.raises(ValueError):
        dataset.split(1.0)


def _rewrite(src, dst, **changes):
    """Copy a goal-state file with some arrays replaced (None: dropped)."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for name, value in changes.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    np.savez(dst, **arrays)


def _future_meta(saved):
    with np.load(saved, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
    return np.array(json.dumps({**meta, "schema_version": SCHEMA_VERSION + 1}))


def _broken_files(saved, tmp_path):
    data = Path(saved).read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    middle = len(data) // 2
    (tmp_path / "damaged.npz").write_bytes(data[:middle] + bytes(64) + data[middle + 64 :])
    (tmp_path / "text.npz").write_text("instructions,images\n1,2\n")
    _rewrite(saved, tmp_path / "no-images.npz", images=None)
    _rewrite(saved, tmp_path / "future.npz", meta=_future_meta(saved))
    _rewrite(saved, tmp_path / "foreign.npz", meta=np.array(json.dumps({"schema": "someone/else"})))
    _rewrite(saved, tmp_path / "short.npz", directions=np.zeros(3, np.int64))
    return {
        "truncated.npz": "truncated or corrupted",
        "damaged.npz": "is unreadable",
        "text.npz": "not an .npz archive",
        "no-images.npz": "missing array(s) images",
        "future.npz": "newer than this film-rl reads",
        "foreign.npz": "not a film-rl goal-state file",
        "short.npz": "inconsistent arrays: 'directions'",
        "absent.npz": "no such goal-state file",
    }


def _one_line_error(done):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_broken_files_are_one_line_user_errors(saved, tmp_path):
    for name, problem in _broken_files(saved, tmp_path).items():
        path = tmp_path / name
        with pytest.raises(UserError) as err:
            load_goals(path)
        assert problem in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value), name
        line = _one_line_error(run_cli("goals", "info", str(path)))
        assert line.startswith("film-rl goals: error:") and problem in line, name


def test_another_vocabulary_is_detected(saved):
    with pytest.raises(UserError, match="another vocabulary"):
        load_goals(saved, vocab=Vocabulary(["go", "to"]))


def test_make_and_info_through_the_cli(tmp_path):
    out = tmp_path / "sub" / "goals.npz"
    done = run_cli("goals", "make", "--env", LEVELS[0], "--env", LEVELS[1], "--episodes", "6", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}: 6 goal states from 6 episodes" in done.stdout
    assert not [p for p in out.parent.iterdir() if p != out]  # no temporary file left behind

    done = run_cli("goals", "info", str(out))
    assert done.returncode == 0, done.stderr
    for text in ("6 goal states", "film-rl/goals v1", LEVELS[0], LEVELS[1], "go to", "pick up"):
        assert text in done.stdout, text

    done = run_cli("goals", "info", str(out), "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["states"] == 6 and info["schema_version"] == 1 and info["file_bytes"] == out.stat().st_size
    assert info["levels"] == {LEVELS[0]: 3, LEVELS[1]: 3} and info["kinds"] == {"go to": 3, "pick up": 3}
    assert zipfile.is_zipfile(out)


def test_make_rejects_bad_input_in_one_line(tmp_path):
    out = str(tmp_path / "goals.npz")
    line = _one_line_error(run_cli("goals", "make", "--env", "BabyAI-GoToLocl-v0", "--episodes", "5", "--out", out))
    assert "unknown env id" in line and "BabyAI-GoToLocal-v0" in line
    line = _one_line_error(run_cli("goals", "make", "--env", LEVELS[0], "--episodes", "0", "--out", out))
    assert "--episodes must be positive" in line
    assert "--episodes" in _one_line_error(run_cli("goals", "make", "--env", LEVELS[0], "--out", out))
