"""SB3 glue: the FiLM-ed networks as features extractors, and the two policy classes.

``FilmCnnPolicy`` trains with ``stable_baselines3.PPO``, ``FilmLstmPolicy`` with
``sb3_contrib.RecurrentPPO``; a saved model loads back with plain ``PPO.load`` /
``RecurrentPPO.load`` because both classes live in an importable module.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from film_rl.model.assembly import FiLMed
from film_rl.model.networks import (
    SMALL_BATCH,
    GameEncoder,
    GridFiLMCNN,
    InstructionEncoder,
    MinAtarFiLMNet,
    NatureFiLMCNN,
    native_cpu_kernels,
)


def rms(features: torch.Tensor) -> torch.Tensor:
    """The root mean square over the last dimension, kept: the scale at which to add to features
    that grow as the network trains."""
    return features.pow(2).mean(dim=-1, keepdim=True).sqrt()


class InstructionFeatures(FiLMed, BaseFeaturesExtractor):
    """Dict observation ``{image, direction, instruction, ...}`` -> features, via a FiLM-ed CNN.

    Where the observation holds the action taken last (``previous_action``:
    :class:`film_rl.tasks.babyai_envs.PreviousAction`), a learned vector per action is added to the
    features, times their root mean square: the features grow as the network trains (a norm of ~4
    when drawn, ~800 after 20M GoTo frames), and a vector of fixed scale would soon weigh nothing
    beside them. It starts at zero (an embedding, which SB3's orthogonal init leaves alone), so
    the network starts as the one without it and a memoryless run's weights fit it.

    :param observation_space: the :class:`film_rl.tasks.babyai_envs.InstructionWrapper` space.
    :param conditioning: ``film`` | ``scale`` | ``bias`` | ``gate`` | ``concat`` | ``none``.
    :param encoder: ``gru`` | ``bigru`` | ``bow``.
    :param channels: conv block widths.
    :param embed_dim: cell embedding width.
    :param kernel_size: conv kernel size.
    :param word_dim: word embedding width.
    :param instruction_dim: instruction vector width.
    :param pool: ``max`` or ``flatten``.
    :param batch_norm: BatchNorm in the conv blocks.
    :param features_dim: output width.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        conditioning: str = "film",
        encoder: str = "gru",
        channels: tuple[int, ...] | list[int] = (16, 32),
        embed_dim: int = 16,
        kernel_size: int = 2,
        word_dim: int = 32,
        instruction_dim: int = 128,
        pool: str = "flatten",
        batch_norm: bool = False,
        features_dim: int = 128,
    ) -> None:
        super().__init__(observation_space, features_dim)
        vocab_size = int(observation_space["instruction"].high.max()) + 1  # type: ignore[attr-defined]
        view_size = int(observation_space["image"].shape[-1])  # type: ignore[index]  # (3, V, V): minigrid's agent_view_size
        self.assemble(
            GridFiLMCNN(channels, conditioning, embed_dim, kernel_size, pool, batch_norm, view_size),
            conditioning,
            lambda: InstructionEncoder(vocab_size, encoder, word_dim, instruction_dim),
        )
        self.linear = nn.Sequential(nn.Linear(self.cnn.out_dim, features_dim), nn.ReLU())
        self.previous_action: nn.Embedding | None = None
        if "previous_action" in observation_space.spaces:
            n_actions = int(observation_space["previous_action"].high.max()) + 1  # type: ignore[attr-defined]  # + none
            self.previous_action = nn.Embedding(n_actions, features_dim)
            nn.init.zeros_(self.previous_action.weight)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        params = self.film_params(observations["instruction"])
        features = self.linear(self.cnn(observations["image"], observations["direction"], params))
        if self.previous_action is not None:
            previous = self.previous_action(observations["previous_action"].long().view(-1))
            features = features + rms(features) * previous
        return features  # type: ignore[no-any-return]


#: training batches take the per-game folded convs when they hold at least this many samples per game
FOLD_MIN_PER_GAME = 16


