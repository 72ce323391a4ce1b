"""The per-game part of a sweep report, for families whose runs play several games (Atari, MinAtar).

A multi-game comparison asks, per game, whether one policy for all games plays each as well as a
policy trained on that game alone, at equal frames per game. The sweep's *specialists* answer the
"alone" part: a setting whose runs play exactly one game is that game's specialist, and each
game's return is normalised by the specialists' mean final return on it (1.0: as good as the
specialist). This is the yardstick for a family without human reference scores (MinAtar), and
a second one beside the human-normalized score where there are (Atari).

- ``per-game.md`` / ``per-game.csv``: per setting and game, the final evaluation's mean return
  and its specialist-normalized score, mean [95% CI] across seeds;
- ``curves-per-game.png``: one panel per game, the rolling training return of every setting that
  plays it against the frames *of that game* (a run's frames over its number of games), so a
  3-game run's 3M frames and a specialist's 1M sit on the same axis.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from film_rl.files import write_atomically

#: where a progress row holds a game's rolling return
RETURN_PREFIX = "rollout/ep_return/"


def game_curves(rows: list[dict[str, str]], steps_key: str) -> dict[str, np.ndarray]:
    """Each game's (frames of that game, rolling return) rows, from a run's training log; a run of
    ``K`` games has played about ``1/K`` of its frames in each (games are drawn evenly)."""
    games = sorted({k.removeprefix(RETURN_PREFIX) for row in rows for k in row if k.startswith(RETURN_PREFIX)})
    curves: dict[str, np.ndarray] = {}
    for game in games:
        points = [
            (float(r[steps_key]) / len(games), float(r[RETURN_PREFIX + game]))
            for r in rows
            if r.get(RETURN_PREFIX + game) not in (None, "") and r.get(steps_key) not in (None, "")
        ]
        curves[game] = np.array(points, dtype=float).reshape(-1, 2)
    return curves


def specialist_returns(figures: list[Any]) -> dict[str, float]:
    """Each game's reference: the mean final return of the runs that play that game alone."""
    alone: dict[str, list[float]] = defaultdict(list)
    for f in figures:
        if len(f.per_game) == 1:
            (game, value), *_ = f.per_game.items()
            alone[game].append(value)
    return {game: float(np.mean(values)) for game, values in alone.items()}


def normalized(per_game: dict[str, float], references: dict[str, float]) -> dict[str, float]:
    """Each game's return over its specialists' (games without a usable reference are left out)."""
    return {g: v / references[g] for g, v in per_game.items() if g in references and references[g] != 0}


def normalized_curve(curves: dict[str, np.ndarray], references: dict[str, float]) -> np.ndarray:
    """The mean over a run's games of its rolling return over the specialists', against frames per
    game (each game's curve interpolated onto the first game's frames)."""
    games = [g for g in curves if g in references and references[g] != 0 and len(curves[g]) > 0]
    if not games or len(games) < len(curves):
        return np.zeros((0, 2))
    grid = curves[games[0]][:, 0]
    ys = np.stack([np.interp(grid, curves[g][:, 0], curves[g][:, 1]) / references[g] for g in games])
    return np.stack([grid, ys.mean(axis=0)], axis=1)


@dataclass
class GameCell:
    """One setting's figures on one game across its seeds."""

    returns: tuple[float, float]
    normalized: tuple[float, float]
    seeds: int


def table(
    figures: list[Any], order: list[str], references: dict[str, float], mean_ci: Any
) -> tuple[list[str], dict[str, dict[str, GameCell]]]:
    """``games`` (in first-seen order) and ``cells[setting][game]``."""
    games = list(dict.fromkeys(g for f in figures for g in f.per_game))
    cells: dict[str, dict[str, GameCell]] = {}
    for setting in order:
        group = [f for f in figures if f.trial.setting == setting]
        row: dict[str, GameCell] = {}
        for game in games:
            played = [f for f in group if game in f.per_game]
            if not played:
                continue
            ratio = [normalized(f.per_game, references).get(game, math.nan) for f in played]
            row[game] = GameCell(mean_ci([f.per_game[game] for f in played]), mean_ci(ratio), len(played))
        if row:
            cells[setting] = row
    return games, cells


