"""Where a run's numbers go: wandb (online, offline or off), TensorBoard and a CSV beside them.

SB3 writes every scalar through its ``Logger``; :class:`WandbWriter` is one more output format
of that logger, so wandb receives exactly what TensorBoard receives, at the same timestep, with
no TensorBoard syncing or patching.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger, TensorBoardOutputFormat

from film_rl.config import ExperimentConfig

WANDB_ID_FILE = "wandb_id.txt"


def resolve_wandb_mode(requested: str) -> str:
    """``auto`` becomes ``online`` only when an API key is configured, so a run never blocks on login."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE") in ("online", "offline", "disabled"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path.home() / ".netrc"
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def run_tags(config: ExperimentConfig) -> list[str]:
    """Tags that let a wandb dashboard slice runs by env, agent, conditioning and seed."""
    tags = [
        f"env:{config.env_recipe or '+'.join(config.env.levels)}",
        f"agent:{config.agent_recipe or config.agent.policy}",
        f"conditioning:{config.agent.conditioning}",
        f"seed:{config.seed}",
        *config.logging.tags,
    ]
    return [t[:64] for t in tags]  # wandb rejects longer tags


def start_wandb(config: ExperimentConfig, run_dir: Path) -> Any | None:
    """Start (or, for a resumed run, continue) this run's wandb run; ``None`` when disabled."""
    mode = resolve_wandb_mode(config.logging.wandb)
    if mode == "disabled":
        return None
    import wandb

    id_file = run_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
    id_file.write_text(run_id)
    return wandb.init(
        project=config.logging.project,
        entity=config.logging.entity,
        group=config.logging.group or config.name,
        name=f"{config.name}/{run_dir.name}",
        tags=run_tags(config),
        config=config.to_dict(),
        dir=str(run_dir),
        mode=mode,  # type: ignore[arg-type]
        id=run_id,
        resume="allow",
        settings=wandb.Settings(console="off", silent=True),
    )


class WandbWriter(KVWriter):
    """An SB3 logger output that forwards every numeric scalar to a wandb run.

    :param run: the wandb run.
    """

    def __init__(self, run: Any) -> None:
        self.run = run

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        scalars = {
            key: float(value)
            for key, value in key_values.items()
            if isinstance(value, int | float | np.number)
            and not isinstance(value, bool)
            and "wandb" not in (key_excluded.get(key) or ())
        }
        if scalars:
            self.run.log(scalars, step=int(step))

    def close(self) -> None:
        return None


def make_logger(run_dir: Path, tensorboard: bool, wandb_run: Any | None) -> Logger:
    """SB3 logger writing a CSV (never overwriting an earlier one), TensorBoard and wandb."""
    csv = run_dir / "progress.csv"
    n = 1
    while csv.exists():  # a resumed run keeps the first leg's curve
        csv = run_dir / f"progress.{n}.csv"
        n += 1
    outputs: list[KVWriter] = [CSVOutputFormat(str(csv))]
    if tensorboard:
        outputs.append(TensorBoardOutputFormat(str(run_dir / "tensorboard")))
    if wandb_run is not None:
        outputs.append(WandbWriter(wandb_run))
    return Logger(folder=str(run_dir), output_formats=outputs)
