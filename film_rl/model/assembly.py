"""A conditioned CNN and the FiLM generator that feeds it, assembled once for every network that
reads an instruction: the policies' features extractors and AGILE's discriminator.

The ``none`` conditioning has no generator: its conditioned layers get zero-width parameters, so
the same CNN code runs unconditioned and the comparison changes one thing only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from film_rl.model.networks import FiLMGenerator


class ConditionedCNN(Protocol):
    """What :class:`FiLMed` needs of a CNN: its conditioned blocks and the parameters each asks for."""

    blocks: nn.ModuleList
    param_sizes: list[int]
    out_dim: int

    def __call__(self, *inputs: Any) -> torch.Tensor: ...


class FiLMed:
    """Mixin for an ``nn.Module`` holding ``cnn`` and ``generator`` (``None`` for ``none``).

    The attribute names are part of every saved model's state dict: keep them.
    """

    cnn: ConditionedCNN
    generator: FiLMGenerator | None

    def assemble(self, cnn: ConditionedCNN, conditioning: str, encoder: Callable[[], nn.Module]) -> None:
        """Hold ``cnn`` and, unless ``conditioning`` is ``none``, a generator over ``encoder()``."""
        self.cnn = cnn
        self.generator = None if conditioning == "none" else FiLMGenerator(encoder(), cnn.param_sizes)

    def film_params(self, instruction: torch.Tensor) -> list[torch.Tensor]:
        """Every conditioned layer's parameters for these instructions (zero-width for ``none``)."""
        if self.generator is None:
            return [instruction.new_zeros(instruction.shape[0], 0, dtype=torch.float32)] * len(self.cnn.blocks)
        return self.generator(instruction.long())  # type: ignore[no-any-return]

    def reset_film_head(self) -> None:
        """Zero the generator's head (undoing e.g. SB3's orthogonal init): FiLM layers start as identities."""
        if self.generator is not None:
            self.generator.reset_head()

    def follow(self, optimizer: torch.optim.Optimizer) -> None:
        """Let the generator's acting cache hear of every step of the optimizer that trains it."""
        if self.generator is not None:
            self.generator.follow(optimizer)
