"""How an instruction modulates a layer: FiLM and its relatives, behind one interface.

Every mechanism is a small module that a conditioned layer calls twice:

* ``pre(x, p)`` on the layer's *input* (only ``concat`` does anything here: it appends the
  instruction's projection as extra channels, which is what "concatenate the instruction to the
  layer's input" means for a conv layer);
* ``post(h, p)`` on the layer's *output* feature maps (FiLM and the other feature-wise
  transforms).

``p`` is this layer's slice of the FiLM generator's output, shape ``(batch, n_params)``. The
modulation is per feature map: a ``(batch, C)`` parameter broadcasts over every spatial position
of a ``(batch, C, H, W)`` map, and also applies to a ``(batch, C)`` linear layer.

>>> import torch
>>> film = make_conditioning("film", channels=4)
>>> x = torch.randn(2, 4, 3, 3)
>>> p = torch.zeros(2, film.n_params)      # Δγ = 0, β = 0
>>> bool(torch.equal(film.post(x, p), x))  # a fresh FiLM layer is the identity
True
"""

from __future__ import annotations

import torch
from torch import nn

CONDITIONINGS = ("film", "scale", "bias", "gate", "concat", "none")


def _per_feature(p: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``(B, C)`` parameters so they broadcast over ``like``'s spatial dimensions."""
    return p.view(*p.shape, *([1] * (like.dim() - 2)))


class Conditioning(nn.Module):
    """The unconditioned baseline (``none``): the instruction never reaches this layer.

    :param channels: number of feature maps of the conditioned layer's output.
    """

    #: extra input channels the conditioned layer must accept (``concat`` only)
    extra_in_channels: int = 0

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    @property
    def n_params(self) -> int:
        """Width of this layer's slice of the generator's output."""
        return 0

    def pre(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return x

    def post(self, h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return h

    def fold(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(scale, shift)``, each ``(batch, channels)``, such that ``post(h, p) == scale ⊙ h + shift``.

        A layer whose every sample shares ``p`` (one Atari game) can then fold the modulation into
        its conv's weights and bias instead of making passes over the feature maps: see
        :meth:`film_rl.model.networks.ConditionedConv.forward_folded`. ``None``: not an affine map of
        the feature maps (``concat``, ``none``).
        """
        return None


class FiLM(Conditioning):
    """``γ(z) ⊙ h + β(z)`` with ``γ = 1 + Δγ`` so that zero generator output is the identity."""

    @property
    def n_params(self) -> int:
        return 2 * self.channels

    def post(self, h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        delta_gamma, beta = p.chunk(2, dim=1)
        # (1 + Δγ) ⊙ h + β as one fused pass over the feature maps (γ and β are per map, tiny): fewer
        # full-size passes forward and backward than h + β + Δγ ⊙ h
        return torch.addcmul(_per_feature(beta, h), h, _per_feature(1.0 + delta_gamma, h))

    def fold(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        delta_gamma, beta = p.chunk(2, dim=1)
        return 1.0 + delta_gamma, beta


class Scale(Conditioning):
    """Scaling only, ``γ(z) ⊙ h`` (γ = 1 + Δγ)."""

    @property
    def n_params(self) -> int:
        return self.channels

    def post(self, h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return (1.0 + _per_feature(p, h)) * h

    def fold(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return 1.0 + p, torch.zeros_like(p)


class Bias(Conditioning):
    """Biasing only, ``h + β(z)``: what concatenation amounts to on a linear layer."""

    @property
    def n_params(self) -> int:
        return self.channels

    def post(self, h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return h + _per_feature(p, h)

    def fold(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return torch.ones_like(p), p


class Gate(Conditioning):
    """Sigmoid gating, ``σ(g(z)) ⊙ h``: a scaling bounded to (0, 1), as in gated networks."""

    @property
    def n_params(self) -> int:
        return self.channels

    def post(self, h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_per_feature(p, h)) * h

    def fold(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return torch.sigmoid(p), torch.zeros_like(p)


class Concat(Conditioning):
    """Concatenate a projection of the instruction to the layer's input.

    On a conv input the projection is tiled over every position, so the layer sees it as
    ``dim`` extra constant feature maps.

    :param channels: output feature maps of the conditioned layer (unused, kept for the interface).
    :param dim: width of the concatenated instruction projection.
    """

    def __init__(self, channels: int, dim: int = 32) -> None:
        super().__init__(channels)
        self.extra_in_channels = dim

    @property
    def n_params(self) -> int:
        return self.extra_in_channels

    def pre(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        tiled = _per_feature(p, x).expand(-1, -1, *x.shape[2:])
        return torch.cat([x, tiled], dim=1)


_REGISTRY: dict[str, type[Conditioning]] = {
    "film": FiLM,
    "scale": Scale,
    "bias": Bias,
    "gate": Gate,
    "concat": Concat,
    "none": Conditioning,
}


def make_conditioning(name: str, channels: int) -> Conditioning:
    """Build the conditioning mechanism ``name`` for a layer with ``channels`` output maps."""
    try:
        return _REGISTRY[name](channels)
    except KeyError:
        raise ValueError(f"unknown conditioning {name!r}; choose one of {', '.join(CONDITIONINGS)}") from None
