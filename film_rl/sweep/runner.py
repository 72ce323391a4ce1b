"""Sweeps: every combination of a grid of settings, times seeds, each trial an ordinary training run.

::

    runs/sweeps/<name>/
        sweep.yaml                 what the sweep is: experiment, grid, seeds, overrides, base config
        trials/<trial-id>/         the trial's runs_dir, holding an ordinary <experiment>/<run-id>/
        trials/<trial-id>/trial.log  the trial's output
        summary.json               every trial's state, run directory and figures after the last pass

The disk is the only record of progress: a trial is finished when one of its run directories holds
``eval.json``, and interrupted when one holds checkpoints but no model. ``film-rl sweep --resume``
therefore skips finished trials and resumes interrupted ones from their latest checkpoint, whichever
backend ran them before. Two backends, both thin:

- ``local`` (the default, nothing to start): a pool of ``film-rl train`` subprocesses, at most one
  per core, with ``threads`` set so that the trials together use each core once.
- ``ray``: Ray Tune. Each trial asks for ``{cpu: env.n_envs, gpu: gpus_per_trial}`` so that a
  cluster's GPU workers take trials; ``--ray-address auto`` joins a running cluster.

An experiment file may declare its own sweep, which the command line's ``--grid`` / ``--seeds``
extend or replace::

    sweep:
      grid:
        agent.conditioning: [film, concat, bias, scale, gate, none]
      settings:         # or named settings, each crossed with the grid (a comparison that is no product)
        - {name: film, agent.conditioning: film}
        - {name: specialist-breakout, env.levels: [MinAtar/Breakout-v0], agent.conditioning: none}
      seeds: 3          # or a list: [0, 1, 2]
      retries: 1        # a failed trial is run again (resumed) this many times
      gpus_per_trial: 0 # Ray only: 0.25 packs four trials on one GPU
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from film_rl.config import (
    ExperimentConfig,
    compose,
    flatten,
    load_experiment,
    read_as_saved,
    read_yaml,
    saved_missing_keys,
)
from film_rl.errors import UserError, did_you_mean
from film_rl.files import write_json, write_yaml
from film_rl.run import run_dir as runs
from film_rl.run.callbacks import handling_signals

SPEC, SUMMARY, TRIALS, LOG = "sweep.yaml", "summary.json", "trials", "trial.log"
SWEEP_KEYS = ("grid", "settings", "seeds", "retries", "gpus_per_trial")
#: exit statuses of `film-rl train` that mean "stopped by a signal, checkpoint saved": not a failure
INTERRUPTED = {128 + signal.SIGINT, 128 + signal.SIGTERM}


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: a value for every swept key, and a seed."""

    values: tuple[tuple[str, Any], ...]
    seed: int
    #: the name of the declared setting (``sweep.settings``) the first ``named`` values come from
    label: str = ""
    named: int = 0

    def _parts(self) -> list[str]:
        shown = [f"{key}={_show(value)}" for key, value in self.values[self.named :]]
        return [self.label, *shown] if self.label else shown

    @property
    def setting(self) -> str:
        """The swept values without the seed (a named setting by its name): what a report averages over seeds."""
        return ",".join(self._parts()) or "base"

    @property
    def id(self) -> str:
        """A directory name: readable, and unique within the sweep."""
        return re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join([*self._parts(), f"seed={self.seed}"]))

    def overrides(self) -> list[str]:
        return [f"{key}={json.dumps(value)}" for key, value in self.values] + [f"seed={self.seed}"]


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value).replace(" ", "")


