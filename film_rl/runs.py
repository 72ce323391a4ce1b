"""The run directory: what a training run leaves on disk, and how it is read back.

::

    runs/<experiment>/<run-id>/
        config.yaml          resolved config (recipes inlined)
        vocab.json           the instruction vocabulary the model was trained with
        model.zip            final model (PPO / RecurrentPPO zip)
        stats.json           episode bookkeeping (episodes, BabyAI's episodes-to-0.9/0.99), for resuming
        reward_model.pt      AGILE runs: the reward model; goals.npz: the goal states it made
        checkpoints/         step_<timesteps>.zip (+ .stats.json, .reward_model.pt), the latest few
                             plus any interrupt
        eval.json            final evaluation
        progress.csv         every logged scalar
        tensorboard/  wandb/
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import zipfile
from pathlib import Path
from typing import Any

from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from film_rl.config import ExperimentConfig, load_experiment
from film_rl.errors import UserError
from film_rl.instructions import Vocabulary

CONFIG, VOCAB, MODEL, EVAL, CHECKPOINTS = "config.yaml", "vocab.json", "model.zip", "eval.json", "checkpoints"
#: episode bookkeeping beside each saved model, so a resumed run goes on counting episodes
STATS = "stats.json"
_STEP = re.compile(r"step_(\d+)\.zip$")


def algorithm_class(config: ExperimentConfig) -> type[PPO] | type[RecurrentPPO]:
    return RecurrentPPO if config.agent.policy == "lstm" else PPO


def new_run_dir(config: ExperimentConfig) -> Path:
    """``runs/<experiment>/<date-time>-s<seed>-<conditioning>-<random>``: sortable and collision-free."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-s{config.seed}-{config.agent.conditioning}-{secrets.token_hex(2)}"
    path = Path(config.runs_dir) / config.name / name
    (path / CHECKPOINTS).mkdir(parents=True)
    return path


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(timesteps, path) of every checkpoint, oldest first."""
    found = []
    for path in (run_dir / CHECKPOINTS).glob("step_*.zip"):
        match = _STEP.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def beside(model_path: Path, name: str) -> Path:
    """A file that belongs with a saved model: ``RUN/<name>`` beside ``RUN/model.zip``,
    ``checkpoints/step_N.<name>`` beside ``checkpoints/step_N.zip``."""
    if model_path.name == MODEL:
        return model_path.with_name(name)
    return model_path.with_name(f"{model_path.stem}.{name}")


def write_json_atomically(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def save_atomically(model: BaseAlgorithm, path: Path) -> None:
    """Write to a temporary name and rename, so an interrupted save never replaces a good file."""
    tmp = path.with_name(path.name + ".tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)


def read_config(run_dir: Path) -> ExperimentConfig:
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"{run_dir} is not a run directory: {CONFIG} is missing")
    return load_experiment(run_dir / CONFIG)


def read_vocab(run_dir: Path) -> Vocabulary:
    try:
        return Vocabulary.load(run_dir / VOCAB)
    except FileNotFoundError:
        raise UserError(f"{run_dir} is missing {VOCAB}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{run_dir / VOCAB} is unreadable: {err}") from None


def locate(target: str | Path) -> tuple[Path, Path]:
    """(run directory, model zip) for a run directory or a model/checkpoint zip inside one."""
    target = Path(target)
    if not target.exists():
        raise UserError(f"no such run directory or model file: {target}")
    if target.is_dir():
        model = target / MODEL
        if not model.exists():
            latest = checkpoints(target)
            if not latest:
                raise UserError(f"{target} has no {MODEL} and no checkpoint to evaluate")
            model = latest[-1][1]
        return target, model
    run_dir = target.parent.parent if target.parent.name == CHECKPOINTS else target.parent
    return run_dir, target


def load_model(
    config: ExperimentConfig, path: Path, env: VecEnv | None = None, device: str = "auto"
) -> PPO | RecurrentPPO:
    """Load a saved model with plain ``PPO.load`` / ``RecurrentPPO.load``; a bad file is a UserError."""
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a saved model (not a zip file); it may be truncated or corrupted")
    try:
        return algorithm_class(config).load(path, env=env, device=device)
    except (zipfile.BadZipFile, KeyError, EOFError, RuntimeError, ValueError) as err:
        raise UserError(f"cannot load {path}: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
