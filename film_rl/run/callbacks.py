"""SB3 callbacks of a training run: checkpoints, periodic evaluation, stopping on signals and
divergence. The statistics a task logs are its own (:meth:`film_rl.tasks.base.Task.training_stats`)."""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback

from film_rl.run.run_dir import CHECKPOINTS, checkpoints, save_atomically


class LinearEntropyBonus(BaseCallback):
    """PPO's entropy bonus falling linearly from ``start`` to 0 at ``horizon`` timesteps, then staying
    there (SB3 takes ``ent_coef`` as a number only). It is set before each rollout's update from the
    timesteps so far, so a resumed run goes on along the same line; logged as ``train/ent_coef``."""

    def __init__(self, start: float, horizon: int) -> None:
        super().__init__()
        self.start = start
        self.horizon = horizon

    def _set(self) -> None:
        value = self.start * max(0.0, 1.0 - self.num_timesteps / self.horizon)
        self.model.ent_coef = value  # type: ignore[attr-defined]
        self.logger.record("train/ent_coef", value)

    def _on_training_start(self) -> None:
        self._set()

    def _on_rollout_end(self) -> None:
        self._set()

    def _on_step(self) -> bool:
        return True


class Checkpointer(BaseCallback):
    """Save ``checkpoints/step_<timesteps>.zip`` every ``freq`` timesteps, keeping the newest ``keep``.

    :param run_dir: the run directory.
    :param freq: timesteps between checkpoints (0: never, except on request).
    :param keep: periodic checkpoints kept; older ones are deleted only after a newer one is safe.
    :param save_extra: saves what else the run needs to resume beside a checkpoint (AGILE's
        reward model), given the checkpoint's path; its files are named ``step_<timesteps>.*``.
    """

    def __init__(self, run_dir: Path, freq: int, keep: int, save_extra: Callable[[Path], None] | None = None) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.freq = freq
        self.keep = max(1, keep)
        self.save_extra = save_extra
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = self.num_timesteps + self.freq

    def save(self) -> Path:
        bad = first_non_finite(self.model)
        if bad is not None:  # never replace a good checkpoint with a diverged model
            raise Diverged(bad)
        path = self.run_dir / CHECKPOINTS / f"step_{self.model.num_timesteps}.zip"
        path.parent.mkdir(exist_ok=True)  # a run directory copied without its checkpoints still resumes
        if self.save_extra is not None:
            self.save_extra(path)  # first: a checkpoint is complete once its zip exists
        save_atomically(self.model, path)
        for _, old in checkpoints(self.run_dir)[: -self.keep]:
            for stale in old.parent.glob(f"{old.stem}.*"):
                stale.unlink(missing_ok=True)
        return path

    def _on_step(self) -> bool:
        if self.freq > 0 and self.num_timesteps >= self._next:
            self.save()
            self._next = self.num_timesteps + self.freq
        return True


