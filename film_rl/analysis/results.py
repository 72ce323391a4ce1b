"""What ``film-rl analyze`` finds, as plain data: the analysed instructions and their FiLM
parameters, projections, interpolations, analogies and the whole analysis (``analysis.json``).

:mod:`film_rl.analysis.analyze` computes them and :mod:`film_rl.analysis.outputs` presents them;
both read these types from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: what each mechanism's slice of the generator output holds per feature map, in order
PARAMETERS: dict[str, tuple[str, ...]] = {"film": ("gamma", "beta"), "scale": ("gamma",), "bias": ("beta",),
                                          "gate": ("g",)}  # fmt: skip


#: reported value = generator output + offset: the generator makes Δγ and the layer uses γ = 1 + Δγ
OFFSETS = {"gamma": 1.0, "beta": 0.0, "g": 0.0}


@dataclass
class Instruction:
    """One instruction the generator is asked about: a mission, or a game of a suite."""

    text: str
    #: what the generator reads: padded token ids, or ``[game id]``
    tokens: np.ndarray
    #: attribute -> value, for colouring: kind, colour, object, location and level (BabyAI) or game
    attributes: dict[str, str]


@dataclass
class FilmParameters:
    """Every analysed instruction's parameters, and how to read them per layer."""

    conditioning: str
    instructions: list[Instruction]
    #: ``(instructions, parameters)`` float32: the generator's output, what the layers receive
    raw: np.ndarray
    #: feature maps of each conditioned layer
    channels: list[int]

    @property
    def names(self) -> tuple[str, ...]:
        return PARAMETERS[self.conditioning]

    @property
    def sizes(self) -> list[int]:
        return [len(self.names) * c for c in self.channels]

    def columns(self) -> list[str]:
        """``l<layer>_<parameter>_<feature map>``, in the generator's output order."""
        return [f"l{i}_{name}_{m}" for i, c in enumerate(self.channels) for name in self.names for m in range(c)]

    def values(self) -> np.ndarray:
        """The parameters as the layers use them (γ = 1 + Δγ), ``(instructions, parameters)`` float64."""
        offsets = np.array([OFFSETS[c.split("_")[1]] for c in self.columns()])
        return self.raw.astype(np.float64) + offsets

    def layer(self, index: int) -> dict[str, np.ndarray]:
        """Parameter name -> ``(instructions, feature maps)`` of one layer."""
        start = sum(self.sizes[:index])
        values, c = self.values(), self.channels[index]
        return {name: values[:, start + k * c : start + (k + 1) * c] for k, name in enumerate(self.names)}

    def attribute(self, name: str) -> list[str]:
        return [i.attributes.get(name, "none") for i in self.instructions]


@dataclass
class Projection:
    """One 2-D view of the instructions' parameters."""

    #: ``(instructions, 2)``
    points: np.ndarray
    axis_labels: tuple[str, str]
    #: PCA: the share of the variance each axis holds
    explained: list[float] | None = None


@dataclass
class Interpolation:
    """The policy between two instructions: success on each one's goal along α."""

    a: str
    b: str
    alphas: list[float]
    #: success on A's goal (B's goal) with (1-α)·FiLM(A) + α·FiLM(B), per α
    success_a: list[float]
    success_b: list[float]
    #: the policy reading A's (B's) own mission on the same episodes: α = 0 (1) reproduces it exactly
    own_a: float
    own_b: float
    episodes_a: int
    episodes_b: int


@dataclass
class Analogy:
    """FiLM(A) - FiLM(B) + FiLM(C), judged on the expected instruction's episodes and among the analysed ones."""

    a: str
    b: str
    c: str
    expected: str
    #: success on the expected instruction's goal with FiLM(A) - FiLM(B) + FiLM(C)
    arithmetic: float
    #: ... with the expected instruction's own parameters (what the analogy aims at)
    own: float
    #: ... with FiLM(A), the instruction the analogy starts from (a control)
    control: float
    episodes: int
    #: the analysed instruction nearest to A - B + C (Euclidean), A, B and C left out as in word analogies
    nearest: str | None
    #: the expected instruction's place in that order (1: nearest), None when it was not analysed
    rank: int | None
    #: ‖(A - B + C) - expected‖ / ‖A - expected‖: 0 lands on the expected instruction, 1 no nearer
    #: than A itself (cosine similarity says little here: every instruction shares a large common part)
    distance_ratio: float


@dataclass
class Analysis:
    """What ``film-rl analyze`` found and wrote; ``analysis.json`` is :meth:`to_dict`."""

    run_dir: str
    model: str
    out: str
    conditioning: str
    #: which parameters the mechanism has: gamma and beta (film), or one of them, or the gate's g
    parameters: list[str]
    #: the task family (``env.kind``), and what its instructions are called in reports
    kind: str
    instruction_noun: str
    #: where the missions came from (Atari: the games), and whether those are the run's own
    levels: list[str]
    own_levels: bool
    instructions: int
    layer_sizes: list[int]
    resets: int
    #: the layer of the scatter plots, and the feature maps of the attribute scatter
    layer: int
    feature_maps: list[int]
    layer_stats: list[dict[str, Any]]
    #: attribute -> share of the parameters' variance across instructions it explains (η²)
    attribute_shares: dict[str, float] = field(default_factory=dict)
    pca_explained: list[float] | None = None
    interpolation: Interpolation | None = None
    analogies: list[Analogy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    csv: str = ""
    summary: str = ""
    #: the wandb mode the figures and table were logged in (None: not logged)
    wandb: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percent(share: float) -> str:
    """A share of the variance with the digits it needs: ``63.0%``, but ``99.960%`` and
    ``0.040%`` where rounding to whole percents would say 100% and 0% of a visible difference."""
    small = min(share, 1.0 - share) * 100.0
    if small <= 0.0:
        return f"{share:.0%}"
    return f"{100.0 * share:.{max(1, 1 - math.floor(math.log10(small)))}f}%"
