"""The FiLM generator (instruction -> every layer's parameters), the FiLM-ed grid CNN for BabyAI and
the FiLM-ed Nature CNN for Atari.

Policies and reward models build from these same modules; nothing here knows about SB3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Self, cast

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.hooks import RemovableHandle

from film_rl.model.conditioning import Conditioning, make_conditioning

ENCODERS = ("gru", "bigru", "bow", "bow_linear", "conv")

#: minigrid cells are (object type <= 10, colour <= 5, state <= 2); each attribute gets its own
#: block of embedding rows so that "red" and "ball" never share a vector.
CELL_VALUES_PER_ATTRIBUTE = 16

#: batches up to this size take PyTorch's native CPU kernels instead of oneDNN's (see native_cpu_kernels)
SMALL_BATCH = 16


@contextmanager
def native_cpu_kernels(active: bool) -> Iterator[None]:
    """Run convs and LSTMs with PyTorch's own CPU kernels instead of oneDNN's while ``active``.

    oneDNN's kernels have a fixed cost per call that dominates a tiny batch; PyTorch's own are
    faster below :data:`SMALL_BATCH` samples, which is every call while acting in a few
    environments (docs/benchmarks.md says how that was measured).

    Only the ``enabled`` flag is touched (``torch.backends.mkldnn.flags`` would also reset the
    user's deterministic and TF32 settings).
    """
    if not active:
        yield
        return
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]  # a ContextProp, bool at runtime
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def fused_adam(device: torch.device) -> bool | None:
    """Adam's ``fused`` for ``device``: the fused kernel wherever PyTorch has one (CPU and CUDA),
    else ``None``, PyTorch's default.

    Adam's usual loop costs a dozen small ops per parameter tensor, and a FiLM policy has many
    small tensors; the fused kernel does one pass. Same algorithm, same hyperparameters; the
    updates differ only by float rounding order.
    """
    return True if device.type in ("cpu", "cuda") else None


class InstructionEncoder(nn.Module):
    """Padded token ids ``(B, L)`` -> one instruction vector ``(B, dim)``; pad id is 0.

    Padding is masked: the GRUs read packed sequences (a pad token is never a word to them), the
    bag of words averages real tokens only, and the conv's max ignores pad positions.

    :param vocab_size: number of token ids.
    :param kind: ``gru`` (final hidden state), ``bigru`` (both directions' final states),
        ``bow`` (mean of word embeddings, then a linear layer and a ReLU), ``bow_linear`` (the same
        without the ReLU: a FiLM generator's output is then affine in the words' mean, so the
        parameters of "the green box" are those of "the green key" + "the red box" - "the red key",
        whether or not training saw that pair) or ``conv`` (a width-3 conv over the
        words, max over positions: word order within three words, and no sequential steps, so
        its backward costs a fraction of a GRU's).
    :param word_dim: word embedding width.
    :param dim: output width.
    """

    def __init__(self, vocab_size: int, kind: str = "gru", word_dim: int = 32, dim: int = 128) -> None:
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"unknown instruction encoder {kind!r}; choose one of {', '.join(ENCODERS)}")
        if kind == "bigru" and dim % 2:
            raise ValueError("bigru needs an even instruction dim")
        self.kind = kind
        self.dim = dim
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.rnn: nn.GRU | None = None
        self.proj: nn.Linear | None = None
        self.conv: nn.Conv1d | None = None
        if kind in ("bow", "bow_linear"):
            self.proj = nn.Linear(word_dim, dim)
        elif kind == "conv":
            self.conv = nn.Conv1d(word_dim, dim, 3, padding=1)
        else:
            bidirectional = kind == "bigru"
            hidden = dim // 2 if bidirectional else dim
            self.rnn = nn.GRU(word_dim, hidden, batch_first=True, bidirectional=bidirectional)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0
        lengths = mask.sum(1)
        tokens = tokens[:, : max(int(lengths.max()), 1)]  # drop columns that are pad everywhere
        words = self.embedding(tokens)
        if self.proj is not None:
            mask = mask[:, : tokens.shape[1]].unsqueeze(-1).to(words.dtype)
            mean = (words * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            projected = self.proj(mean)
            return projected if self.kind == "bow_linear" else torch.relu(projected)
        if self.conv is not None:
            # pad tokens embed to zeros, like the conv's own padding, and ReLU outputs are >= 0, so
            # zeroing pad positions before the max gives the max over real words exactly
            features = torch.relu(self.conv(words.transpose(1, 2)))  # (B, dim, L)
            return features.masked_fill(~mask[:, None, : tokens.shape[1]], 0.0).amax(2)
        assert self.rnn is not None
        if bool((lengths == tokens.shape[1]).all()):
            # no padding left (GoToLocal's missions are all five words): packing would only add
            # its sorting and bookkeeping
            _, h_n = self.rnn(words)  # (num_directions, B, hidden)
        else:
            packed = pack_padded_sequence(words, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            _, h_n = self.rnn(packed)
        return h_n.transpose(0, 1).reshape(tokens.shape[0], -1)


def distinct_rows(tokens: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The distinct rows of a token batch: ``(keys, rows, inverse)`` with ``rows[inverse] == tokens``
    (up to trailing all-pad columns).

    Rows are packed exactly into one int64 key each (a few bits per token) so that a 1-D
    ``torch.unique`` does the work; ``torch.unique(dim=0)`` is several times slower on CPU.
    ``keys`` is ``None`` when a row does not fit in 62 bits, and the slow path is taken.
    """
    used = (tokens != 0).any(0).nonzero()
    tokens = tokens[:, : int(used.max()) + 1] if used.numel() else tokens[:, :1]
    bits = max(1, int(tokens.max()).bit_length())
    if bits * tokens.shape[1] > 62:
        rows, inverse = torch.unique(tokens, dim=0, return_inverse=True)
        return None, rows, inverse
    shifts = torch.arange(tokens.shape[1], device=tokens.device) * bits
    keys = (tokens << shifts).sum(1)
    unique_keys, inverse = torch.unique(keys, return_inverse=True)
    first = torch.empty_like(unique_keys).scatter_(0, inverse, torch.arange(len(keys), device=keys.device))
    return unique_keys, tokens[first], inverse


class FiLMGenerator(nn.Module):
    """Map an instruction to every conditioned layer's parameters, split per layer.

    An episode's instruction never changes and a batch holds few distinct ones, so the encoder
    runs once per *distinct* instruction in the batch and the result is gathered back; this is
    what keeps a FiLM policy close to an unconditioned CNN's speed.

    :param encoder: instruction ids ``(B, L)`` -> ``(B, encoder.dim)``.
    :param sizes: each conditioned layer's ``n_params``, in layer order.
    """

    def __init__(self, encoder: nn.Module, sizes: Sequence[int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.sizes = list(sizes)
        self.head = nn.Linear(int(encoder.dim), sum(self.sizes))  # type: ignore[arg-type]
        self.reset_head()
        self._cache: dict[bytes, torch.Tensor] = {}
        self._cache_version: tuple[int, ...] = ()
        #: steps of the optimizers :meth:`follow` watches; ``None``: none followed, no acting cache
        self._optimizer_steps: int | None = None

    def follow(self, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Count ``optimizer``'s steps, which turns the acting cache on (:meth:`_embed_cached`).

        A fused optimizer kernel writes the parameters without bumping their version counters, so
        the cache can only trust weights whose optimizer it hears from; the handle stops it.
        """
        self._optimizer_steps = self._optimizer_steps or 0

        def count(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
            self._optimizer_steps = (self._optimizer_steps or 0) + 1

        return optimizer.register_step_post_hook(count)

    def train(self, mode: bool = True) -> Self:
        """Also forget the acting cache: SB3 switches a policy to training mode before every update
        and back before every rollout, so whichever optimizer trained it (sb3-contrib's recurrent
        policy replaces the one :meth:`follow` may have been given), the next rollout acts on
        parameters computed afresh."""
        self._cache, self._cache_version = {}, ()
        return super().train(mode)

    def reset_head(self) -> None:
        """Zero output: every FiLM layer starts as the identity (γ = 1 + 0, β = 0)."""
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def embed(self, instruction: torch.Tensor) -> torch.Tensor:
        """All layers' parameters, concatenated: ``(B, sum(sizes))``."""
        if not torch.is_grad_enabled() and self._optimizer_steps is not None:
            return self._embed_cached(instruction)
        _, rows, inverse = distinct_rows(instruction)
        return self.head(self.encoder(rows))[inverse]

    def _embed_cached(self, instruction: torch.Tensor) -> torch.Tensor:
        """Acting (no gradient): reuse each instruction's parameters until the weights change,
        which they do only between rollouts.

        Each step of the followed optimizers (Adam's fused kernel leaves version counters
        alone), a tensor's version (in-place writes such as ``load_state_dict``) and its storage
        address (``.to(device)``, ``param.data = ...``) are all part of the key, so a stale entry
        is never served. Rows are keyed by their bytes: for the few rows of an acting batch that
        is far cheaper than :func:`distinct_rows`.
        """
        params = (v for p in self.parameters() for v in (p.data_ptr(), p._version))
        version = (self._optimizer_steps or 0, *params)
        if version != self._cache_version:
            self._cache, self._cache_version = {}, version
        keys = [row.tobytes() for row in instruction.cpu().numpy()]
        fresh = {k: i for i, k in enumerate(keys) if k not in self._cache}
        if fresh:
            rows = instruction[list(fresh.values())]
            for key, out in zip(fresh, self.head(self.encoder(rows)), strict=True):
                self._cache[key] = out
        return torch.stack([self._cache[k] for k in keys])

    def forward(self, instruction: torch.Tensor) -> list[torch.Tensor]:
        return list(self.embed(instruction).split(self.sizes, dim=1))


class ConditionedConv(nn.Module):
    """A conv whose feature maps the instruction modulates, residual when the shapes allow it.

    ``relu(post(bn(conv(pre(x)))))`` (+ x): FiLM sits after normalisation, as in FiLM and BabyAI.

    :param in_channels: input feature maps.
    :param out_channels: output feature maps.
    :param conditioning: mechanism name (see :mod:`film_rl.model.conditioning`).
    :param kernel_size: odd sizes keep the map's size (padded, residual), even ones shrink it by
        ``kernel_size - 1`` (unpadded, like the minigrid docs' 2x2 CNN).
    :param batch_norm: normalise the conv output before modulating it.
    :param stride: conv stride; strided layers are never residual (the Nature CNN's 8x8/4, 4x4/2).
    :param padding: explicit padding, e.g. 0 for the Nature CNN's unpadded 3x3; ``None`` follows
        the kernel-size rule above.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conditioning: str,
        kernel_size: int = 3,
        batch_norm: bool = False,
        stride: int = 1,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        self.cond: Conditioning = make_conditioning(conditioning, out_channels)
        if padding is None:
            padding = kernel_size // 2 if kernel_size % 2 else 0
        self.conv = nn.Conv2d(
            in_channels + self.cond.extra_in_channels, out_channels, kernel_size, stride=stride, padding=padding
        )
        self.norm: nn.Module = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.residual = in_channels == out_channels and stride == 1 and 2 * padding == kernel_size - 1  # same size
        self.shrink = kernel_size - 1 - 2 * padding

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.cond.post(self.norm(self.conv(self.cond.pre(x, p))), p))
        return h + x if self.residual else h

    @property
    def foldable(self) -> bool:
        """Whether the modulation can move into the conv's weights (affine, nothing in between)."""
        return not isinstance(self.norm, nn.BatchNorm2d) and self.cond.fold(self._probe) is not None

    @property
    def _probe(self) -> torch.Tensor:
        return self.conv.weight.new_zeros(1, self.cond.n_params)

    def forward_folded(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """The same layer for samples that share one ``(scale, shift)`` (``(channels,)`` each, from
        :meth:`Conditioning.fold`): ``scale ⊙ (W * x + b) + shift == (scale ⊙ W) * x + (scale ⊙ b + shift)``.

        Scaling the weights costs nothing next to the conv, and the feature maps are never passed
        over for the modulation, forward or backward; that pass is most of a FiLM layer's cost on
        84x84 frames.
        """
        weight = self.conv.weight * scale.view(-1, 1, 1, 1)
        bias = shift if self.conv.bias is None else torch.addcmul(shift, self.conv.bias, scale)
        h = torch.relu(nn.functional.conv2d(x, weight, bias, self.conv.stride, self.conv.padding))
        return h + x if self.residual else h


class GridFiLMCNN(nn.Module):
    """BabyAI-1.1-style network over minigrid's symbolic 7x7x3 view, FiLM in every block.

    Each cell's three attributes are embedded and summed (BabyAI 1.1's "bag of words" per cell), then
    conditioned conv blocks, then a max pool, then the agent's direction is appended.

    :param channels: output maps of each conditioned conv block.
    :param conditioning: mechanism name, the same for every block.
    :param embed_dim: cell embedding width.
    :param kernel_size: conv kernel of every block (see :class:`ConditionedConv`).
    :param pool: ``max`` (global max over the view, BabyAI's "endpool") or ``flatten``.
    :param batch_norm: BatchNorm in every block.
    :param view_size: side of the egocentric view.
    """

    offsets: torch.Tensor

    def __init__(
        self,
        channels: Sequence[int] = (16, 32),
        conditioning: str = "film",
        embed_dim: int = 16,
        kernel_size: int = 2,
        pool: str = "flatten",
        batch_norm: bool = False,
        view_size: int = 7,
    ) -> None:
        super().__init__()
        if pool not in ("max", "flatten"):
            raise ValueError(f"unknown pool {pool!r}; choose max or flatten")
        # An embedding of each attribute, summed per cell, is a linear map of the cells' one-hot
        # codes. Built channels-last and applied as a Linear it trains several times faster on CPU
        # than nn.Embedding (slow backward) or a 1x1 conv; the convs then read it channels-last.
        self.cell_embedding = nn.Linear(3 * CELL_VALUES_PER_ATTRIBUTE, embed_dim, bias=False)
        self.register_buffer("offsets", torch.arange(3) * CELL_VALUES_PER_ATTRIBUTE, persistent=False)
        widths = [embed_dim, *channels]
        blocks = [
            ConditionedConv(widths[i], widths[i + 1], conditioning, kernel_size, batch_norm)
            for i in range(len(channels))
        ]
        self.blocks = nn.ModuleList(blocks)
        self.param_sizes = [block.cond.n_params for block in blocks]  #: what each block asks of the generator
        self.pool = pool
        side = view_size - sum(block.shrink for block in blocks)
        if side < 1:
            raise ValueError(
                f"{len(channels)} blocks of kernel {kernel_size} shrink a {view_size}x{view_size} view to nothing"
            )
        spatial = 1 if pool == "max" else side * side
        self.out_dim = channels[-1] * spatial + 4  # + one-hot direction

    def forward(self, image: torch.Tensor, direction: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        cells = image.long().clamp(0, CELL_VALUES_PER_ATTRIBUTE - 1).permute(0, 2, 3, 1) + self.offsets  # (B, H, W, 3)
        one_hot = torch.zeros(*cells.shape[:3], 3 * CELL_VALUES_PER_ATTRIBUTE, device=image.device)
        x = self.cell_embedding(one_hot.scatter_(3, cells, 1.0)).permute(0, 3, 1, 2)  # (B, E, H, W), channels-last
        with native_cpu_kernels(x.shape[0] <= SMALL_BATCH and x.device.type == "cpu"):
            for block, p in zip(self.blocks, params, strict=True):
                x = block(x, p)
        x = x.amax(dim=(2, 3)) if self.pool == "max" else x.flatten(1)
        heading = nn.functional.one_hot(direction.long().view(-1).clamp(0, 3), 4).to(x.dtype)
        return torch.cat([x, heading], dim=1)


class GameEncoder(nn.Module):
    """A game id ``(B, 1)`` -> its learned embedding ``(B, dim)``: the "encoder" of an Atari FiLM generator.

    Behind :class:`FiLMGenerator`'s linear head this is Kirkpatrick et al.'s (2017) table of
    game-specific gains and biases per layer, factored through a ``dim``-wide embedding so that
    games can share structure (with ``dim >= n_games`` any table is reachable).

    :param n_games: number of games in the suite (ids ``0 .. n_games - 1``).
    :param dim: embedding width.
    """

    def __init__(self, n_games: int, dim: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.embedding = nn.Embedding(n_games, dim)

    def forward(self, game_id: torch.Tensor) -> torch.Tensor:
        return self.embedding(game_id.reshape(-1).long())


#: the Nature DQN's convolutions (Mnih et al., 2015): (kernel, stride) of each layer
NATURE_CONVS = ((8, 4), (4, 2), (3, 1))


class NatureFiLMCNN(nn.Module):
    """The Nature DQN CNN over stacked 84x84 frames, with a conditioning layer after each conv.

    ``relu(FiLM(conv(x)))`` three times (FiLM before the non-linearity, as in FiLM and BabyAI),
    then flattened; the same layers as SB3's ``NatureCNN``, which is what this is with ``none``.

    :param in_channels: stacked frames.
    :param channels: widths of the three convs (Nature: 32, 64, 64).
    :param conditioning: mechanism name, the same for every conv.
    :param screen_size: side of the square input frames.
    """

    def __init__(
        self,
        in_channels: int = 4,
        channels: Sequence[int] = (32, 64, 64),
        conditioning: str = "film",
        screen_size: int = 84,
    ) -> None:
        super().__init__()
        if len(channels) != len(NATURE_CONVS):
            raise ValueError(f"the Nature CNN has {len(NATURE_CONVS)} convs; got {len(channels)} widths")
        widths = [in_channels, *channels]
        blocks = [
            ConditionedConv(widths[i], widths[i + 1], conditioning, kernel, stride=stride, padding=0)
            for i, (kernel, stride) in enumerate(NATURE_CONVS)
        ]
        self.blocks = nn.ModuleList(blocks)
        self.param_sizes = [block.cond.n_params for block in blocks]  #: what each conv asks of the generator
        side = screen_size
        for kernel, stride in NATURE_CONVS:
            side = (side - kernel) // stride + 1
        if side < 1:
            raise ValueError(f"{screen_size}x{screen_size} frames are too small for the Nature CNN")
        self.out_dim = channels[-1] * side * side

    def forward(self, frames: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        # oneDNN's kernels stay on even for small acting batches: on 84x84 frames they are about twice
        # as fast as PyTorch's own at 8 samples (the grid CNN's tiny convs are the other way round)
        x = frames
        for block, p in zip(self.blocks, params, strict=True):
            x = block(x, p)
        return x.flatten(1)

    @property
    def foldable(self) -> bool:
        return all(block.foldable for block in self.blocks)

    def forward_by_game(
        self, frames: torch.Tensor, game_id: torch.Tensor, params_of: Callable[[torch.Tensor], list[torch.Tensor]]
    ) -> torch.Tensor:
        """:meth:`forward` for a training batch: the samples of each game go through convs whose
        weights carry that game's modulation (:meth:`ConditionedConv.forward_folded`).

        The result is the same up to float rounding, and the feature maps are never passed over
        for the modulation, forward or backward: a training minibatch then costs what the
        unconditioned network costs. Small batches (acting) are faster the plain way.

        :param params_of: distinct game ids ``(G, 1)`` -> every conv's parameters, ``(G, n_params)`` each.
        """
        blocks = [cast(ConditionedConv, block) for block in self.blocks]
        games, inverse = torch.unique(game_id.long().view(-1), return_inverse=True)
        folds = [block.cond.fold(p) for block, p in zip(blocks, params_of(games.view(-1, 1)), strict=True)]
        order = torch.argsort(inverse, stable=True)
        x, start, features = frames[order], 0, []
        for g, n in enumerate(torch.bincount(inverse, minlength=len(games)).tolist()):
            h = x[start : start + n]
            start += n
            for block, fold in zip(blocks, folds, strict=True):
                assert fold is not None
                h = block.forward_folded(h, fold[0][g], fold[1][g])
            features.append(h.flatten(1))
        return torch.cat(features).index_select(0, torch.argsort(order))


class ConditionedLinear(nn.Module):
    """A fully connected layer whose units the instruction modulates: ``relu(post(linear(pre(x))))``.

    The same conditionings as :class:`ConditionedConv`, on a ``(batch, features)`` layer: FiLM scales
    and shifts each unit, ``concat`` appends the instruction's projection to the layer's input.
    """

    def __init__(self, in_features: int, out_features: int, conditioning: str) -> None:
        super().__init__()
        self.cond: Conditioning = make_conditioning(conditioning, out_features)
        self.linear = nn.Linear(in_features + self.cond.extra_in_channels, out_features)

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.cond.post(self.linear(self.cond.pre(x, p)), p))


class MinAtarFiLMNet(nn.Module):
    """MinAtar's network (Young & Tian, 2019) with a conditioning layer on the conv maps and on the
    hidden layer: ``relu(FiLM(conv3x3(x)))`` per conv (unpadded, as MinAtar's), flattened, then
    ``relu(FiLM(linear(x)))``. With ``none`` it is exactly MinAtar's DQN/AC torso.

    :param in_channels: the observation's channels (the widest game's, others zero-padded).
    :param channels: widths of the 3x3 convs (MinAtar: one of 16).
    :param hidden: width of the conditioned hidden layer (MinAtar: 128); ``out_dim``.
    :param conditioning: mechanism name, the same for every layer.
    :param side: side of the square grid (MinAtar: 10).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (16,),
        hidden: int = 128,
        conditioning: str = "film",
        side: int = 10,
    ) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        convs = [ConditionedConv(widths[i], widths[i + 1], conditioning, 3, padding=0) for i in range(len(channels))]
        side -= 2 * len(channels)
        if side < 1:
            raise ValueError(f"{len(channels)} unpadded 3x3 convs shrink the grid to nothing")
        dense = ConditionedLinear(channels[-1] * side * side, hidden, conditioning)
        self.blocks = nn.ModuleList([*convs, dense])
        #: what each layer asks of the generator
        self.param_sizes = [*(conv.cond.n_params for conv in convs), dense.cond.n_params]
        self.out_dim = hidden

    def forward(self, grid: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        x = grid
        *convs, hidden = self.blocks
        for block, p in zip(convs, params[:-1], strict=True):
            x = block(x, p)
        return cast(torch.Tensor, hidden(x.flatten(1), params[-1]))