class GameFeatures(FiLMed, BaseFeaturesExtractor):
    """Dict observation ``{image, game_id}`` -> features, via the FiLM-ed Nature CNN (multi-game Atari).

    The game id is the instruction: a learned embedding of it is the FiLM generator's input, so
    every conv of one shared network gets game-specific gains and biases (Kirkpatrick et al.,
    2017). Give the policy ``normalize_images=True`` so frames arrive in [0, 1], as SB3's
    ``CnnPolicy`` sees them.

    :param observation_space: the :class:`film_rl.tasks.atari_envs.MultiGameAtariEnv` space; ``game_id``'s
        upper bound sets the number of games.
    :param conditioning: ``film`` | ``scale`` | ``bias`` | ``gate`` | ``concat`` | ``none``.
    :param channels: widths of the three Nature convs.
    :param instruction_dim: game embedding width.
    :param features_dim: output width (Nature: 512).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        conditioning: str = "film",
        channels: tuple[int, ...] | list[int] = (32, 64, 64),
        instruction_dim: int = 64,
        features_dim: int = 512,
    ) -> None:
        super().__init__(observation_space, features_dim)
        frames, side, _ = observation_space["image"].shape  # type: ignore[misc]
        n_games = int(observation_space["game_id"].high.max()) + 1  # type: ignore[attr-defined]
        cnn = NatureFiLMCNN(frames, channels, conditioning, side)
        self.assemble(cnn, conditioning, lambda: GameEncoder(n_games, instruction_dim))
        self.linear = nn.Sequential(nn.Linear(self.cnn.out_dim, features_dim), nn.ReLU())
        self.foldable = cnn.foldable

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        image, game_id = observations["image"], observations["game_id"]
        if self.generator is not None and self.foldable and torch.is_grad_enabled():
            # training: each game's modulation goes into the conv weights (same result, cheaper)
            games = int(torch.unique(game_id).numel())
            if image.shape[0] >= FOLD_MIN_PER_GAME * games:
                return self.linear(self.cnn.forward_by_game(image, game_id, self.film_params))  # type: ignore[attr-defined]
        return self.linear(self.cnn(image, self.film_params(game_id)))


class MinAtarFeatures(FiLMed, BaseFeaturesExtractor):
    """Dict observation ``{image, game_id}`` -> features, via MinAtar's network with every layer
    conditioned on the game id (:class:`film_rl.model.networks.MinAtarFiLMNet`).

    The conditioned hidden layer is the features: the actor and critic heads read it directly, as
    MinAtar's own networks do. Cells are 0/1 already: give the policy ``normalize_images=False``.

    :param observation_space: the :class:`film_rl.tasks.minatar_envs.MultiGameMinAtarEnv` space.
    :param conditioning: ``film`` | ``scale`` | ``bias`` | ``gate`` | ``concat`` | ``none``.
    :param channels: widths of the 3x3 convs (MinAtar: 16).
    :param instruction_dim: game embedding width.
    :param features_dim: width of the conditioned hidden layer (MinAtar: 128).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        conditioning: str = "film",
        channels: tuple[int, ...] | list[int] = (16,),
        instruction_dim: int = 16,
        features_dim: int = 128,
    ) -> None:
        super().__init__(observation_space, features_dim)
        in_channels, side, _ = observation_space["image"].shape  # type: ignore[misc]
        n_games = int(observation_space["game_id"].high.max()) + 1  # type: ignore[attr-defined]
        net = MinAtarFiLMNet(in_channels, channels, features_dim, conditioning, side)
        self.assemble(net, conditioning, lambda: GameEncoder(n_games, instruction_dim))

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return self.cnn(observations["image"], self.film_params(observations["game_id"]))


