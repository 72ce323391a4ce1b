"""The run directory: what a training run leaves on disk, and how it is read back.

::

    runs/<experiment>/<run-id>/
        config.yaml          resolved config (recipes inlined)
        vocab.json           the instruction vocabulary the model was trained with
        model.zip            final model (PPO / RecurrentPPO zip)
        stats.json           episode bookkeeping (episodes, episodes to a rolling success of 0.9/0.99), for resuming
        reward_model.pt      AGILE runs: the reward model; goals.npz: the goal states it made
        checkpoints/         step_<timesteps>.zip (+ .stats.json, .reward_model.pt), the latest few
                             plus any interrupt
        eval.json            final evaluation
        progress.csv         every logged scalar
        tensorboard/  wandb/
"""

from __future__ import annotations

import json
import re
import secrets
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from film_rl.config import ExperimentConfig, load_saved_config
from film_rl.errors import UserError
from film_rl.files import read_json_object, write_atomically
from film_rl.tasks.instructions import Vocabulary

CONFIG, VOCAB, MODEL, EVAL, CHECKPOINTS = "config.yaml", "vocab.json", "model.zip", "eval.json", "checkpoints"
#: episode bookkeeping beside each saved model, so a resumed run goes on counting episodes
STATS = "stats.json"
_STEP = re.compile(r"step_(\d+)\.zip$")


def algorithm_class(config: ExperimentConfig) -> type[PPO] | type[RecurrentPPO]:
    return RecurrentPPO if config.agent.policy == "lstm" else PPO


def new_run_dir(config: ExperimentConfig) -> Path:
    """``runs/<experiment>/<date-time>-s<seed>-<conditioning>-<random>``: sortable, and never an
    existing directory (runs started in the same second by a sweep draw again)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent = Path(config.runs_dir) / config.name
    for _ in range(100):
        path = parent / f"{stamp}-s{config.seed}-{config.agent.conditioning}-{secrets.token_hex(3)}"
        try:
            parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as err:
            raise UserError(f"cannot create a run directory in {parent}: {err.strerror or err}") from None
        (path / CHECKPOINTS).mkdir()
        return path
    raise UserError(f"cannot find a free run directory name in {parent}")


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(timesteps, path) of every checkpoint, oldest first."""
    found = []
    for path in (run_dir / CHECKPOINTS).glob("step_*.zip"):
        match = _STEP.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def saved_with(model_path: Path) -> list[Path]:
    """A saved model's zip and every file saved beside it (statistics, reward model)."""
    if model_path.name == MODEL:
        return [model_path, *(model_path.with_name(n) for n in (STATS, "reward_model.pt"))]
    return [model_path, *model_path.parent.glob(f"{model_path.stem}.*")]


def beside(model_path: Path, name: str) -> Path:
    """A file that belongs with a saved model: ``RUN/<name>`` beside ``RUN/model.zip``,
    ``checkpoints/step_N.<name>`` beside ``checkpoints/step_N.zip``."""
    if model_path.name == MODEL:
        return model_path.with_name(name)
    return model_path.with_name(f"{model_path.stem}.{name}")


def save_atomically(model: BaseAlgorithm, path: Path) -> None:
    """SB3's ``save`` through the atomic writer: an interrupted save never replaces a good file."""
    write_atomically(path, model.save)


def read_config(run_dir: Path) -> ExperimentConfig:
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"{run_dir} is not a run directory: {CONFIG} is missing")
    return load_saved_config(run_dir / CONFIG)


def read_vocab(run_dir: Path) -> Vocabulary:
    return Vocabulary.load(run_dir / VOCAB)


def read_stats(path: Path) -> dict[str, Any]:
    """The episode bookkeeping beside a saved model (:meth:`InstructionStats.state`), checked."""
    return read_json_object(
        path,
        {"episodes": int, "unknown_words": int, "episodes_to": dict, "recent": list, "per_level": dict},
        "statistics file",
    )