class Progress(BaseCallback):
    """Training progress, to the budget and never past it: a bar on a terminal; plain lines when
    output goes to a file, a pipe or CI (every ``1/lines`` of the budget: steps, steps/s, the
    task's headline figure, time left).

    Lines are due by steps, not by time, so the same run prints the same lines on any machine.

    :param budget: the run's ``budget.timesteps`` (the bar's end, whatever a rollout overshoots).
    :param headline: the task's figure to show (:meth:`film_rl.tasks.base.TrainingStats.headline`).
    :param tty: draw a bar (default: whether stdout is a terminal).
    """

    def __init__(self, budget: int, headline: Callable[[], str], tty: bool | None = None, lines: int = 20) -> None:
        super().__init__()
        self.budget, self.headline = budget, headline
        self._every = max(1, budget // lines)  #: steps between two lines
        self.tty = sys.stdout.isatty() if tty is None else tty
        self._bar: Any = None
        self._start_steps = 0
        self._started = 0.0
        self._next = 0
        self._shown = -1

    def _on_training_start(self) -> None:
        self._start_steps, self._started = self.num_timesteps, time.perf_counter()
        self._next = (self.num_timesteps // self._every + 1) * self._every
        if self.tty:
            from tqdm.rich import tqdm

            self._bar = tqdm(total=self.budget, initial=min(self.num_timesteps, self.budget), unit="step")

    def _on_step(self) -> bool:
        done = min(self.num_timesteps, self.budget)
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
        elif self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self._every + 1) * self._every
            self._shown = done
            print(self.line(), flush=True)
        return True

    def line(self) -> str:
        done = min(self.num_timesteps, self.budget)
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        fps = (self.num_timesteps - self._start_steps) / elapsed
        left = (self.budget - done) / fps if fps > 0 else math.inf
        parts = [f"{done:,}/{self.budget:,} steps ({done / self.budget:.0%})", f"{fps:,.0f} steps/s"]
        headline = self.headline()
        if headline:
            parts.append(headline)
        if math.isfinite(left):
            parts.append(f"{_clock(left)} left")
        return "  ".join(parts)

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.update(min(self.num_timesteps, self.budget) - self._bar.n)
            self._bar.close()
        elif self._shown < min(self.num_timesteps, self.budget):  # the last line, unless already shown
            print(self.line(), flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PeriodicEval(BaseCallback):
    """Evaluate every ``freq`` timesteps and log ``eval/*``.

    :param evaluate: returns an :class:`film_rl.run.evaluate.EvalResult`; its ``scalars()`` are logged.
    :param freq: timesteps between evaluations.
    """

    def __init__(self, evaluate: Callable[[], Any], freq: int) -> None:
        super().__init__()
        self.evaluate = evaluate
        self.freq = freq
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = self.num_timesteps + self.freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            for key, value in self.evaluate().scalars().items():
                if key != "episodes":
                    self.logger.record(f"eval/{key}", value)
            self._next = self.num_timesteps + self.freq
        return True


@contextlib.contextmanager
def handling_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Ctrl-C and SIGTERM go to ``handler`` while the block runs, then back to what they were.

    Only the main thread may set signal handlers; elsewhere (a sweep's trial thread) the block
    runs with the process's handlers as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class StopOnSignal(BaseCallback):
    """Turn the first Ctrl-C or SIGTERM into a clean stop at the next environment step.

    Stopping between steps (rather than raising wherever Python happens to be) means the model is
    never caught half-way through an optimizer update, so the checkpoint written afterwards is
    sound. A second signal interrupts at once, as usual.
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: int | None = None
        #: timesteps when the current rollout began: what the model has been trained on
        self.rollout_start = 0
        self._previous: dict[int, Any] = {}

    def _on_training_start(self) -> None:
        self.rollout_start = self.num_timesteps

    def _on_rollout_start(self) -> None:
        self.rollout_start = self.num_timesteps

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            return self  # e.g. a Ray Tune trial: only the main thread may handle signals; Ray stops it
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_step(self) -> bool:
        return self.received is None


class Diverged(Exception):
    """The model's parameters are no longer finite (a too large learning rate, typically)."""

    def __init__(self, parameter: str) -> None:
        super().__init__(f"{parameter} is not finite")
        self.parameter = parameter


def first_non_finite(model: Any) -> str | None:
    """The name of the first policy parameter holding a NaN or an infinity, or ``None``."""
    for name, parameter in model.policy.named_parameters():
        if not torch.isfinite(parameter).all():
            return str(name)
    return None


class StopOnNonFinite(BaseCallback):
    """Stop before a diverged update is acted on, checkpointed or saved.

    Checked once per rollout, after each PPO update, so that the run ends with one clear message
    (see :func:`film_rl.run.train._explain`) instead of a distribution error deep in torch.
    """

    def _on_rollout_start(self) -> None:
        bad = first_non_finite(self.model)
        if bad is not None:
            raise Diverged(bad)

    def _on_step(self) -> bool:
        return True
