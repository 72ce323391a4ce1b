"""What ``film-rl analyze`` writes: the figures (γ–β scatters, projections, interpolation,
arithmetic), ``film_params.csv``, ``summary.md``, and the same figures and a parameter table in
the run's own wandb run.

:mod:`film_rl.analysis.analyze` computes the numbers; this module only presents them. Figures are plain
matplotlib on the Agg backend: no display needed, the same PNG on every machine.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from film_rl.analysis.results import Analogy, Analysis, FilmParameters, Interpolation, Projection, percent
from film_rl.files import write_atomically, write_text
from film_rl.files import write_csv as write_csv_file

if TYPE_CHECKING:
    from film_rl.config import ExperimentConfig

#: BabyAI's colour words drawn in their own colour, so a "colour" legend reads at a glance
COLOUR_WORDS = {
    "red": "tab:red",
    "green": "tab:green",
    "blue": "tab:blue",
    "purple": "tab:purple",
    "yellow": "gold",
    "grey": "grey",
}
#: how each parameter is written on an axis
SYMBOLS = {"gamma": "γ", "beta": "β", "g": "gate g (the map is scaled by σ(g))"}
SHORT = {"gamma": "γ", "beta": "β", "g": "gate g"}
#: the instructions' attributes each drawn as a panel of the attribute scatter, and as a colouring
#: of the projections, in this order (whichever a task's instructions have)
PANELS = ("kind", "colour", "object", "location", "article", "game")
COLOURINGS = ("split", "kind", "level", "object", "colour", "article", "location", "game")
#: the value at which a parameter leaves its feature map unchanged (gate has none: σ(g) < 1)
IDENTITY = {"gamma": 1.0, "beta": 0.0}
DPI = 110


def _figure(*grid: int, figsize: tuple[float, float], squeeze: bool = True) -> tuple[Figure, Any]:
    """A figure of its own, outside pyplot's global state: Agg renders it to PNG whatever backend
    the process has chosen, so nothing is switched for the caller."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, squeeze=squeeze)


def category_colours(attribute: str, categories: Sequence[str]) -> dict[str, Any]:
    """A colour per category: the colour words' own colours for the ``colour`` attribute, tab10/tab20 otherwise."""
    if attribute == "colour" and all(c in COLOUR_WORDS or c == "any" for c in categories):
        return {c: COLOUR_WORDS.get(c, "black") for c in categories}
    cmap = matplotlib.colormaps["tab10" if len(categories) <= 10 else "tab20"]
    return {c: cmap(i % cmap.N) for i, c in enumerate(categories)}


def _save(fig: Any, path: Path) -> Path:
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=DPI, bbox_inches="tight"))
    return path


def _identity_lines(ax: Axes, x: str | None, y: str | None) -> None:
    if x in IDENTITY:
        ax.axvline(IDENTITY[x], color="0.6", lw=0.8, ls="--", zorder=0)
    if y in IDENTITY:
        ax.axhline(IDENTITY[y], color="0.6", lw=0.8, ls="--", zorder=0)


def layer_scatter(values: Mapping[str, np.ndarray], title: str, path: Path, seed: int = 0) -> Path:
    """Every (instruction, feature map) of one layer, coloured by feature map.

    With γ and β (FiLM) this is the seed article's γ–β plot; a mechanism with one parameter gets
    its value against the feature map's index instead, jittered so instructions do not hide each other.

    :param values: parameter name -> ``(instructions, feature maps)`` values, one or two names.
    """
    names = list(values)
    first = values[names[0]]
    n, maps = first.shape
    colour = np.broadcast_to(np.arange(maps), (n, maps)).ravel()
    cmap = matplotlib.colormaps["tab10" if maps <= 10 else "turbo"]
    fig, ax = _figure(figsize=(6.4, 4.8))
    if len(names) == 2:
        x, y = first.ravel(), values[names[1]].ravel()
        ax.set_xlabel(SYMBOLS[names[0]])
        ax.set_ylabel(SYMBOLS[names[1]])
        _identity_lines(ax, names[0], names[1])
    else:
        jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, size=(n, maps))
        x, y = (np.arange(maps)[None, :] + jitter).ravel(), first.ravel()
        ax.set_xlabel("feature map")
        ax.set_ylabel(SYMBOLS[names[0]])
        _identity_lines(ax, None, names[0])
    points = ax.scatter(x, y, c=colour, cmap=cmap, vmin=-0.5, vmax=maps - 0.5, s=9, alpha=0.6, linewidths=0)
    fig.colorbar(points, ax=ax, label="feature map")
    ax.set_title(f"{title}\n{n} instructions x {maps} feature maps", fontsize=10)
    return _save(fig, path)


