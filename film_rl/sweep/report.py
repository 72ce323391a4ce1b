"""``film-rl report``: a sweep's finished runs as a table (mean ± 95% CI across seeds) and learning curves.

Every figure is read back from the run directories, so a report can be made while a sweep still
runs (it covers the finished trials) and remade after more seeds are added; ``film-rl report
RUN_DIR`` makes the same files for one run, also while it trains:

- final success rate: the run's own evaluation (``eval.json``); for tasks scored per game, the mean human-normalized
  score of that evaluation;
- episodes to 0.9 / 0.99: the rolling-success metric (the last ``window`` episodes), from the run's
  episode bookkeeping (``stats.json``); the mean is over the seeds that got there, and the table
  says how many did;
- BabyAI's metric to 0.9 / 0.99 (BabyAI runs): the episode count at the centre of the first
  centred window of rows reaching it (:mod:`film_rl.tasks.babyai_metric`), the figure BabyAI's
  papers report, with the newest window's success beside it (how far a run short of 0.99 is);
- fps: training steps per second of the run's last leg (SB3's ``time/fps``);
- learning curves: the rolling training success (or score) against frames, each seed's curve
  interpolated onto one grid, mean line and 95% band per setting.

The 95% interval is Student's t: mean ± t(0.975, n-1)·s/√n over the n seeds of a setting.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from film_rl.errors import UserError
from film_rl.files import write_atomically, write_csv, write_text
from film_rl.run import run_dir as runs
from film_rl.sweep import games
from film_rl.sweep.runner import SPEC, SweepSpec, Trial, disk_state, load_spec

TABLE_MD, TABLE_CSV, RUNS_CSV, CURVES = "report.md", "report.csv", "runs.csv", "curves.png"
GAME_CSV, GAME_CURVES = "per-game.csv", "curves-per-game.png"
THRESHOLDS = (0.9, 0.99)
#: what a report of one level (``--level``) shows, above its table
LEVEL_NOTE = (
    "Level `{level}` alone: its success in the evaluation, its rolling success over its own last "
    "episodes, and the count of its own episodes at which that first reached each threshold; "
    "frames count every level's."
)


@dataclass
class RunFigures:
    """One finished trial's figures."""

    trial: Trial
    run_dir: Path
    #: final success rate (BabyAI) or mean human-normalized score (Atari)
    final: float
    #: an Atari run, scored by human-normalized score rather than success
    #: the run reports scores (returns, human-normalized), not a success rate
    scored: bool
    episodes_to: dict[float, int]
    fps: float
    frames: int
    #: (frames, rolling success or score) rows of the training log
    curve: np.ndarray = field(repr=False)
    #: multi-game runs: each game's final mean return (the run's evaluation)
    per_game: dict[str, float] = field(default_factory=dict)
    #: multi-game runs: each game's (frames of that game, rolling return) rows
    game_curves: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: BabyAI's centred-window metric: threshold -> episodes; ``None`` where the run does not keep
    #: it (off BabyAI, or resumed from a checkpoint older than the metric)
    babyai_episodes_to: dict[float, int] | None = None
    #: the mean success of its newest full window (nan before there is one, or off BabyAI)
    babyai_window: float = math.nan
    #: runs with held-out instructions: the final success rate of each split (train, heldout)
    splits: dict[str, float] = field(default_factory=dict)
    #: and each split's mean episode length: on small rooms a policy blind to the mission
    #: succeeds by visiting every object, so success alone cannot show the mission being followed
    split_lengths: dict[str, float] = field(default_factory=dict)


def progress_rows(run_dir: Path) -> list[dict[str, str]]:
    """Every row SB3 logged, across the legs of a resumed run, as one history.

    A leg resumed from a checkpoint starts again at that checkpoint's timesteps: the rows an
    earlier leg logged from there on (after the checkpoint, before a ``kill -9``) belong to a
    branch that was lost, so they are dropped and timesteps only ever go forward. A row cut short
    by a kill at the end of a leg is dropped too; a file that is not a CSV log is an error.
    """
    rows: list[dict[str, str]] = []
    for path in runs.progress_files(run_dir):
        leg = read_progress(path)
        if leg:
            start = _steps(leg[0])
            rows = [r for r in rows if _steps(r) < start]
        for row in leg:  # the final evaluation's row shares the last rollout's step: one row per step
            if rows and _steps(rows[-1]) == _steps(row):
                rows[-1] = {**rows[-1], **{k: v for k, v in row.items() if v not in ("", None)}}
            else:
                rows.append(row)
    return rows