@dataclass
class SweepSpec:
    """What a sweep runs; saved as ``sweep.yaml`` so that ``--resume`` runs the very same trials."""

    name: str
    #: the experiment file, absolute, so that trials find its recipes from any working directory
    experiment: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    #: named settings (``{name: ..., dotted.key: value, ...}``), each crossed with the grid; none: the grid alone
    settings: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    #: ``key=value`` overrides applied to every trial
    overrides: list[str] = field(default_factory=list)
    retries: int = 1
    gpus_per_trial: float = 0.0
    #: the experiment resolved (recipes inlined) when the sweep started; a resume refuses to mix
    #: trials of an experiment that has changed since
    base: dict[str, Any] = field(default_factory=dict)

    def trials(self) -> list[Trial]:
        """Seed by seed, every setting within a seed: a sweep cut short (or a session that ends) has
        compared every setting on its first seeds rather than one setting on all of them."""
        keys = list(self.grid)
        combos = list(itertools.product(*(self.grid[k] for k in keys)))
        settings = []
        for named in self.settings or [{}]:
            fixed = tuple((k, v) for k, v in named.items() if k != "name")
            label = str(named.get("name", ""))
            settings += [
                (fixed + tuple(zip(keys, combo, strict=True)), label, len(fixed) if label else 0) for combo in combos
            ]
        return [Trial(values, seed, label, named) for seed in self.seeds for values, label, named in settings]

    def with_seeds(self, count: int) -> SweepSpec:
        """The same sweep with ``count`` seeds: more seeds for a sweep already run (its finished trials stay)."""
        if count < len(self.seeds):
            raise UserError(f"--seeds {count}: this sweep already has {len(self.seeds)} seeds; seeds are only added")
        start = max(self.seeds) + 1
        return replace(self, seeds=[*self.seeds, *range(start, start + count - len(self.seeds))])

    def config(self, trial: Trial, extra: Sequence[str] = ()) -> ExperimentConfig:
        return load_experiment(self.experiment, [*self.overrides, *trial.overrides(), *extra])


def parse_grid(texts: Sequence[str]) -> dict[str, list[Any]]:
    """``key=v1,v2`` -> ``{key: [v1, v2]}``. Each value is YAML, so a bracketed one is a list:
    ``agent.channels=[16,32],[32,64]`` sweeps two widths."""
    grid: dict[str, list[Any]] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        try:
            values = yaml.safe_load(f"[{raw}]") if sep and key.strip() and raw.strip() else None
        except yaml.YAMLError:
            values = None
        if not isinstance(values, list) or not values:
            raise UserError(f"--grid {text}: expected key=value1,value2,...")
        grid[key.strip()] = values
    return grid


def declared_sweep(experiment: Path) -> dict[str, Any]:
    """The experiment file's own ``sweep:`` section, checked."""
    raw = read_yaml(experiment) if experiment.is_file() else None
    section = (raw or {}).get("sweep") or {} if isinstance(raw, dict) else {}
    if not isinstance(section, dict):
        raise UserError(f"{experiment}: sweep: expected a mapping with {', '.join(SWEEP_KEYS)}")
    for key in section:
        if key not in SWEEP_KEYS:
            raise UserError(f"{experiment}: unknown sweep key '{key}'{did_you_mean(str(key), SWEEP_KEYS)}")
    grid = section.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise UserError(f"{experiment}: sweep.grid: expected a mapping of dotted keys to non-empty lists")
    if not _valid_settings(section.get("settings") or []):
        raise UserError(
            f"{experiment}: sweep.settings: expected a list of mappings of dotted keys to values, "
            "each with a distinct name, e.g. [{name: film, agent.conditioning: film}]"
        )
    return section


def _valid_settings(settings: Any) -> bool:
    """A list of mappings, each with a string ``name`` (distinct) and string keys."""
    if not isinstance(settings, list):
        return False
    names = [s.get("name") for s in settings if isinstance(s, dict)]
    return (
        len(names) == len(settings)
        and all(isinstance(n, str) and n for n in names)
        and len(set(names)) == len(names)
        and all(all(isinstance(k, str) for k in s) for s in settings)
    )