def _cell(mean: float, half: float, digits: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:,.{digits}f}" if math.isnan(half) else f"{mean:,.{digits}f} ± {half:,.{digits}f}"


def markdown(games: list[str], cells: dict[str, dict[str, GameCell]], references: dict[str, float]) -> str:
    lines = [
        "## Per game",
        "",
        "Final evaluation's mean return per game, mean ± 95% CI (Student t) across seeds; in brackets "
        "the specialist-normalized score: the return over the mean return of the sweep's runs that "
        "play that game alone (its specialists), at the same frames per game.",
        "",
        "| setting | " + " | ".join(games) + " | mean normalized |",
        "|---|" + "---|" * (len(games) + 1),
    ]
    for setting, row in cells.items():
        shown = []
        for game in games:
            c = row.get(game)
            if c is None:
                shown.append("")
                continue
            ratio = "" if game not in references else f" [{_cell(*c.normalized, 2)}]"
            shown.append(_cell(*c.returns, 1) + ratio)
        means = [c.normalized[0] for c in row.values() if not math.isnan(c.normalized[0])]
        overall = f"{np.mean(means):.2f}" if means and len(means) == len(row) else "-"
        lines.append(f"| {setting} | " + " | ".join(shown) + f" | {overall} |")
    if references:
        lines += ["", "Specialists' mean return: " + ", ".join(f"{g} {v:,.2f}" for g, v in references.items())]
    return "\n".join(lines) + "\n"


def csv_rows(games: list[str], cells: dict[str, dict[str, GameCell]]) -> list[list[Any]]:
    rows: list[list[Any]] = [
        ["setting", "game", "seeds", "return_mean", "return_ci95", "normalized_mean", "normalized_ci95"]
    ]
    for setting, row in cells.items():
        for game in games:
            c = row.get(game)
            if c is not None:
                rows.append([setting, game, c.seeds, *c.returns, *c.normalized])
    return rows


def plot(figures: list[Any], order: list[str], path: Path, title: str) -> None:
    """One panel per game: every setting that plays it, mean and 95% band across seeds; ``title``
    heads the figure."""
    from matplotlib.figure import Figure
    from scipy import stats

    games = list(dict.fromkeys(g for f in figures for g in f.game_curves))
    fig = Figure(figsize=(4.2 * max(len(games), 1), 3.8), dpi=110)
    axes = np.atleast_1d(fig.subplots(1, max(len(games), 1), squeeze=False)[0])
    # one colour per setting in every panel (matplotlib's cycle restarts in each panel)
    cycle = [f"C{i % 10}" for i in range(len(order))]
    colours = dict(zip(order, cycle, strict=True))
    for ax, game in zip(axes, games, strict=False):
        for setting in order:
            curves = [
                f.game_curves[game]
                for f in figures
                if f.trial.setting == setting and len(f.game_curves.get(game, ())) > 0
            ]
            if not curves:
                continue
            start, end = max(c[0, 0] for c in curves), min(c[-1, 0] for c in curves)
            grid = np.linspace(start, end, 200) if end > start else np.array([start])
            ys = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
            mean = ys.mean(axis=0)
            (line,) = ax.plot(grid, mean, label=f"{setting} (n={len(curves)})", color=colours.get(setting))
            if len(curves) > 1:
                half = stats.t.ppf(0.975, len(curves) - 1) * ys.std(axis=0, ddof=1) / math.sqrt(len(curves))
                ax.fill_between(grid, mean - half, mean + half, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(game)
        ax.set_xlabel("frames of this game")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("rolling training return")
    handles = {h.get_label(): h for ax in axes for h in ax.get_lines()}
    if handles:  # one legend for all panels, beside them, never over the curves
        fig.legend(list(handles.values()), list(handles), fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    fig.suptitle(title)
    fig.tight_layout()
    write_atomically(path, lambda target: fig.savefig(target, bbox_inches="tight"))