class _FilmPolicyMixin:
    """What both FiLM policies add to their SB3 base: the FiLM extractor by default, raw symbolic
    cells (ids, not pixels, so no division by 255), and FiLM layers that start as identities.

    Atari runs pass ``features_extractor_class=GameFeatures`` and ``normalize_images=True``."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        **kwargs: Any,
    ):
        kwargs.setdefault("features_extractor_class", InstructionFeatures)
        kwargs.setdefault("normalize_images", False)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)  # type: ignore[call-arg]
        # Only now is there an optimizer that trains: sb3-contrib's recurrent policy replaces the
        # one ``_build`` made once its LSTMs exist.
        self._follow_optimizer()

    def _follow_optimizer(self) -> None:
        """Let the FiLM acting cache hear the steps of the optimizer that trains, or the policy
        would act on the FiLM parameters of the first rollout for the whole run; whatever replaces
        ``self.optimizer`` calls this again."""
        for extractor in self._film_extractors():
            extractor.follow(self.optimizer)  # type: ignore[attr-defined]

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        for extractor in self._film_extractors():
            extractor.reset_film_head()

    def _film_extractors(self) -> list[Any]:
        """The actor's FiLM network, and the critic's where it has its own
        (``share_features_extractor=False``)."""
        actor, critic = self.pi_features_extractor, self.vf_features_extractor  # type: ignore[attr-defined]
        return [actor] if critic is actor else [actor, critic]


class FilmCnnPolicy(_FilmPolicyMixin, ActorCriticPolicy):
    """Feed-forward actor-critic over :class:`InstructionFeatures`, for ``PPO``."""


T = TypeVar("T", bound=nn.LSTM)


def _shaped_like(cls: type[T], lstm: nn.LSTM, **kwargs: Any) -> T:
    """A ``cls`` LSTM of ``lstm``'s shape, with its weights (so its seed's draw is kept)."""
    made = cls(lstm.input_size, lstm.hidden_size, num_layers=lstm.num_layers, bias=lstm.bias, **kwargs)
    made.load_state_dict(lstm.state_dict(), strict=False)
    return made.to(next(lstm.parameters()).device)


class NormedLSTM(nn.LSTM):
    """An LSTM that reads its input through a LayerNorm.

    A FiLM network's features grow as it trains: a GoTo CNN's from a norm of ~4 when drawn to ~800
    at 20M frames. An LSTM reading them raw has nearly every gate saturated (docs/results.md), so
    almost no gradient reaches its memory; normalized, its input keeps one scale however long the
    features trained.
    """

    def __init__(self, input_size: int, hidden_size: int, **kwargs: Any) -> None:
        super().__init__(input_size, hidden_size, **kwargs)
        self.norm = nn.LayerNorm(input_size)

    @classmethod
    def like(cls, lstm: nn.LSTM) -> NormedLSTM:
        return _shaped_like(cls, lstm)

    def forward(  # type: ignore[override]
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        return super().forward(self.norm(input), hx)  # type: ignore[no-any-return]


class ResidualLSTM(nn.LSTM):
    """An LSTM whose output is its input plus a projection of its hidden state, the projection
    starting at zero: a policy whose heads read it starts as its memoryless self (the heads read
    the features) and memory can only add what it earns.

    The output has the input's width, whatever the hidden width. ``norm``: the LSTM reads its
    input through a LayerNorm, as :class:`NormedLSTM` does. ``scale``: the projection is multiplied
    by the input's root mean square, so that memory writes at the features' scale: added as it is,
    a projection drawn at zero must grow its weights with the features (a norm of ~4 when drawn,
    ~800 after 20M GoTo frames) to weigh anything beside them, and at Adam's steps it barely does
    (docs/results.md). With both, the output is the input's scale times a function of its direction.
    """

    def __init__(
        self, input_size: int, hidden_size: int, norm: bool = False, scale: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(input_size, hidden_size, **kwargs)
        self.norm = nn.LayerNorm(input_size) if norm else None  # none: the weights of runs saved before it
        self.scale = scale  # no weights of its own: a run saved without it starts one with it
        self.out = nn.Linear(hidden_size, input_size)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @classmethod
    def like(cls, lstm: nn.LSTM, norm: bool = False, scale: bool = False) -> ResidualLSTM:
        return _shaped_like(cls, lstm, norm=norm, scale=scale)

    def forward(  # type: ignore[override]
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        output, states = super().forward(input if self.norm is None else self.norm(input), hx)
        written = self.out(output)
        return input + (rms(input) * written if self.scale else written), states


class FilmLstmPolicy(_FilmPolicyMixin, RecurrentActorCriticPolicy):
    """:class:`InstructionFeatures` followed by an LSTM memory, for ``sb3_contrib.RecurrentPPO``.

    ``memory="stack"`` (sb3-contrib's): the heads read the LSTM's output. ``"residual"``: they read
    :class:`ResidualLSTM`'s, the features plus what memory adds, so a memoryless policy's heads and
    FiLM network fit it as they are and it starts as that policy. ``memory_norm``: the LSTMs read
    the features through a LayerNorm (:class:`NormedLSTM`). ``memory_scale`` (residual only): what
    memory adds is scaled by the features' root mean square (:class:`ResidualLSTM`).

    Its sequence pass runs the LSTM once over every padded sequence where sb3-contrib steps it in a
    Python loop: see :meth:`_process_sequence`.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        memory: str = "stack",
        memory_norm: bool = False,
        memory_scale: bool = False,
        **kwargs: Any,
    ):
        if memory not in ("stack", "residual"):
            raise ValueError(f"memory must be 'stack' or 'residual', got {memory!r}")
        if memory_scale and memory != "residual":
            raise ValueError("memory_scale scales what a residual memory adds: it needs memory='residual'")
        self.memory = memory  # read by _build_mlp_extractor, inside the base's __init__
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        if memory == "residual" or memory_norm:

            def made(lstm: nn.LSTM) -> nn.LSTM:
                if memory == "residual":
                    return ResidualLSTM.like(lstm, norm=memory_norm, scale=memory_scale)
                return NormedLSTM.like(lstm)

            self.lstm_actor = made(self.lstm_actor)
            if self.lstm_critic is not None:
                self.lstm_critic = made(self.lstm_critic)
            # sb3-contrib built its optimizer over the LSTMs just replaced
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
            self._follow_optimizer()

    def _build_mlp_extractor(self) -> None:
        if self.memory == "residual":
            self.lstm_output_dim = self.features_dim
        super()._build_mlp_extractor()

    def extract_features(  # type: ignore[override]
        self, obs: dict[str, torch.Tensor], features_extractor: BaseFeaturesExtractor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Features of the real rows only; padding rows get zeros.

        RecurrentPPO pads each minibatch's sequences to the longest one, which doubles the rows on
        BabyAI levels; the loss masks padding out, so its features need not be computed. Padding
        rows are the ones with ``instruction_length == 0`` (a real mission has words). Observations
        without that key (Atari's ``{image, game_id}``) take sb3-contrib's path: every row.
        """
        length = obs.get("instruction_length") if isinstance(obs, dict) else None
        real = None if length is None else length.reshape(-1) > 0
        if real is None or bool(real.all()):
            return super().extract_features(obs, features_extractor)  # type: ignore[misc,no-any-return]
        kept = super().extract_features({k: v[real] for k, v in obs.items()}, features_extractor)  # type: ignore[misc]

        def spread(features: torch.Tensor) -> torch.Tensor:
            out = features.new_zeros(real.shape[0], features.shape[1])
            out[real] = features
            return out

        return tuple(spread(f) for f in kept) if isinstance(kept, tuple) else spread(kept)  # type: ignore[return-value]

    @staticmethod
    def _process_sequence(
        features: torch.Tensor,
        lstm_states: tuple[torch.Tensor, torch.Tensor],
        episode_starts: torch.Tensor,
        lstm: nn.LSTM,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sb3-contrib's sequence pass, with one fused LSTM call when episodes start only at t = 0.

        RecurrentPPO cuts its rollout into sequences at every episode start, so in training an
        episode can start only at a sequence's first step; padding follows the last step. Zeroing
        those sequences' initial states and running the whole padded batch at once is then exactly
        what sb3-contrib's step-by-step loop computes. Acting is the one-step case. Any other
        pattern takes that loop.
        """
        n_seq = lstm_states[0].shape[1]
        starts = episode_starts.reshape((n_seq, -1)).swapaxes(0, 1)
        if bool(torch.any(starts[1:] != 0)):
            return RecurrentActorCriticPolicy._process_sequence(features, lstm_states, episode_starts, lstm)
        keep = (1.0 - starts[0]).view(1, n_seq, 1)
        sequence = features.reshape((n_seq, -1, lstm.input_size)).swapaxes(0, 1)
        with native_cpu_kernels(features.shape[0] <= SMALL_BATCH and features.device.type == "cpu"):
            output, states = lstm(sequence, (keep * lstm_states[0], keep * lstm_states[1]))
        return torch.flatten(output.transpose(0, 1), start_dim=0, end_dim=1), states
