"""What an LSTM policy's memory does while it acts, measured on the episodes it plays.

Two figures, both of the actor's LSTM, which decide whether ``evaluate --forget`` can show a memory
worth anything:

- ``saturated``: the share of the LSTM's gate pre-activations (``W_ih x + W_hh h + b``, at the
  step each call begins with) beyond ``SATURATED``, where a sigmoid's slope is under 0.007. A
  FiLM network's features grow as it trains; an LSTM reading them raw ends with nearly every gate
  stuck open or shut, whatever the memory holds (``agent.memory_norm``, docs/results.md).
- ``adds`` (``agent.memory: residual`` only): the norm of what the memory adds to the features,
  over the features' norm, summed over steps. A memory that adds 0.3% of what the heads read
  cannot matter to them, however well it trains (``agent.memory_scale``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import torch
from torch import nn

from film_rl.model.policies import ResidualLSTM

__all__ = ["SATURATED", "MemoryProbe"]

#: the gate pre-activation beyond which a sigmoid's slope is under 0.007
SATURATED = 5.0


class MemoryProbe:
    """A forward hook on ``policy``'s actor LSTM while the ``with`` block runs; :meth:`figures`
    sums it up.

    Evaluation steps the LSTM one step at a time, so the state each call begins with is the
    state of the step it reads: the gates are those the policy acted through.
    """

    def __init__(self, policy: nn.Module) -> None:
        lstm = policy.lstm_actor
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"{type(policy).__name__} has no LSTM memory to measure")
        self.lstm = lstm
        self.steps = 0
        # summed as tensors on the policy's device, read once in figures(): a float per call would
        # cost the evaluation time (on a GPU, a synchronisation per step)
        device = next(lstm.parameters()).device
        self.saturated = torch.zeros((), dtype=torch.long, device=device)
        self.features_norm = torch.zeros((), device=device)
        self.added_norm = torch.zeros((), device=device)
        self._handle: Any = None

    def __enter__(self) -> MemoryProbe:
        self._handle = self.lstm.register_forward_hook(self._seen)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._handle.remove()

    @torch.no_grad()
    def _seen(self, _: nn.Module, args: tuple[Any, ...], output: tuple[torch.Tensor, Any]) -> None:
        sequence = args[0]  # (steps, batch, features): sb3-contrib's layout
        first = sequence[0]
        norm = getattr(self.lstm, "norm", None)  # NormedLSTM's and ResidualLSTM(norm=True)'s LayerNorm
        read = first if norm is None else norm(first)
        weights = self.lstm.all_weights[0]  # the first layer's: W_ih, W_hh[, b_ih, b_hh]
        pre = read @ weights[0].T
        if len(args) > 1 and args[1] is not None:  # (h, c), each (layers, batch, hidden); none: zeros
            pre += args[1][0][0] @ weights[1].T
        for bias in weights[2:]:
            pre += bias
        self.saturated += (pre.abs() > SATURATED).sum()
        self.steps += first.shape[0]
        if isinstance(self.lstm, ResidualLSTM):
            self.features_norm += torch.linalg.vector_norm(sequence, dim=-1).sum()
            self.added_norm += torch.linalg.vector_norm(output[0] - sequence, dim=-1).sum()

    def figures(self) -> dict[str, float] | None:
        """``steps``, ``saturated`` and, for a residual memory, ``adds``; ``None`` before any step."""
        if not self.steps:
            return None
        gates = self.steps * 4 * self.lstm.hidden_size  # input, forget, cell and output gates per step
        out = {"steps": float(self.steps), "saturated": int(self.saturated) / gates}
        if isinstance(self.lstm, ResidualLSTM):
            features, added = float(self.features_norm), float(self.added_norm)
            out["adds"] = added / features if features else 0.0
        return out