def attribute_scatter(
    values: Mapping[str, np.ndarray],
    feature_maps: Sequence[int],
    attributes: Mapping[str, Sequence[str]],
    title: str,
    path: Path,
    seed: int = 0,
) -> Path:
    """Chosen feature maps (rows) x instruction attributes (columns), one point per instruction.

    A feature map whose points separate by an attribute's colours is one the instruction's word
    of that kind (colour, object, verb, location) steers.

    :param values: as for :func:`layer_scatter`.
    :param attributes: attribute name -> each instruction's value of it.
    """
    names = list(values)
    rows, cols = len(feature_maps), len(attributes)
    fig, axes = _figure(rows, cols, figsize=(3.3 * cols + 0.6, 2.9 * rows), squeeze=False)
    rng = np.random.default_rng(seed)
    for c, (attribute, labels) in enumerate(attributes.items()):
        categories = sorted(set(labels))
        colours = category_colours(attribute, categories)
        for r, fmap in enumerate(feature_maps):
            ax = axes[r][c]
            for k, category in enumerate(categories):
                mask = np.array([label == category for label in labels])
                if len(names) == 2:
                    x, y = values[names[0]][mask, fmap], values[names[1]][mask, fmap]
                else:
                    y = values[names[0]][mask, fmap]
                    x = k + rng.uniform(-0.25, 0.25, size=len(y))
                ax.scatter(x, y, color=colours[category], s=14, alpha=0.75, linewidths=0, label=category)
            if len(names) == 2:
                _identity_lines(ax, names[0], names[1])
                ax.set_xlabel(SYMBOLS[names[0]], fontsize=8)
                ax.set_ylabel(f"{SYMBOLS[names[1]]}, map {fmap}", fontsize=8)
            else:
                _identity_lines(ax, None, names[0])
                ax.set_xticks(range(len(categories)), categories, rotation=30, fontsize=7)
                ax.set_ylabel(f"{SHORT[names[0]]}, map {fmap}", fontsize=8)
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(f"by {attribute}", fontsize=9)
                if len(names) == 2 and len(categories) <= 12:
                    ax.legend(fontsize=6, markerscale=0.8, loc="best", framealpha=0.6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def projection(
    points: np.ndarray,
    axis_labels: tuple[str, str],
    colourings: Mapping[str, Sequence[str]],
    title: str,
    path: Path,
    names: Sequence[str] | None = None,
    held_out: Sequence[bool] | None = None,
) -> Path:
    """One point per instruction in a 2-D projection, one panel per way of colouring them.

    :param points: ``(instructions, 2)``.
    :param colourings: grouping name (kind, level, game, ...) -> each instruction's group.
    :param names: instruction texts, written beside the points when there are few of them.
    :param held_out: instructions training never saw, ringed in black in every panel.
    """
    ringed = np.asarray(held_out if held_out is not None else [False] * len(points), dtype=bool)
    panels = max(1, len(colourings))
    fig, axes = _figure(1, panels, figsize=(4.6 * panels, 4.2), squeeze=False)
    groupings = dict(colourings) or {"all": ["instruction"] * len(points)}
    for ax, (grouping, labels) in zip(axes[0], groupings.items(), strict=True):
        categories = sorted(set(labels))
        colours = category_colours(grouping, categories)
        for category in categories:
            mask = np.array([label == category for label in labels])
            ax.scatter(points[mask, 0], points[mask, 1], color=colours[category], s=22, alpha=0.8, label=category)
        if ringed.any():
            ax.scatter(points[ringed, 0], points[ringed, 1], s=60, facecolors="none", edgecolors="black",
                       linewidths=0.9, label="held out of training")  # fmt: skip
        if names is not None and len(points) <= 12:
            for (x, y), name in zip(points, names, strict=True):
                ax.annotate(textwrap.shorten(name, 28), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(axis_labels[0], fontsize=8)
        ax.set_ylabel(axis_labels[1], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"by {grouping}", fontsize=9)
        if len(categories) <= 15:
            ax.legend(fontsize=7, loc="best", framealpha=0.6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def interpolation(
    alphas: Sequence[float],
    success_a: Sequence[float],
    success_b: Sequence[float],
    a: str,
    b: str,
    episodes: int,
    path: Path,
) -> Path:
    """Success on A's goal and on B's goal as the parameters slide from FiLM(A) to FiLM(B)."""
    fig, ax = _figure(figsize=(6.0, 4.0))
    ax.plot(alphas, success_a, "o-", color="tab:blue", label=f"on A's goal: {a}")
    ax.plot(alphas, success_b, "s-", color="tab:orange", label=f"on B's goal: {b}")
    ax.set_xlabel("α   (parameters (1-α)·FiLM(A) + α·FiLM(B))")
    ax.set_ylabel(f"success rate ({episodes} episodes each)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    ax.set_title("Interpolating between two instructions' FiLM parameters", fontsize=10)
    return _save(fig, path)


def arithmetic(rows: Sequence[Mapping[str, Any]], episodes: int, path: Path) -> Path:
    """Success on the expected instruction's goal: its own FiLM, the analogy's A - B + C, and A's.

    :param rows: one mapping per analogy with ``a``, ``b``, ``c``, ``expected`` (texts) and
        ``own``, ``arithmetic``, ``control`` (success rates).
    """
    fig, ax = _figure(figsize=(max(5.5, 2.6 * len(rows) + 1.5), 4.4))
    width = 0.26
    bars = (("own", "FiLM(expected)", "tab:green"), ("arithmetic", "FiLM(A) - FiLM(B) + FiLM(C)", "tab:purple"),
            ("control", "FiLM(A)", "tab:gray"))  # fmt: skip
    for k, (key, label, colour) in enumerate(bars):
        xs = np.arange(len(rows)) + (k - 1) * width
        ax.bar(xs, [row[key] for row in rows], width, color=colour, label=label)
    labels = [
        "\n".join(
            textwrap.fill(f"{tag} {r[key]}", 34)
            for tag, key in (("A:", "a"), ("B:", "b"), ("C:", "c"), ("→", "expected"))
        )
        for r in rows
    ]
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"success on the expected goal ({episodes} episodes)")
    ax.legend(fontsize=8, loc="upper right", framealpha=0.7)
    ax.set_title("FiLM arithmetic: does A - B + C reach the analogous goal?", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- from an analysis to files


def _label(names: Sequence[str]) -> str:
    return " and ".join(SHORT[n] for n in names)


def parameter_figures(
    params: FilmParameters, result: Analysis, projections: Mapping[str, Projection], out: Path, seed: int
) -> dict[str, str]:
    """The scatters of ``result.layer`` and the projections: name -> PNG path.

    Attribute panels and projection colours keep only the attributes that vary among the
    analysed instructions (GoToLocal's missions all say "go to": no verb panel).
    """
    index = result.layer
    values = params.layer(index)
    title = f"{params.conditioning}: {_label(params.names)} of layer {index}"
    path = out / f"scatter_layer{index}.png"
    figures = {path.stem: layer_scatter(values, title, path, seed)}
    attributes = set(params.instructions[0].attributes) if params.instructions else set()
    panels = [a for a in PANELS if a in attributes]
    varied = {g: params.attribute(g) for g in panels if len(set(params.attribute(g))) > 1}
    path = out / f"scatter_layer{index}_attributes.png"
    by = varied or {panels[0]: params.attribute(panels[0])}
    figures[path.stem] = attribute_scatter(values, result.feature_maps, by, f"{title}: chosen feature maps", path, seed)
    colourings = [a for a in COLOURINGS if a in attributes]
    by = {g: params.attribute(g) for g in colourings if len(set(params.attribute(g))) > 1}
    by = dict(list(by.items())[:3]) or {colourings[0]: params.attribute(colourings[0])}
    texts = [i.text for i in params.instructions]
    for method, p in projections.items():
        name = {"pca": "PCA", "tsne": "t-SNE"}[method]
        head = f"{name} of the concatenated FiLM parameters ({len(texts)} instructions x {params.raw.shape[1]})"
        path = out / f"projection_{method}.png"
        held = [i.attributes.get("split") == "held out" for i in params.instructions]
        figures[path.stem] = projection(p.points, p.axis_labels, by, head, path, texts, held)
    return {k: str(v) for k, v in figures.items()}


def interpolation_figure(i: Interpolation, out: Path) -> Path:
    episodes = min(i.episodes_a, i.episodes_b)
    return interpolation(i.alphas, i.success_a, i.success_b, i.a, i.b, episodes, out / "interpolation.png")


def arithmetic_figure(analogies: Sequence[Analogy], out: Path) -> Path:
    rows = [asdict(x) for x in analogies]
    return arithmetic(rows, min(x.episodes for x in analogies), out / "arithmetic.png")


def _table(params: FilmParameters) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: each instruction's text and attributes, then its parameters as the layers use them."""
    attributes = sorted({k for i in params.instructions for k in i.attributes})
    rows = [
        [i.text, *(i.attributes.get(a, "") for a in attributes), *map(float, values)]
        for i, values in zip(params.instructions, params.values(), strict=True)
    ]
    return ["instruction", *attributes, *params.columns()], rows


def write_csv(params: FilmParameters, path: Path) -> Path:
    header, rows = _table(params)
    # 9 significant digits: float32 parameters read back exactly
    write_csv_file(path, [header, *([v if isinstance(v, str) else f"{v:.9g}" for v in row] for row in rows)])
    return path


def _rate(x: float) -> str:
    return f"{x:.2f}"


def write_summary(result: Analysis, params: FilmParameters, path: Path) -> Path:
    names = _label(params.names)
    source = result.instruction_noun
    where = ", ".join(result.levels) + ("" if result.own_levels else " (not the run's own levels)")
    lines = [
        f"# FiLM analysis of `{result.run_dir}`",
        "",
        f"- model: `{result.model}`; conditioning **{result.conditioning}**: {names} per feature map"
        + (" (σ(g) scales the map)" if "g" in params.names else ""),
        f"- {result.instructions} {source} of {where}"
        + (f", from {result.resets:,} seeded resets" if result.resets else ""),
        f"- {len(params.channels)} conditioned layers, {' + '.join(map(str, result.layer_sizes))} = "
        f"{sum(result.layer_sizes)} parameters per instruction (`{Path(result.csv).name}`)",
        "",
        "## Parameters per layer",
        "",
        "| layer | parameter | mean | std | min | max | spread across instructions | share < 0 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in result.layer_stats:
        negative = f"{s['negative_share']:.2f}" if "negative_share" in s else "-"
        lines.append(f"| {s['layer']} | {s['parameter']} | {s['mean']:.3f} | {s['std']:.3f} | {s['min']:.3f} | "
                     f"{s['max']:.3f} | {s['instruction_spread']:.3f} | {negative} |")  # fmt: skip
    if result.attribute_shares:
        shares = ", ".join(f"{name} {share:.2f}" for name, share in result.attribute_shares.items())
        lines += ["", f"Share of the parameters' variance across instructions each attribute explains (η²): {shares}."]
    if result.pca_explained is not None:
        pc1, pc2 = result.pca_explained
        lines += ["", f"PCA: the first two components hold {percent(pc1)} and {percent(pc2)} of the variance."]
    i = result.interpolation
    if i is not None:
        lines += ["", "## Interpolation", "", f"A = *{i.a}* ({i.episodes_a} episodes), B = *{i.b}* "
                  f"({i.episodes_b} episodes), the same seeds for every α.", "",
                  "| α | " + " | ".join(f"{x:.1f}" for x in i.alphas) + " |",
                  "|---|" + "---|" * len(i.alphas),
                  "| success on A's goal | " + " | ".join(map(_rate, i.success_a)) + " |",
                  "| success on B's goal | " + " | ".join(map(_rate, i.success_b)) + " |", "",
                  f"The policy reading A's own mission: {_rate(i.own_a)} (α = 0 gave {_rate(i.success_a[0])}); "
                  f"B's: {_rate(i.own_b)} (α = 1 gave {_rate(i.success_b[-1])})."]  # fmt: skip
    if result.analogies:
        lines += ["", "## Arithmetic", "",
                  "Success on the expected instruction's own episodes with three sets of parameters; where A - B + C",
                  "lands among the analysed instructions (A, B, C left out); and its distance to the expected",
                  "instruction relative to A's (0: on it, 1: no nearer than A).", "",
                  "| A - B + C → expected | A - B + C | FiLM(expected) | FiLM(A) | nearest | rank | distance ratio |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        held = {i.text for i in params.instructions if i.attributes.get("split") == "held out"}
        if held:
            lines[-2:-2] = ["Instructions training never saw are marked (held out).", ""]
        for x in result.analogies:
            a, b, c, expected = (t + (" (held out)" if t in held else "") for t in (x.a, x.b, x.c, x.expected))
            lines.append(
                f"| {a} - {b} + {c} → {expected} | {_rate(x.arithmetic)} | {_rate(x.own)} | "
                f"{_rate(x.control)} | {x.nearest or '-'} | {x.rank or '-'} | {x.distance_ratio:.2f} |"
            )
    lines += ["", "## Figures", ""] + [f"- `{Path(p).name}`" for p in result.figures.values()]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    write_text(path, "\n".join(lines) + "\n")
    return path


def wandb_mode(config: ExperimentConfig) -> str:
    """The run's own logging mode; the ``WANDB_MODE`` environment variable overrides it, except
    that a run trained with wandb disabled stays off."""
    from film_rl.run.tracking import resolve_wandb_mode

    if config.logging.wandb == "disabled":
        return "disabled"
    env = os.environ.get("WANDB_MODE")
    return env if env in ("online", "offline", "disabled") else resolve_wandb_mode(config.logging.wandb)


def log_to_wandb(config: ExperimentConfig, run_dir: Path, result: Analysis, params: FilmParameters) -> str | None:
    """The figures (``analysis/<name>``) and the parameter table (``analysis/film_params``) into the
    run's own wandb run, beside its learning curves; returns the mode, None when disabled."""
    mode = wandb_mode(config)
    if mode == "disabled":
        return None
    import wandb

    from film_rl.run.tracking import start_wandb

    run = start_wandb(replace(config, logging=replace(config.logging, wandb=mode)), run_dir)  # type: ignore[arg-type]
    if run is None:
        return None
    try:
        header, rows = _table(params)
        payload: dict[str, Any] = {f"analysis/{k}": wandb.Image(v) for k, v in result.figures.items()}
        payload["analysis/film_params"] = wandb.Table(columns=list(header), data=rows)
        i = result.interpolation
        if i is not None:
            payload["analysis/interpolation_table"] = wandb.Table(
                columns=["alpha", "success_on_a", "success_on_b"],
                data=[list(row) for row in zip(i.alphas, i.success_a, i.success_b, strict=True)],
            )
        if result.analogies:
            columns = ["a", "b", "c", "expected", "arithmetic", "own", "control", "nearest", "rank", "distance_ratio"]
            data = [[asdict(x)[k] for k in columns] for x in result.analogies]
            payload["analysis/arithmetic_table"] = wandb.Table(columns=list(columns), data=data)
        run.log(payload)
    finally:
        run.finish()
    return mode