def read_progress(path: Path) -> list[dict[str, str]]:
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a training log (binary bytes); it may be corrupted") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    reader = csv.DictReader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as err:
        raise UserError(f"{path} is not a training log ({err})") from None
    if rows and STEPS not in (reader.fieldnames or []):
        raise UserError(f"{path} is not a training log (no {STEPS} column)")
    complete = [r for r in rows if None not in r.values() and None not in r and _steps(r) >= 0]
    if len(complete) < len(rows) - 1:  # only the last row may be cut short
        raise UserError(f"{path} is not a training log ({len(rows) - len(complete)} malformed rows)")
    return complete


STEPS, SUCCESS = "time/total_timesteps", "rollout/success_rate"
#: BabyAI's centred window, as the training log records it (film_rl.tasks.babyai.InstructionStats)
WINDOW = "rollout/success_rate_babyai_window"


def _steps(row: dict[str, str]) -> float:
    try:
        return float(row.get(STEPS) or -1)
    except ValueError:
        return -1.0


def read_run(trial: Trial, run_dir: Path, finished: bool = True, level: str | None = None) -> RunFigures:
    """A trial's figures; ``finished=False`` also reads a run still training (or stopped before its
    evaluation): its curves, with the final figure left unknown. ``level``: of a run on several
    levels, that level's alone (:func:`level_figures`)."""
    evaluated = finished or ((run_dir / runs.EVAL).is_file() and not evaluation_is_stale(run_dir))
    evaluation = runs.read_eval(run_dir / runs.EVAL) if evaluated else {}
    rows = progress_rows(run_dir)
    success = "success_rate" in evaluation if evaluated else any(r.get(SUCCESS) not in (None, "") for r in rows)
    if success:
        final, curve_key = float(evaluation.get("success_rate", math.nan)), SUCCESS
    else:
        final, curve_key = (
            float(evaluation.get("human_normalized", {}).get("mean", math.nan)),
            ("rollout/human_normalized_mean"),
        )
    stats_path = runs.beside(run_dir / runs.MODEL, runs.STATS)
    if not finished and not (evaluated and stats_path.is_file()):  # a run in progress: its last checkpoint's
        saved = runs.checkpoints(run_dir)
        stats_path = runs.beside(saved[-1][1], runs.STATS) if saved else stats_path
    stats = runs.read_stats(stats_path) if stats_path.is_file() else {}
    try:
        episodes_to = {float(t): int(n) for t, n in stats.get("episodes_to", {}).items()}
    except (TypeError, ValueError):
        raise UserError(f"{stats_path} is not a valid statistics file (episodes_to)") from None
    centred = stats.get("centred")
    try:
        babyai_episodes_to = (
            None
            if not centred or centred.get("unknown")
            else {float(t): int(n) for t, n in centred.get("reached", {}).items()}
        )
    except (AttributeError, TypeError, ValueError):
        raise UserError(f"{stats_path} is not a valid statistics file (centred)") from None
    window = _number(next((r[WINDOW] for r in reversed(rows) if r.get(WINDOW)), None))
    points = []
    for r in rows:
        if r.get(curve_key) not in (None, "") and r.get(STEPS) not in (None, ""):
            try:
                points.append((float(r[STEPS]), float(r[curve_key])))
            except ValueError:
                raise UserError(f"{run_dir}: a training log holds a non-numeric {curve_key}") from None
    last = rows[-1] if rows else {}
    per_game = evaluation.get("per_game") or {}
    try:
        returns = {str(g): float(v["mean_return"]) for g, v in per_game.items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise UserError(f"{run_dir / runs.EVAL} is not a valid evaluation file (per_game)") from None
    try:
        splits = {str(name): float(v["success_rate"]) for name, v in (evaluation.get("splits") or {}).items()}
        lengths = {str(name): float(v["mean_episode_length"]) for name, v in (evaluation.get("splits") or {}).items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise UserError(f"{run_dir / runs.EVAL} is not a valid evaluation file (splits)") from None
    figures = RunFigures(
        splits=splits,
        split_lengths=lengths,
        trial=trial,
        run_dir=run_dir,
        final=final,
        scored=not success,
        episodes_to=episodes_to,
        babyai_episodes_to=babyai_episodes_to,
        babyai_window=window,
        fps=_number(next((r["time/fps"] for r in reversed(rows) if r.get("time/fps")), None)),
        frames=int(max(_steps(last), 0)),
        curve=np.array(points, dtype=float).reshape(-1, 2),
        per_game=returns,
        game_curves=games.game_curves(rows, STEPS),
    )
    return figures if level is None else level_figures(figures, level, evaluation, rows, stats)


def played_levels(run_dir: Path) -> list[str]:
    """The levels a run trains on (none off the language family, whose runs play games)."""
    return list(getattr(runs.read_config(run_dir).env, "levels", []))


def level_figures(
    figures: RunFigures, level: str, evaluation: dict[str, Any], rows: list[dict[str, str]], stats: dict[str, Any]
) -> RunFigures:
    """One level's figures of a run on several (a curriculum's second level beside its first):
    the level's success in the evaluation, its rolling success over its own last episodes
    (``rollout/success_rate/<level>``) and the count of its own episodes at which that first
    reached each threshold. BabyAI's centred window counts every episode of the run, so it is left
    out; the frames stay the run's, every level's together. A run on that level alone is its own."""
    played = played_levels(figures.run_dir)
    if level not in played:
        raise UserError(f"--level {level}: {figures.run_dir} plays {', '.join(played) or 'no BabyAI level'}")
    if played == [level]:
        return figures
    final = math.nan
    if evaluation:
        try:
            final = float(evaluation["per_kind"][level])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{figures.run_dir / runs.EVAL} holds no success rate of {level}") from None
    key = f"{SUCCESS}/{level}"
    points = [(_steps(r), _number(r[key])) for r in rows if r.get(key) not in (None, "")]
    try:
        reached = {float(t): int(n) for t, n in (stats.get("level_episodes_to") or {}).get(level, {}).items()}
    except (AttributeError, TypeError, ValueError):
        raise UserError(f"{figures.run_dir}: a statistics file is not valid (level_episodes_to)") from None
    figures.final, figures.episodes_to = final, reached
    figures.babyai_episodes_to, figures.babyai_window = None, math.nan
    figures.curve = np.array(points, dtype=float).reshape(-1, 2)
    return figures


def evaluation_is_stale(run_dir: Path) -> bool:
    """Whether a run has trained on past its ``eval.json`` (resumed with a larger budget): a
    checkpoint written after the evaluation holds a newer policy than the one it scored."""
    saved = runs.checkpoints(run_dir)
    return bool(saved) and saved[-1][1].stat().st_mtime > (run_dir / runs.EVAL).stat().st_mtime


def _number(text: str | None) -> float:
    try:
        return float(text or math.nan)
    except ValueError:
        return math.nan


def collect(folder: Path, spec: SweepSpec, level: str | None = None) -> tuple[list[RunFigures], list[Trial]]:
    """The finished trials' figures (``level``: that level's of each), and the trials not finished (yet)."""
    done, missing = [], []
    for trial in spec.trials():
        state = disk_state(folder, trial)
        if state.state == "done" and state.run_dir is not None:
            done.append(read_run(trial, state.run_dir, level=level))
        else:
            missing.append(trial)
    return done, missing


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (nan for a single value).

    >>> mean_ci([1.0, 2.0, 3.0])  # doctest: +ELLIPSIS
    (2.0, 2.48...)
    """
    from scipy import stats

    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if data.size == 0:
        return math.nan, math.nan
    if data.size == 1:
        return float(data[0]), math.nan
    half = float(stats.t.ppf(0.975, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))
    return float(data.mean()), half


@dataclass
class SettingRow:
    setting: str
    values: dict[str, Any]
    seeds: int
    final: tuple[float, float]
    episodes_to: dict[float, tuple[float, float, int]]
    fps: tuple[float, float]
    frames: float
    #: BabyAI's metric per threshold, as ``episodes_to``; empty when no run of the setting kept it
    babyai_episodes_to: dict[float, tuple[float, float, int]] = field(default_factory=dict)
    #: the latest centred window, mean over the seeds that have one
    babyai_window: tuple[float, float] = (math.nan, math.nan)


def aggregate(figures: list[RunFigures], spec: SweepSpec) -> list[SettingRow]:
    """One row per setting, in the grid's order, over the seeds that finished."""
    by_setting: dict[str, list[RunFigures]] = defaultdict(list)
    for f in figures:
        by_setting[f.trial.setting].append(f)
    order = list(dict.fromkeys(t.setting for t in spec.trials()))
    rows = []
    for setting in order:
        group = by_setting.get(setting)
        if not group:
            continue
        episodes_to = _reached(f.episodes_to for f in group)
        kept = any(f.babyai_episodes_to is not None for f in group)
        babyai = _reached(f.babyai_episodes_to or {} for f in group) if kept else {}
        rows.append(
            SettingRow(
                setting=setting,
                values=dict(group[0].trial.values),
                seeds=len(group),
                final=mean_ci([f.final for f in group]),
                episodes_to=episodes_to,
                fps=mean_ci([f.fps for f in group]),
                frames=float(np.mean([f.frames for f in group])),
                babyai_episodes_to=babyai,
                babyai_window=mean_ci([f.babyai_window for f in group]),
            )
        )
    return rows


def _reached(counts: Any) -> dict[float, tuple[float, float, int]]:
    """Per threshold: mean and 95% half-width of the episode counts of the seeds that reached it, and how many did."""
    counts = list(counts)
    out = {}
    for t in THRESHOLDS:
        reached = [float(c[t]) for c in counts if t in c]
        out[t] = (*mean_ci(reached), len(reached))
    return out


#: seeds below which a 95% interval says little (Student's t with 1 degree of freedom is 12.7 s/√n)
FEW_SEEDS = 3


def interval(mean: float, half: float, low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    """The 95% interval ``mean ± half``, cut to what the quantity can be (a rate to [0, 1])."""
    return max(low, mean - half), min(high, mean + half)


def _ci(mean: float, half: float, digits: int, low: float = -math.inf, high: float = math.inf) -> str:
    """``mean [low, high]``; the mean alone where there is no interval (one seed)."""
    if math.isnan(mean):
        return "-"
    text = f"{mean:,.{digits}f}"
    if math.isnan(half):
        return text
    lo, hi = interval(mean, half, low, high)
    return f"{text} [{lo:,.{digits}f}, {hi:,.{digits}f}]"


def markdown(
    rows: list[SettingRow],
    spec: SweepSpec,
    missing: list[Trial],
    metric: str,
    bounded: bool,
    title: str | None = None,
    note: str | None = None,
) -> str:
    """The table: each figure as mean [95% interval] over the n seeds of its setting, intervals cut
    to what the quantity can be (a success rate to [0, 1], counts and speeds to 0 and above).
    ``note``: a paragraph under the heading (what a report of one level shows)."""
    one_run = title is not None  # `film-rl report RUN_DIR`: no seeds to average
    lines = [f"# {title}", "", f"One run of `{spec.experiment}`: the final figure is its evaluation."]
    if not one_run:
        lines = [
            f"# Sweep {spec.name}",
            "",
            f"Experiment `{spec.experiment}`; mean [95% CI, Student t] across the seeds of each setting "
            f"(n: how many of the seeds {', '.join(map(str, spec.seeds))} finished).",
        ]
    if note is not None:
        lines[2:2] = [note, ""]
    # episodes to a success threshold, for runs with a success verdict only
    thresholds = THRESHOLDS if bounded else ()
    centred = thresholds and any(r.babyai_episodes_to for r in rows)
    if thresholds and not one_run:
        lines += ["Episodes to a threshold average the seeds that reached it (reached/n beside it)."]
    if thresholds:
        lines += ["Episodes to: the rolling success of the last episodes first at the threshold."]
    if centred:
        lines += [
            "BabyAI's metric: the episode count at the centre of the first centred window of rows reaching "
            "the threshold, the figure BabyAI's papers report; window: the newest full window's success."
        ]
    babyai_columns = [*(f"BabyAI's metric to {t:g}" for t in thresholds), "window"] if centred else []
    columns = ["setting", "n", metric, *(f"episodes to {t:g}" for t in thresholds), *babyai_columns, "frames", "fps"]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    rate = (0.0, 1.0) if bounded else (-math.inf, math.inf)
    few = False
    for r in rows:
        eps = [f"{_ci(m, h, 0, 0.0)} ({n}/{r.seeds})" for m, h, n in (r.episodes_to[t] for t in thresholds)]
        few = few or (r.seeds < FEW_SEEDS and not one_run)
        n = f"{r.seeds}" + ("†" if r.seeds < FEW_SEEDS and not one_run else "")
        if centred and r.babyai_episodes_to:
            counts = (r.babyai_episodes_to[t] for t in thresholds)
            eps += [f"{_ci(m, h, 0, 0.0)} ({k}/{r.seeds})" for m, h, k in counts]
            eps.append(_ci(*r.babyai_window, 3, 0.0, 1.0))
        elif centred:
            eps += ["-"] * len(babyai_columns)
        cells = [r.setting, n, _ci(*r.final, 3, *rate), *eps, f"{r.frames:,.0f}", _ci(*r.fps, 0, 0.0)]
        lines.append("| " + " | ".join(cells) + " |")
    if few:
        lines += [
            "",
            f"† fewer than {FEW_SEEDS} seeds: the interval is too wide to say anything (with 2 seeds "
            "Student's t multiplies their spread by 12.7); add seeds with `film-rl sweep --resume SWEEP_DIR "
            "--seeds K`, or read the mean alone.",
        ]
    if missing:
        lines += ["", f"Not finished ({len(missing)}): " + ", ".join(t.id for t in missing)]
    return "\n".join(lines) + "\n"


def csv_rows(rows: list[SettingRow], bounded: bool = True) -> tuple[list[str], list[list[Any]]]:
    """The table's numbers: means, 95% half-widths, and the final figure's interval cut to what it
    can be (``final_low`` / ``final_high``; a success rate stays in [0, 1])."""
    keys = list(dict.fromkeys(k for r in rows for k in r.values))  # named settings may set different keys
    header = ["setting", *keys, "seeds", "final_mean", "final_ci95", "final_low", "final_high"]
    centred = any(r.babyai_episodes_to for r in rows)  # BabyAI's metric: columns of its own
    for prefix in ("", "babyai_") if centred else ("",):
        for t in THRESHOLDS:
            tag = f"{prefix}episodes_to_{round(t * 100)}"
            header += [f"{tag}_mean", f"{tag}_ci95", f"{tag}_reached"]
    if centred:
        header += ["babyai_window_mean", "babyai_window_ci95"]
    header += ["fps_mean", "fps_ci95", "frames"]
    data = []
    for r in rows:
        bounds = (0.0, 1.0) if bounded else (-math.inf, math.inf)
        low, high = interval(*r.final, *bounds) if not math.isnan(r.final[1]) else (math.nan, math.nan)
        line: list[Any] = [r.setting, *(r.values.get(k, "") for k in keys), r.seeds, *r.final, low, high]
        for t in THRESHOLDS:
            line += list(r.episodes_to[t])
        if centred:
            for t in THRESHOLDS:
                line += list(r.babyai_episodes_to.get(t, (math.nan, math.nan, 0)))
            line += list(r.babyai_window)
        data.append([*line, *r.fps, r.frames])
    return header, data


def plot_curves(
    figures: list[RunFigures],
    spec: SweepSpec,
    path: Path,
    ylabel: str,
    bounded: bool,
    xlabel: str = "frames",
    caption: str | None = None,
) -> None:
    """Mean curve and 95% band per setting, seeds interpolated onto one frame grid."""
    from matplotlib.figure import Figure  # outside pyplot's global state: Agg renders it to PNG
    from scipy import stats

    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.subplots()
    order = list(dict.fromkeys(t.setting for t in spec.trials()))
    for setting in order:
        curves = [f.curve for f in figures if f.trial.setting == setting and len(f.curve) > 0]
        if not curves:
            continue
        end = min(c[-1, 0] for c in curves)
        start = max(c[0, 0] for c in curves)
        grid = np.linspace(start, end, 200) if end > start else np.array([start])
        ys = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
        mean = ys.mean(axis=0)
        (line,) = ax.plot(grid, mean, label=f"{setting} (n={len(curves)})")
        if len(curves) > 1:
            half = stats.t.ppf(0.975, len(curves) - 1) * ys.std(axis=0, ddof=1) / math.sqrt(len(curves))
            low, high = mean - half, mean + half
            if bounded:  # a success rate's interval is cut to what a rate can be
                low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(caption or f"{spec.name}: mean and 95% CI across seeds")
    ax.grid(alpha=0.3)
    if ax.lines:  # a sweep whose progress files hold no curve yet still gets its (empty) axes
        # beside the axes, never over the curves: (n) after each setting is its seeds
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    write_atomically(path, lambda target: fig.savefig(target, bbox_inches="tight"))


#: the instruction splits a run with held-out instructions is evaluated on
SPLITS = ("train", "heldout")


def split_table(figures: list[RunFigures], order: list[str]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Per setting: each split's success and held-out ÷ train, as (mean, 95% half-width, seeds);
    empty when no run held instructions out."""
    table = {}
    for setting in order:
        group = [f for f in figures if f.trial.setting == setting and all(s in f.splits for s in SPLITS)]
        if not group:
            continue
        cells = {name: (*mean_ci([f.splits[name] for f in group]), len(group)) for name in SPLITS}
        ratios = [f.splits["heldout"] / f.splits["train"] for f in group if f.splits["train"] > 0]
        cells["ratio"] = (*mean_ci(ratios), len(ratios))
        for name in SPLITS:
            lengths = [f.split_lengths[name] for f in group if name in f.split_lengths]
            if lengths:
                cells[f"{name}_length"] = (*mean_ci(lengths), len(lengths))
        table[setting] = cells
    return table


def split_markdown(table: dict[str, dict[str, tuple[float, float, int]]]) -> str:
    """Zero-shot generalisation: success on the training missions, on the held-out ones, and their
    ratio (per seed, then averaged), each mean [95% CI]."""
    lines = [
        "## Held-out instructions",
        "",
        "Final evaluation on the missions training saw and on those it never saw; held-out ÷ train is "
        "taken per seed, then averaged. Steps: the mean episode length of each split; a policy that "
        "follows the mission walks to its object, one blind to it visits objects until it hits it, so "
        "compare with a `none` setting before reading success as instruction following.",
        "",
        "| setting | n | train success | held-out success | held-out ÷ train | train steps | held-out steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, cells in table.items():
        n = cells["train"][2]
        shown = f"{n}" + ("†" if n < FEW_SEEDS else "")
        train, held = (_ci(m, h, 3, 0.0, 1.0) for m, h, _ in (cells["train"], cells["heldout"]))
        ratio = _ci(cells["ratio"][0], cells["ratio"][1], 2, 0.0)
        steps = [
            _ci(cells[key][0], cells[key][1], 1, 0.0) if key in cells else "-"
            for key in ("train_length", "heldout_length")
        ]
        lines.append(f"| {setting} | {shown} | {train} | {held} | {ratio} | {steps[0]} | {steps[1]} |")
    return "\n".join(lines) + "\n"


def _split_cells(cells: dict[str, tuple[float, float, int]] | None) -> list[float]:
    if cells is None:
        return [math.nan] * 2 * (len(SPLITS) + 1)
    return [x for name in (*SPLITS, "ratio") for x in cells[name][:2]]


@dataclass
class Report:
    rows: list[SettingRow]
    missing: list[Trial]
    files: dict[str, Path]
    markdown: str


def report(folder: Path, out: Path | None = None, wandb_mode: str | None = None, level: str | None = None) -> Report:
    """Aggregate a sweep directory into ``report.md``, ``report.csv``, ``runs.csv`` and ``curves.png``;
    a run directory (one ``film-rl train``, finished or still training) into the same files for
    that run alone, with its curve per game where it plays several.

    :param out: where the files go (default: ``SWEEP_DIR/report`` or ``RUN_DIR/report``, and
        ``report/LEVEL`` with ``level``).
    :param wandb_mode: also log the table and the curves to a wandb run in the sweep's group
        (``None``: the experiment's own ``logging.wandb``).
    :param level: of runs on several levels, that level's figures alone (:func:`level_figures`):
        what a curriculum's second level learnt, which the success over every level hides.
    """
    if not (folder / SPEC).is_file() and (folder / runs.CONFIG).is_file():
        return run_report(folder, out, level)
    spec = load_spec(folder, check_experiment=False)  # reading finished runs back needs no check
    figures, missing = collect(folder, spec, level)
    if not figures:
        raise UserError(f"{folder}: no finished trial to report yet ({len(missing)} not finished)")
    default = folder / "report" if level is None else folder / "report" / level
    return write_report(figures, missing, spec, out or default, wandb_mode, level=level)


def run_report(run_dir: Path, out: Path | None = None, level: str | None = None) -> Report:
    """One run's table and curves: the run's curve per game shows what a multi-game policy learns
    of each game, which the mean score hides (one game rising while another stays at random)."""
    config = runs.read_config(run_dir)
    spec = SweepSpec(name=run_dir.name, experiment=str(run_dir / runs.CONFIG), seeds=[config.seed])
    figures = [read_run(Trial((), config.seed), run_dir, finished=False, level=level)]
    if not figures[0].frames:  # every logged row is past step 0
        raise UserError(f"{run_dir}: no training log to report yet")
    default = run_dir / "report" if level is None else run_dir / "report" / level
    title = f"Run {run_dir}" if level is None else f"Run {run_dir}: {level}"
    result = write_report(figures, [], spec, out or default, "disabled", title=title, level=level)
    if (run_dir / runs.EVAL).is_file() and not evaluation_is_stale(run_dir):
        return result
    note = (
        f"\nNo final figure: the run has not been evaluated since it last trained "
        f"(`film-rl evaluate {run_dir}` scores its latest checkpoint).\n"
    )
    write_text(result.files["markdown"], result.markdown + note)
    return Report(result.rows, result.missing, result.files, result.markdown + note)


def write_report(
    figures: list[RunFigures],
    missing: list[Trial],
    spec: SweepSpec,
    out: Path,
    wandb_mode: str | None,
    title: str | None = None,
    level: str | None = None,
) -> Report:
    caption = f"{spec.name}: one run" if title else None
    if level is not None:
        caption = f"{spec.name}, {level}: " + ("one run" if title else "mean and 95% CI across seeds")
    scored = any(f.scored for f in figures)
    metric, xlabel = ("human-normalized score" if scored else "success rate"), "frames"
    references = games.specialist_returns(figures)
    if scored and any(math.isnan(f.final) for f in figures) and references:
        # no human references (MinAtar): the sweep's specialists are the yardstick
        metric, xlabel = "specialist-normalized return", "frames per game"
        for f in figures:
            ratios = games.normalized(f.per_game, references)
            f.final = float(np.mean(list(ratios.values()))) if ratios and len(ratios) == len(f.per_game) else math.nan
            f.curve = games.normalized_curve(f.game_curves, references)
    rows = aggregate(figures, spec)
    out.mkdir(parents=True, exist_ok=True)
    note = None if level is None else LEVEL_NOTE.format(level=level)
    text = markdown(rows, spec, missing, metric, bounded=not scored, title=title, note=note)
    files = {"markdown": out / TABLE_MD, "csv": out / TABLE_CSV, "runs": out / RUNS_CSV, "curves": out / CURVES}
    order = list(dict.fromkeys(t.setting for t in spec.trials()))
    if any(f.per_game for f in figures):
        names, cells = games.table(figures, order, references, mean_ci)
        text += "\n" + games.markdown(names, cells, references)
        files["per_game"] = out / GAME_CSV
        write_csv(files["per_game"], games.csv_rows(names, cells))
    if any(len(f.game_curves) > 1 or f.per_game for f in figures):
        files["game_curves"] = out / GAME_CURVES
        games.plot(figures, order, files["game_curves"], caption or f"{spec.name}: mean and 95% CI across seeds")
    split_rows = split_table(figures, [r.setting for r in rows])
    if split_rows:
        text += "\n" + split_markdown(split_rows)
    write_text(files["markdown"], text)
    header, data = csv_rows(rows, bounded=not scored)
    if split_rows:  # per split: mean and 95% half-width, and held-out / train
        extra = [f"{name}_{stat}" for name in (*SPLITS, "ratio") for stat in ("mean", "ci95")]
        header += extra
        data = [[*line, *_split_cells(split_rows.get(str(line[0])))] for line in data]
    write_csv(files["csv"], [header, *data])
    runs_table: list[list[Any]] = [
        ["trial", "setting", "seed", "final", "episodes_to_90", "episodes_to_99"]
        + ["babyai_episodes_to_90", "babyai_episodes_to_99", "babyai_window"]
        + ["fps", "frames", "run"]
        + (list(SPLITS) if split_rows else [])
    ]
    for f in figures:
        eps: list[Any] = [f.episodes_to.get(t, "") for t in THRESHOLDS]
        eps += [(f.babyai_episodes_to or {}).get(t, "") for t in THRESHOLDS]
        eps.append("" if math.isnan(f.babyai_window) else f.babyai_window)
        line = [f.trial.id, f.trial.setting, f.trial.seed, f.final, *eps, f.fps, f.frames, f.run_dir]
        runs_table.append(line + ([f.splits.get(name, "") for name in SPLITS] if split_rows else []))
    write_csv(files["runs"], runs_table)
    ylabel = f"rolling training {metric}"  # a level's report names its level in the caption
    plot_curves(figures, spec, files["curves"], ylabel, bounded=not scored, xlabel=xlabel, caption=caption)
    log_to_wandb(spec, header, data, files, wandb_mode)
    return Report(rows, missing, files, text)


def log_to_wandb(
    spec: SweepSpec, header: list[str], data: list[list[Any]], files: dict[str, Path], mode: str | None
) -> None:
    """The table and the curves as one wandb run of ``job_type=report`` in the sweep's group."""
    from film_rl.run.tracking import finish_wandb, resolve_wandb_mode, warn

    logging_config = spec.base.get("logging", {})
    resolved = resolve_wandb_mode(mode or str(logging_config.get("wandb", "auto")))
    if resolved == "disabled":
        return
    import wandb

    try:
        run = wandb.init(
            project=logging_config.get("project", "film-rl"),
            entity=logging_config.get("entity"),
            group=spec.name,
            job_type="report",
            name=f"{spec.name}/report",
            dir=str(files["markdown"].parent),
            mode=resolved,  # type: ignore[arg-type]
            settings=wandb.Settings(console="off", silent=True),
        )
    except Exception as err:  # the report's files are written; wandb is extra
        warn(f"wandb could not start ({type(err).__name__}); the report is in {files['markdown'].parent}")
        return
    try:
        table = wandb.Table(columns=list[str | int](header), data=wandb_rows(data))
        logged: dict[str, Any] = {"sweep/table": table, "sweep/curves": wandb.Image(str(files["curves"]))}
        run.log(logged)
    finally:
        finish_wandb(run)


def _plain(value: Any) -> Any:
    """wandb tables take scalars and strings; lists (swept widths) become their text."""
    return value if isinstance(value, str | int | float | bool) or value is None else json.dumps(value)


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "text"


def wandb_rows(data: list[list[Any]]) -> list[list[Any]]:
    """The table's rows as a ``wandb.Table`` takes them: one type per column.

    A sweep whose settings set different keys leaves a key's cell empty (``""``) where a setting
    does not set it, beside numbers where others do; wandb fixes a column's type from its first
    row and refuses the rest. An empty cell becomes ``None`` (any column's), and a column that
    still mixes kinds (a number here, a word there) becomes text.
    """
    rows = [[None if v == "" else _plain(v) for v in row] for row in data]
    for column in range(len(rows[0]) if rows else 0):
        kinds = {_kind(row[column]) for row in rows if row[column] is not None}
        if len(kinds) > 1:
            for row in rows:
                row[column] = None if row[column] is None else str(row[column])
    return rows