def read_eval(path: Path) -> dict[str, Any]:
    """A run's ``eval.json``, checked: a success rate, or per-game scores (whatever its task reports)."""
    evaluation = read_json_object(path, {"episodes": int}, "evaluation file")
    rate = evaluation.get("success_rate")
    scored = isinstance(evaluation.get("human_normalized"), dict) or isinstance(evaluation.get("per_game"), dict)
    if not isinstance(rate, int | float) and not scored:
        raise UserError(f"{path} is not a complete evaluation file (no success_rate or per-game scores)")
    return evaluation


def progress_files(run_dir: Path) -> list[Path]:
    """The run's training logs in the order they were written: ``progress.csv``, then one
    ``progress.N.csv`` per resume (``progress.10.csv`` after ``progress.9.csv``)."""

    def leg(path: Path) -> int:
        number = path.name[len("progress.") : -len(".csv")]
        return int(number) if number.isdigit() else 0

    found = [p for p in run_dir.glob("progress*.csv") if p.name == "progress.csv" or leg(p) > 0]
    return sorted(found, key=leg)


def model_timesteps(path: Path) -> int:
    """The timesteps a saved model was trained for, from its zip's ``data`` (no network is built)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        steps = data["num_timesteps"]
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a saved model ({_reason(err)}); it may be truncated or corrupted") from None
    if not isinstance(steps, int) or steps < 0:
        raise UserError(f"{path} is not a saved model (bad num_timesteps)")
    return steps


@dataclass(frozen=True)
class SavedState:
    """A model a run can go on from: ``model.zip`` or a checkpoint, and its timesteps
    (``None``: unreadable, so it cannot be the state to resume)."""

    path: Path
    timesteps: int | None
    problem: str = ""


def saved_states(run_dir: Path) -> list[SavedState]:
    """Every saved model of the run, newest first. At equal timesteps ``model.zip`` (the end of
    training) comes first; unreadable models come last, with what is wrong with them."""
    states = [SavedState(path, steps) for steps, path in checkpoints(run_dir)]
    model = run_dir / MODEL
    if model.exists():
        try:
            states.append(SavedState(model, model_timesteps(model)))
        except UserError as err:
            states.append(SavedState(model, None, str(err)))
    return sorted(states, key=lambda s: (s.timesteps is not None, s.timesteps or 0, s.path.name == MODEL), reverse=True)


def locate(target: str | Path) -> tuple[Path, Path]:
    """(run directory, model zip) for a run directory (its newest saved model: ``model.zip``, or a
    checkpoint written after it) or a model/checkpoint zip inside one."""
    target = Path(target)
    if not target.exists():
        raise UserError(f"no such run directory or model file: {target}")
    if target.is_dir():
        found = saved_states(target)
        if not found:
            raise UserError(f"{target} has no {MODEL} and no checkpoint to evaluate")
        damaged = [s.path for s in found if s.timesteps is None]
        # a damaged final model is named when it is loaded, never quietly replaced by a checkpoint
        return target, damaged[0] if damaged else found[0].path
    run_dir = target.parent.parent if target.parent.name == CHECKPOINTS else target.parent
    return run_dir, target


def load_model(
    config: ExperimentConfig, path: Path, env: VecEnv | None = None, device: str = "auto"
) -> PPO | RecurrentPPO:
    """Load a saved model with plain ``PPO.load`` / ``RecurrentPPO.load``.

    Whatever makes a file unloadable (truncation, garbage weights, a policy that does not match the
    run's config) is a UserError naming the file: a saved model is input like any other.
    """
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a saved model (not a zip file); it may be truncated or corrupted")
    model_timesteps(path)  # a zip without SB3's data is not a model at all, whatever the config says
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SB3 warns about what it could not read, then fails anyway
            return algorithm_class(config).load(path, env=env, device=device)
    except Exception as err:  # any failure to load is a bad file, reported as one
        raise UserError(f"cannot load {path} as its run's {CONFIG} describes it: {_reason(err)}") from None


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
