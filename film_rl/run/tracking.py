"""Where a run's numbers go: wandb (online, offline or off), TensorBoard and a CSV beside them.

SB3 writes every scalar through its ``Logger``; :class:`WandbWriter` is one more output format
of that logger, so wandb receives exactly what TensorBoard receives, at the same timestep, with
no TensorBoard syncing or patching.
"""

from __future__ import annotations

import netrc
import os
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger, TensorBoardOutputFormat

from film_rl.config import ExperimentConfig
from film_rl.errors import UserError
from film_rl.files import write_text

WANDB_ID_FILE = "wandb_id.txt"


def resolve_wandb_mode(requested: str) -> str:
    """``auto`` becomes ``online`` only when an API key is configured, so a run never blocks on login."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE") in ("online", "offline", "disabled"):
        return os.environ["WANDB_MODE"]
    return "online" if has_api_key() else "offline"


def has_api_key() -> bool:
    """Whether wandb has a key to log in with: ``WANDB_API_KEY``, or ``wandb login``'s netrc entry
    for the server (``WANDB_BASE_URL``, default api.wandb.ai)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_wandb(config: ExperimentConfig) -> None:
    """``online`` asked for explicitly needs a key: refuse before any work rather than fail later."""
    if config.logging.wandb == "online" and not has_api_key():
        raise UserError(
            "logging.wandb=online but no wandb API key is configured (run `wandb login` or set WANDB_API_KEY); "
            "use logging.wandb=offline to log now and `wandb sync` later"
        )


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


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
    """Start (or, for a resumed run, continue) this run's wandb run; ``None`` when disabled.

    wandb never stops training: when the online run cannot start (no server, a rejected key), the
    run logs to wandb offline instead, ``wandb sync``-able later, and says so in one line.
    """
    mode = resolve_wandb_mode(config.logging.wandb)
    if mode == "disabled":
        return None
    import wandb

    id_file = run_dir / WANDB_ID_FILE
    run_id = id_file.read_text(errors="replace").strip() if id_file.is_file() else ""
    if not run_id.isalnum():  # missing or damaged: a new id (the dashboard shows a new run)
        run_id = secrets.token_hex(4)
        write_text(id_file, run_id)

    def init(mode: str) -> Any:
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

    try:
        return init(mode)
    except Exception as err:  # whatever wandb raises, training goes on
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        if mode == "offline":
            warn(f"wandb could not start ({reason}); this run logs to TensorBoard and CSV only")
            return None
        warn(f"wandb could not start online ({reason}); logging offline: `wandb sync {run_dir / 'wandb'}` later")
        wandb.teardown()  # the failed online run still holds the id in wandb's service
    try:
        return init("offline")
    except Exception as err:
        warn(f"wandb could not start offline either ({type(err).__name__}); logging to TensorBoard and CSV only")
        return None


def finish_wandb(run: Any) -> None:
    """Close the wandb run; a failure to sync the end is a warning, never a lost training run."""
    try:
        run.finish()
    except Exception as err:
        warn(f"wandb could not finish its run ({type(err).__name__}); its files stay in the run directory")


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
        if scalars and self.run is not None:
            try:
                self.run.log(scalars, step=int(step))
            except Exception as err:  # wandb failing must not stop training
                warn(f"wandb stopped accepting scalars ({type(err).__name__}); TensorBoard and CSV go on")
                self.run = None

    def close(self) -> None:
        return None


def record_final_evaluation(logger: Logger, scalars: dict[str, float], timesteps: int) -> None:
    """The final evaluation's figures as ``final_eval/*`` at the run's last step, in every output
    the run logs to (TensorBoard, progress.csv, wandb), beside the periodic ``eval/*``."""
    for key, value in scalars.items():
        logger.record(f"final_eval/{key}", value)
    logger.record("time/total_timesteps", timesteps)
    logger.dump(timesteps)


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
