"""The figures of ``film-rl analyze``: γ–β scatters, projections, interpolation and arithmetic.

Plain matplotlib on the Agg backend (no display needed, the same PNG on every machine); each
function draws one figure from arrays and labels and writes it, so :mod:`film_rl.analyze` keeps
the numbers and this module only the looks.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

#: BabyAI's colour words drawn in their own colour, so a "colour" legend reads at a glance
BABYAI_COLOURS = {
    "red": "tab:red",
    "green": "tab:green",
    "blue": "tab:blue",
    "purple": "tab:purple",
    "yellow": "gold",
    "grey": "grey",
}
#: how each parameter is written on an axis
SYMBOLS = {"gamma": "γ", "beta": "β", "g": "gate g (the map is scaled by σ(g))"}
#: the value at which a parameter leaves its feature map unchanged (gate has none: σ(g) < 1)
IDENTITY = {"gamma": 1.0, "beta": 0.0}
DPI = 110


def category_colours(attribute: str, categories: Sequence[str]) -> dict[str, Any]:
    """A colour per category: BabyAI's own colours for the ``colour`` attribute, tab10/tab20 otherwise."""
    if attribute == "colour" and all(c in BABYAI_COLOURS or c == "any" for c in categories):
        return {c: BABYAI_COLOURS.get(c, "black") for c in categories}
    cmap = plt.get_cmap("tab10" if len(categories) <= 10 else "tab20")
    return {c: cmap(i % cmap.N) for i, c in enumerate(categories)}


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
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
    cmap = plt.get_cmap("tab10" if maps <= 10 else "turbo")
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
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
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols + 0.6, 2.9 * rows), squeeze=False)
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
                ax.set_ylabel(f"{names[0]}, map {fmap}", fontsize=8)
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
) -> Path:
    """One point per instruction in a 2-D projection, one panel per way of colouring them.

    :param points: ``(instructions, 2)``.
    :param colourings: grouping name (kind, level, game, ...) -> each instruction's group.
    :param names: instruction texts, written beside the points when there are few of them.
    """
    panels = max(1, len(colourings))
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.2), squeeze=False)
    groupings = dict(colourings) or {"all": ["instruction"] * len(points)}
    for ax, (grouping, labels) in zip(axes[0], groupings.items(), strict=True):
        categories = sorted(set(labels))
        colours = category_colours(grouping, categories)
        for category in categories:
            mask = np.array([label == category for label in labels])
            ax.scatter(points[mask, 0], points[mask, 1], color=colours[category], s=22, alpha=0.8, label=category)
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
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
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
    fig, ax = plt.subplots(figsize=(max(5.5, 2.6 * len(rows) + 1.5), 4.4))
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