def _seeds(value: Any, base: int) -> list[int]:
    if isinstance(value, list) and value and all(isinstance(s, int) for s in value):
        return list(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return [base + i for i in range(value)]
    raise UserError(f"seeds: expected a positive count or a list of integers, got {value!r}")


def make_spec(
    experiment: str,
    overrides: Sequence[str],
    grid: Sequence[str] = (),
    seeds: int | None = None,
    retries: int | None = None,
    gpus_per_trial: float | None = None,
    name: str | None = None,
) -> SweepSpec:
    """The sweep an experiment file declares, with the command line's grid and seeds on top."""
    path = Path(experiment).resolve()
    base = load_experiment(path, list(overrides))
    declared = declared_sweep(path)
    full_grid = {**declared.get("grid", {}), **parse_grid(grid)}
    if "seed" in full_grid:
        raise UserError("sweep seeds with --seeds K (or sweep.seeds), not as a grid key")
    try:
        retries = int(retries if retries is not None else declared.get("retries", 1))
        gpus_per_trial = float(gpus_per_trial if gpus_per_trial is not None else declared.get("gpus_per_trial", 0.0))
    except (TypeError, ValueError):
        raise UserError(f"{path}: sweep.retries must be an integer and sweep.gpus_per_trial a number") from None
    spec = SweepSpec(
        name=name or f"{base.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        experiment=str(path),
        grid=full_grid,
        settings=list(declared.get("settings") or []),
        seeds=_seeds(seeds if seeds is not None else declared.get("seeds", 1), base.seed),
        overrides=list(overrides),
        retries=retries,
        gpus_per_trial=gpus_per_trial,
        base=base.to_dict(),
    )
    if spec.retries < 0 or spec.gpus_per_trial < 0:
        raise UserError("retries and gpus_per_trial must not be negative")
    check_trials(spec)
    return spec


def check_trials(spec: SweepSpec) -> None:
    """Compose and range-check every trial's config before anything runs: a typo in a grid value
    fails now, not an hour into the sweep."""
    from film_rl.run.train import validate

    ids = [t.id for t in spec.trials()]
    if len(set(ids)) != len(ids):
        raise UserError("two grid settings give the same trial name; make the swept values distinct")
    for trial in spec.trials():
        try:
            validate(spec.config(trial))
        except UserError as err:
            raise UserError(f"trial {trial.id}: {err}") from None


def sweep_dir(spec: SweepSpec) -> Path:
    return Path(str(spec.base.get("runs_dir", "runs"))) / "sweeps" / spec.name


def save_spec(spec: SweepSpec, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {folder}: {err.strerror or err}") from None
    write_yaml(folder / SPEC, asdict(spec))


#: what each field of a saved sweep.yaml must be (a hand-edited or damaged file is refused whole)
_SPEC_TYPES: dict[str, Callable[[Any], bool]] = {
    "name": lambda v: isinstance(v, str) and bool(v),
    "experiment": lambda v: isinstance(v, str) and bool(v),
    "grid": lambda v: isinstance(v, dict) and all(isinstance(x, list) and x for x in v.values()),
    "settings": _valid_settings,
    "seeds": lambda v: isinstance(v, list) and bool(v) and all(type(x) is int and x >= 0 for x in v),
    "overrides": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "retries": lambda v: type(v) is int and v >= 0,
    "gpus_per_trial": lambda v: type(v) in (int, float) and v >= 0,
    "base": lambda v: isinstance(v, dict) and bool(v),
}


def load_spec(folder: Path, check_experiment: bool = True) -> SweepSpec:
    """A sweep directory's spec; ``check_experiment``: refuse it when its experiment has changed
    (what running more trials needs; reading finished ones back does not)."""
    path = folder / SPEC
    if not path.is_file():
        raise UserError(f"{folder} is not a sweep directory (no {SPEC})")
    data = read_yaml(path)
    if isinstance(data, dict):
        data.setdefault("settings", [])  # a sweep saved before named settings existed
    for key, valid in _SPEC_TYPES.items():
        if key not in data:
            raise UserError(f"{path} is not a complete sweep file: '{key}' is missing")
        if not valid(data[key]):
            raise UserError(f"{path} is not a valid sweep file: '{key}' has the wrong type or value")
    unknown = sorted(set(data) - set(_SPEC_TYPES))
    if unknown:
        raise UserError(f"{path} is not a sweep file: unknown key '{unknown[0]}'")
    if isinstance(data["base"], dict):  # the experiment its first trials ran, whenever it was saved
        data["base"] = read_as_saved(data["base"])
    missing = saved_missing_keys(data["base"], "base")
    if missing:
        raise UserError(f"{path} is incomplete ({', '.join(missing[:3])} missing); it may have been truncated")
    spec = SweepSpec(**data)
    if not check_experiment:
        return spec
    # the saved config read through today's dataclasses: a config key added since, at its
    # default, is not a change of the experiment; nor are the recipes' names (wandb tags), which a
    # run's values do not depend on
    labels = ("env_recipe", "agent_recipe")
    now = flatten(load_experiment(spec.experiment, list(spec.overrides)).to_dict())
    then = flatten(compose(dict(spec.base), []).to_dict())
    changed = sorted(k for k in set(now) | set(then) if k not in labels and now.get(k) != then.get(k))
    if changed:
        # a default film-rl changed reads the same as an edited recipe: the values say which
        shown = ", ".join(f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in changed[:3])
        raise UserError(
            f"{spec.experiment} (or its recipes, or film-rl's defaults) changed since the sweep started "
            f"({shown}{', ...' if len(changed) > 3 else ''}); "
            "start a new sweep instead of mixing trials of two experiments"
        )
    return spec


# --------------------------------------------------------------------------- a trial's state on disk


@dataclass
class TrialState:
    trial: Trial
    #: ``pending``, ``partial`` (a checkpoint to resume), ``running``, ``done``, ``failed``, ``interrupted``
    state: str
    run_dir: Path | None = None
    attempts: int = 0
    returncode: int | None = None


def trial_runs(trial_dir: Path) -> list[Path]:
    """The trial's run directories, oldest first (several when earlier attempts failed early).

    A directory that holds saved models but no ``config.yaml`` is damaged, and an error: taken
    for "no run yet", its training would silently start again from scratch beside it.
    """
    found = []
    for path in trial_dir.glob("*/*"):
        if (path / runs.CONFIG).is_file():
            found.append(path)
        elif path.is_dir() and ((path / runs.MODEL).exists() or runs.checkpoints(path)):
            raise UserError(f"{path / runs.CONFIG} is missing; this run's saved models cannot be used without it")
    return sorted(found, key=lambda p: p.name)


def disk_state(folder: Path, trial: Trial) -> TrialState:
    found = trial_runs(folder / TRIALS / trial.id)
    finished = [r for r in found if (r / runs.EVAL).is_file()]
    if finished:
        return TrialState(trial, "done", finished[-1])
    # a checkpoint, or a model.zip whose evaluation was interrupted: `train --resume` goes on from
    # it (and only evaluates a finished model), never from scratch
    resumable = [r for r in found if runs.checkpoints(r) or (r / runs.MODEL).exists()]
    if resumable:
        return TrialState(trial, "partial", resumable[-1])
    return TrialState(trial, "pending", found[-1] if found else None)


def latest_progress(run_dir: Path | None) -> dict[str, str]:
    """The newest row SB3 wrote to the run's ``progress*.csv`` (a resumed run writes a new one)."""
    if run_dir is None:
        return {}
    files = runs.progress_files(run_dir)
    if not files:
        return {}
    # the live table asks every second, and a long run's log grows to ~1 MB: read only the header
    # (SB3 rewrites the file whenever a key is added, so the first line is always current) and the tail
    with files[-1].open("rb") as handle:
        first = handle.readline()
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(len(first), size - 8192))
        tail = handle.read().decode(errors="replace").splitlines()
    newest = [line for line in reversed(tail) if line.strip()][:3]
    if not newest:
        return {}
    try:  # a live display: a damaged log shows as no progress (report names it)
        (keys,) = csv.reader([first.decode(errors="replace")])
        rows = [dict(zip(keys, values, strict=False)) for values in csv.reader(newest)]
    except (csv.Error, ValueError):
        return {}
    merged = rows[0]  # a finished run's last row holds its final evaluation: training figures are a row up
    for older in rows[1:]:
        merged.update({k: v for k, v in older.items() if merged.get(k) in (None, "")})
    return merged


# --------------------------------------------------------------------------- running trials


@dataclass
class Sweep:
    """A sweep directory being run: its spec, and every trial's state as the backends report it."""

    spec: SweepSpec
    folder: Path
    states: dict[str, TrialState] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        for trial in self.spec.trials():
            self.states[trial.id] = disk_state(self.folder, trial)

    def trial_dir(self, trial: Trial) -> Path:
        return self.folder / TRIALS / trial.id

    def set(self, trial: Trial, state: str, **changes: Any) -> None:
        with self.lock:
            current = self.states[trial.id]
            current.state = state
            for key, value in changes.items():
                setattr(current, key, value)

    def run_dir(self, trial_id: str) -> Path | None:
        """Where a trial's run is: as its backend reported it, or, for a run the backend has not
        named yet (a fresh trial names its directory when it starts), as found on disk."""
        state = self.states[trial_id]
        if state.run_dir is None and state.state == "running":
            return disk_state(self.folder, state.trial).run_dir
        return state.run_dir

    def refresh_running(self) -> None:
        """Backends that do not tell (Ray) are followed on disk: a trial runs once its run writes
        progress during this pass, and is done once it has ``eval.json``."""
        for trial_state in self.states.values():
            if trial_state.state in ("pending", "partial", "running"):
                seen = disk_state(self.folder, trial_state.trial)
                logs = (seen.run_dir or self.folder).glob("progress*.csv")
                newest = max((p.stat().st_mtime for p in logs), default=0.0)
                if seen.state == "done":
                    self.set(trial_state.trial, "done", run_dir=seen.run_dir)
                elif newest >= self.started:
                    self.set(trial_state.trial, "running", run_dir=seen.run_dir)

    def check_finished(self) -> None:
        """Read every finished trial's evaluation now: a damaged one is named before any work."""
        for s in self.states.values():
            if s.state == "done" and s.run_dir is not None:
                runs.read_eval(s.run_dir / runs.EVAL)

    def todo(self) -> list[Trial]:
        return [s.trial for s in self.states.values() if s.state != "done"]

    def trial_overrides(self, trial: Trial) -> list[str]:
        """What makes a trial's run part of the sweep: its folder, wandb group and tags."""
        tags = [f"sweep:{self.spec.name}", *(f"{k}={_show(v)}" for k, v in trial.values)]
        return [
            f"runs_dir={self.trial_dir(trial).resolve()}",
            f"logging.group={self.spec.name}",
            f"logging.tags={json.dumps(tags)}",
            "logging.progress_bar=false",
        ]

    def write_summary(self) -> dict[str, Any]:
        rows = []
        for s in self.states.values():
            row: dict[str, Any] = {"trial": s.trial.id, "setting": s.trial.setting, "seed": s.trial.seed}
            row.update(state=s.state, attempts=s.attempts, run_dir=str(s.run_dir) if s.run_dir else None)
            if s.state == "done" and s.run_dir is not None:
                row["eval"] = runs.read_eval(s.run_dir / runs.EVAL)
            rows.append(row)
        summary = {"sweep": self.spec.name, "trials": rows}
        write_json(self.folder / SUMMARY, summary, indent=1)
        return summary


def threads_override(spec: SweepSpec, threads: int) -> list[str]:
    """A trial's torch threads (its share of the cores), unless the user set ``threads`` already."""
    if any(o.startswith("threads=") for o in spec.overrides):
        return []
    return [f"threads={max(1, threads)}"]


def for_resume(overrides: Sequence[str]) -> list[str]:
    """The overrides a resumed run takes (``film_rl.run.train.RESUMABLE_SECTIONS``); its folder is its own."""
    from film_rl.run.train import RESUMABLE_SECTIONS

    return [o for o in overrides if o.startswith(RESUMABLE_SECTIONS)]


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_local(sweep: Sweep, max_concurrent: int | None) -> None:
    """Each trial a ``film-rl train`` subprocess, at most ``max_concurrent`` (default: one per core) at once.

    Subprocesses rather than a multiprocessing pool: a trial is then exactly the run a user would
    start by hand, its output goes to its own log, and a crash (or a SubprocVecEnv's workers)
    cannot take the sweep down. Ctrl-C / SIGTERM reach each running trial once, as SIGINT, so that
    each saves a checkpoint; ``--resume`` goes on from there.
    """
    todo = sweep.todo()
    if not todo:
        return
    cores = available_cores()
    concurrent = max(1, min(len(todo), max_concurrent or cores))
    threads = threads_override(sweep.spec, cores // concurrent)
    children: set[subprocess.Popen[bytes]] = set()

    def run(trial: Trial) -> None:
        for attempt in range(1, sweep.spec.retries + 2):
            if sweep.stop.is_set():
                return
            seen = disk_state(sweep.folder, trial)
            extra = [*sweep.trial_overrides(trial), *threads]
            if seen.state == "partial" and seen.run_dir is not None:
                args = ["train", "--resume", str(seen.run_dir), *for_resume(extra)]
            else:
                args = ["train", sweep.spec.experiment, *sweep.spec.overrides, *trial.overrides(), *extra]
            sweep.set(trial, "running", attempts=attempt, run_dir=seen.run_dir)
            log = sweep.trial_dir(trial) / LOG
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as out:
                out.write(f"$ film-rl {' '.join(args)}\n".encode())
                out.flush()
                child = subprocess.Popen(
                    [sys.executable, "-m", "film_rl", *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # the sweep, not the terminal, decides who gets Ctrl-C
                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                )
                with sweep.lock:
                    children.add(child)
                code = child.wait()
                with sweep.lock:
                    children.discard(child)
            after = disk_state(sweep.folder, trial)
            if code == 0 and after.state == "done":
                sweep.set(trial, "done", run_dir=after.run_dir, returncode=0)
                return
            if code in INTERRUPTED or sweep.stop.is_set():
                sweep.set(trial, "interrupted", run_dir=after.run_dir, returncode=code)
                return
            sweep.set(trial, "failed", run_dir=after.run_dir, returncode=code)

    def forward(signum: int, frame: Any) -> None:
        sweep.stop.set()
        with sweep.lock:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGINT)

    with handling_signals(forward), ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="trial") as pool:
        list(pool.map(run, todo))


def run_in_process(sweep: Sweep, trial: Trial, extra: Sequence[str]) -> dict[str, float]:
    """One trial in this process (a Ray worker): a fresh run, or the resumed interrupted one."""
    from film_rl.run.train import resume, train

    seen = disk_state(sweep.folder, trial)
    log = sweep.trial_dir(trial) / LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            if seen.state == "partial" and seen.run_dir is not None:
                result = resume(seen.run_dir, for_resume(extra))
            else:
                result = train(sweep.spec.config(trial, extra))
        except BaseException:
            traceback.print_exc()  # into the trial's log, where the local backend's tracebacks go too
            raise
    return {**result.eval.scalars(), "fps": result.fps, "timesteps": float(result.timesteps)}


# --------------------------------------------------------------------------- progress


def _figure(text: str | None, digits: int = 3) -> str:
    try:
        return f"{float(text):.{digits}f}" if text not in (None, "") else "-"  # type: ignore[arg-type]
    except ValueError:
        return "-"


def progress_rows(sweep: Sweep, budgets: dict[str, int]) -> list[tuple[str, ...]]:
    """One row per trial: its state, steps of its budget, rolling success (or score), steps/s."""
    rows: list[tuple[str, ...]] = []
    for trial_id, s in sweep.states.items():
        last = latest_progress(sweep.run_dir(trial_id))
        steps = int(float(last.get("time/total_timesteps") or 0))
        score = last.get("rollout/success_rate") or last.get("rollout/human_normalized_mean")
        if s.state == "done" and s.run_dir is not None:
            final = runs.read_eval(s.run_dir / runs.EVAL)
            score = str(final.get("success_rate", (final.get("human_normalized") or {}).get("mean", "")))
            steps = steps or budgets[trial_id]
        state = s.state if s.attempts <= 1 else f"{s.state} (try {s.attempts})"
        fps = _figure(last.get("time/fps"), 0)
        rows.append((trial_id, state, f"{steps:,}/{budgets[trial_id]:,}", _figure(score), fps))
    return rows


def progress_table(sweep: Sweep, budgets: dict[str, int]) -> Any:
    from rich.table import Table

    done = sum(s.state == "done" for s in sweep.states.values())
    table = Table(title=f"sweep {sweep.spec.name}: {done}/{len(sweep.states)} trials done", title_justify="left")
    for column in ("trial", "state", "steps", "success / score", "steps/s"):
        table.add_column(column, justify="left" if column in ("trial", "state") else "right", overflow="fold")
    for row in progress_rows(sweep, budgets):
        table.add_row(*row)
    return table


class SweepProgress:
    """The whole sweep's progress as plain lines (a log, CI), one every ``1/lines`` of the steps of
    every trial together: steps, trials done, the sweep's steps/s and time left. Lines are due by
    steps, not time: a machine's speed changes when they appear, never what they say."""

    def __init__(self, sweep: Sweep, budgets: dict[str, int], lines: int = 20) -> None:
        self.sweep, self.budgets = sweep, budgets
        self.total = max(1, sum(budgets.values()))
        self.every = max(1, self.total // lines)
        self.started, self.start_steps = time.perf_counter(), self.steps()
        self.next = (self.start_steps // self.every + 1) * self.every
        self.shown: tuple[int, int] | None = None  # (steps, trials done) of the last line

    def steps(self) -> int:
        """Steps done across the trials: a finished trial counts its budget, a running one its log."""
        done = 0
        for trial_id, s in self.sweep.states.items():
            if s.state == "done":
                done += self.budgets[trial_id]
            else:
                last = latest_progress(self.sweep.run_dir(trial_id))
                done += min(int(float(last.get("time/total_timesteps") or 0)), self.budgets[trial_id])
        return done

    def due(self, final: bool = False) -> str | None:
        """The next line once the steps have passed its mark; ``final``: the sweep has ended, and
        a last line is due if anything changed since the one before (trials still evaluating then)."""
        steps = self.steps()
        trials = sum(s.state == "done" for s in self.sweep.states.values())
        if (steps < self.next and not final) or (final and (steps, trials) == self.shown):
            return None
        self.next = (steps // self.every + 1) * self.every
        self.shown = (steps, trials)
        elapsed = time.perf_counter() - self.started
        rate = (steps - self.start_steps) / elapsed if elapsed > 0 else 0.0
        left = (self.total - steps) / rate if rate > 0 else 0.0
        hours, rest = divmod(round(left), 3600)
        return (
            f"sweep {self.sweep.spec.name}: {steps:,}/{self.total:,} steps ({100 * steps // self.total}%)  "
            f"{trials}/{len(self.sweep.states)} trials done  {rate:,.0f} steps/s  "
            f"{hours}:{rest // 60:02d}:{rest % 60:02d} left"
        )


@contextlib.contextmanager
def watching(sweep: Sweep, budgets: dict[str, int], follow_disk: bool, console: Any) -> Iterator[None]:
    """Show the trials while they run: a live table on a terminal, one line per change in a log."""
    from rich.live import Live

    seen = {trial_id: s.state for trial_id, s in sweep.states.items()}
    finished = threading.Event()
    line = SweepProgress(sweep, budgets)

    def changes(final: bool = False) -> None:
        if follow_disk:
            sweep.refresh_running()
        if console.is_terminal:
            return
        for trial_id, s in sweep.states.items():
            if s.state != seen[trial_id]:
                seen[trial_id] = s.state
                where = f" ({s.run_dir})" if s.run_dir is not None and s.state != "running" else ""
                console.print(f"{trial_id}: {s.state}{where}", highlight=False, soft_wrap=True)
        due = line.due(final)
        if due is not None:
            console.print(due, highlight=False, soft_wrap=True)

    def loop() -> None:
        while not finished.wait(1.0):
            changes()

    watcher = threading.Thread(target=loop, daemon=True)
    live = Live(get_renderable=lambda: progress_table(sweep, budgets), console=console, refresh_per_second=1)
    with live if console.is_terminal else contextlib.nullcontext():
        watcher.start()
        try:
            yield
        finally:
            finished.set()
            watcher.join()
            changes(final=True)
