"""AGILE's reward model: a discriminator that learns, from goal states and the policy's own
states, whether an observation satisfies an instruction.

AGILE (Bahdanau et al., ICLR 2019, "Learning to Understand Goal Specifications by Modelling
Reward") replaces the environment's reward by ``1[D(instruction, state) > threshold]``, where
``D`` is trained like a GAN discriminator: positives are (instruction, goal state) pairs from a
:class:`~film_rl.agile.goals.GoalDataset`, negatives are states the policy visited while following
the instruction. Some of those visits are in fact successes, so the ``rho`` fraction of policy
states that ``D`` finds most goal-like are left out of each batch ("anticipated negatives").

Observations travel in the policy's own format (:class:`film_rl.tasks.babyai_envs.InstructionWrapper`,
batched as a VecEnv returns them)::

    image        (B, 3, 7, 7) uint8   symbolic view, channels first
    direction    (B, 1)       int64
    instruction  (B, L)       int64   token ids padded with 0

:func:`policy_states` brings any batch of them (a VecEnv's, a rollout buffer's, a goal
dataset's via :func:`goal_states`) to exactly that, and :func:`as_tensors` is the one way
either source reaches the discriminator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn

from film_rl.agile.goals import GoalDataset
from film_rl.model.assembly import FiLMed
from film_rl.model.networks import GridFiLMCNN, InstructionEncoder, fused_adam

ObsDict = dict[str, np.ndarray]

#: the observation keys the discriminator reads, with the dtype it stores them in
STATE_DTYPES: dict[str, type] = {"image": np.uint8, "direction": np.int64, "instruction": np.int64}

#: evaluation batches are cut into chunks of this many states to bound memory
EVAL_CHUNK = 1024


def policy_states(obs: Mapping[str, ArrayLike]) -> ObsDict:
    """A batch of policy observations in the canonical layout (see the module docstring).

    Leading dimensions are flattened, so a rollout buffer's ``(n_steps, n_envs, ...)`` float32
    arrays, a VecEnv's ``(n_envs, ...)`` ones and a ``(B,)`` direction all come out the same;
    keys the discriminator does not read (``instruction_length``) are left behind.
    """
    image = np.asarray(obs["image"])
    image = image.reshape(-1, *image.shape[-3:]).astype(STATE_DTYPES["image"], copy=False)
    n = len(image)
    instruction = np.asarray(obs["instruction"])
    return {
        "image": image,
        "direction": np.asarray(obs["direction"]).reshape(n, 1).astype(np.int64, copy=False),
        "instruction": instruction.reshape(n, instruction.shape[-1]).astype(np.int64, copy=False),
    }


def goal_states(goals: GoalDataset, index: ArrayLike | None = None) -> ObsDict:
    """Rows ``index`` (all when ``None``) of a goal dataset, as the policy observed them."""
    rows = slice(None) if index is None else np.asarray(index)
    return policy_states(
        {"image": goals.images[rows], "direction": goals.directions[rows], "instruction": goals.instructions[rows]}
    )


def mismatched_goal_states(goals: GoalDataset, n: int, rng: np.random.Generator) -> ObsDict:
    """Up to ``n`` goal states, each paired with the instruction of a goal state with another mission.

    A state where the red ball is reached is not one where the blue key is: these negatives teach
    D to read the instruction. (A mission can still hold for another's state, e.g. "go to a ball"
    for the red ball's; that rare noise is accepted.) Rows whose mission is the only one are skipped.
    """
    if n <= 0 or len(goals) < 2:
        return goal_states(goals, np.zeros(0, np.int64))
    rows = _draw(rng, len(goals), n)
    others = rng.integers(0, len(goals), len(rows))
    for _ in range(8):  # redraw partners that share the mission
        same = goals.missions[rows] == goals.missions[others]
        if not same.any():
            break
        others[same] = rng.integers(0, len(goals), int(same.sum()))
    differ = goals.missions[rows] != goals.missions[others]
    states = goal_states(goals, rows[differ])
    states["instruction"] = goal_states(goals, others[differ])["instruction"]
    return states


def concat_states(parts: Sequence[ObsDict]) -> ObsDict:
    """Concatenate canonical batches; instructions are zero-padded to the widest, which the
    encoder ignores, so a goal file made with another ``max_length`` still mixes in."""
    width = max(part["instruction"].shape[1] for part in parts)
    padded = [np.pad(part["instruction"], ((0, 0), (0, width - part["instruction"].shape[1]))) for part in parts]
    return {
        "image": np.concatenate([part["image"] for part in parts]),
        "direction": np.concatenate([part["direction"] for part in parts]),
        "instruction": np.concatenate(padded),
    }


def take(states: ObsDict, index: np.ndarray | slice) -> ObsDict:
    """The rows ``index`` of a canonical batch."""
    return {key: value[index] for key, value in states.items()}


def as_tensors(states: ObsDict, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A canonical batch as the tensors :class:`Discriminator` reads, created on ``device``."""
    return {key: torch.as_tensor(states[key], device=device) for key in STATE_DTYPES}


class Discriminator(FiLMed, nn.Module):
    """``D(instruction, observation)``: the logit that the observation satisfies the instruction.

    The policy's own modules (instruction encoder, FiLM generator, FiLM-ed grid CNN) with weights
    of its own, then a small MLP to one logit; so a conditioning mechanism can be compared as a
    reward model with the same code that compares it as a policy. Defaults match
    :class:`film_rl.model.policies.InstructionFeatures`.

    :param vocab_size: number of token ids (``len(vocab)``, ``<pad>`` and ``<unk>`` included).
    :param conditioning: ``film`` | ``scale`` | ``bias`` | ``gate`` | ``concat`` | ``none``.
    :param encoder: ``gru`` | ``bigru`` | ``bow``.
    :param channels: conv block widths.
    :param embed_dim: cell embedding width.
    :param kernel_size: conv kernel size.
    :param pool: ``max`` or ``flatten``.
    :param batch_norm: BatchNorm in the conv blocks.
    :param word_dim: word embedding width.
    :param instruction_dim: instruction vector width.
    :param hidden_dim: width of the MLP head's hidden layer.
    :param device: where the weights live.
    """

    def __init__(
        self,
        vocab_size: int,
        conditioning: str = "film",
        encoder: str = "gru",
        channels: Sequence[int] = (16, 32),
        embed_dim: int = 16,
        kernel_size: int = 2,
        pool: str = "flatten",
        batch_norm: bool = False,
        word_dim: int = 32,
        instruction_dim: int = 128,
        hidden_dim: int = 128,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.assemble(
            GridFiLMCNN(tuple(channels), conditioning, embed_dim, kernel_size, pool, batch_norm),
            conditioning,
            lambda: InstructionEncoder(vocab_size, encoder, word_dim, instruction_dim),
        )
        self.head = nn.Sequential(nn.Linear(self.cnn.out_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        self.to(device)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``(B,)`` for a batch ``{image, direction, instruction}`` (other keys ignored)."""
        params = self.film_params(obs["instruction"])
        return self.head(self.cnn(obs["image"], obs["direction"], params)).squeeze(1)

    def prob(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``P(satisfied)`` ``(B,)``, without gradient and in eval mode (BatchNorm's running
        statistics), whatever mode training left the module in."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return torch.sigmoid(self(obs))
        finally:
            self.train(was_training)


def anticipated_negatives(probs: ArrayLike, rho: float) -> np.ndarray:
    """AGILE's filter on the policy's states: the indices of those kept as negatives, ascending.

    The policy sometimes does reach a goal, and labelling those states "not a goal" would teach
    ``D`` to deny the very successes it should reward. So the ``floor(rho * n)`` states that ``D``
    finds most goal-like are dropped (rounding down: a batch too small to hold a whole anticipated
    positive loses nothing). ``rho`` counts as the decimal it prints as, so ``rho=0.29`` of 100
    drops 29, not the 28 that ``floor(0.29 * 100)`` in floating point would give. Equal
    probabilities rank by position, the earlier state first, so the result is deterministic.

    :param probs: ``D``'s probability for each of the ``n`` policy states.
    :param rho: the fraction to drop, in ``[0, 1)``.
    """
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if np.isnan(probs).any():
        raise ValueError("probabilities contain NaN; the discriminator has diverged")
    n_drop = math.floor(Decimal(repr(float(rho))) * len(probs))
    ranking = np.argsort(-probs, kind="stable")  # most goal-like first, ties in index order
    return np.sort(ranking[n_drop:])


def _draw(rng: np.random.Generator, population: int, n: int) -> np.ndarray:
    """``n`` indices below ``population``, without repeats where there are enough to go round."""
    return rng.choice(population, size=n, replace=n > population)


class PolicyStateReplay:
    """The most recent states the policy visited, the reward model's negatives; oldest out first.

    Sampling from a window of past rollouts rather than the last one alone keeps ``D`` from
    chasing the current policy, as GAN discriminators trained on a history of generated samples
    do. Rows are stored in the canonical layout (see :func:`policy_states`).

    :param capacity: states kept (10 000 are about 5 MB).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._arrays: ObsDict = {}
        self._next = 0  # the row the next state goes to
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, obs: Mapping[str, ArrayLike]) -> None:
        """Append a batch of policy observations (any layout :func:`policy_states` takes)."""
        rows = policy_states(obs)
        n = len(rows["image"])
        if n == 0:
            return
        if not self._arrays:
            self._arrays = {k: np.zeros((self.capacity, *v.shape[1:]), v.dtype) for k, v in rows.items()}
        for key, value in rows.items():
            if value.shape[1:] != self._arrays[key].shape[1:]:
                raise ValueError(
                    f"policy states' {key!r} rows have shape {value.shape[1:]}, "
                    f"the replay holds {self._arrays[key].shape[1:]}"
                )
        if n > self.capacity:
            rows, n = take(rows, slice(n - self.capacity, n)), self.capacity
        at = (self._next + np.arange(n)) % self.capacity
        for key, value in rows.items():
            self._arrays[key][at] = value
        self._next = (self._next + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    def recent(self, n: int | None = None) -> ObsDict:
        """The last ``n`` states added (all when ``None``), oldest first."""
        n = self._size if n is None else min(n, self._size)
        return take(self._arrays, (self._next - n + np.arange(n)) % self.capacity) if n else {}

    def sample(self, n: int, rng: np.random.Generator) -> ObsDict:
        """``n`` states drawn uniformly, without repeats while the replay holds at least ``n``."""
        if not self._size:
            raise ValueError("the replay is empty: add policy states before sampling")
        # before the buffer wraps, rows [0, size) are the filled ones; after, all of them are
        return take(self._arrays, _draw(rng, self._size, n))

    def state_dict(self) -> dict[str, Any]:
        """The stored states oldest first, as tensors so ``torch.load(weights_only=True)`` reads them."""
        return {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in self.recent().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the contents by a :meth:`state_dict`'s (the newest ones if it holds more than fit)."""
        self._arrays, self._next, self._size = {}, 0, 0
        if state:
            self.add({key: value.cpu().numpy() for key, value in state.items()})


class RewardModelTrainer:
    """Trains a :class:`Discriminator` the AGILE way and turns it into a 0/1 reward.

    Positives come from a goal dataset, of which a fixed ``heldout_fraction`` is never trained
    on, so its accuracy measures generalisation to unseen goal states; negatives come from the
    :attr:`replay` of policy states that the training run fills.

    :param goals: goal states; must be encoded with the policy's vocabulary.
    :param model: the discriminator; a default :class:`Discriminator` over the goals' vocabulary
        when ``None``. It is moved to ``device``.
    :param lr: Adam's learning rate.
    :param rho: fraction of each batch's policy states dropped as anticipated positives
        (see :func:`anticipated_negatives`).
    :param threshold: ``D``'s probability above which a state is rewarded (and counted as a
        goal in the metrics).
    :param heldout_fraction: goal states kept out of training for ``accuracy_heldout_goals``.
    :param split_seed: seed of the held-out split (the same seed gives the same split).
    :param replay_capacity: policy states kept as negatives.
    :param metric_states: the most recent policy states ``false_positive_rate`` is measured on.
    :param mismatched: fraction of each batch's negatives that are goal states paired with
        another mission. Without them D can reward "facing any object" on GoToLocal: the policy's
        hard negatives (a wrong object, then ``done``) are exactly the states anticipated-negative
        filtering drops, so nothing else teaches D to read the instruction.
    :param device: where the model runs and batches are created.
    """

    def __init__(
        self,
        goals: GoalDataset,
        model: Discriminator | None = None,
        *,
        lr: float = 1e-3,
        rho: float = 0.25,
        threshold: float = 0.5,
        heldout_fraction: float = 0.1,
        split_seed: int = 0,
        replay_capacity: int = 10_000,
        metric_states: int = 1000,
        mismatched: float = 0.5,
        device: torch.device | str = "cpu",
    ) -> None:
        anticipated_negatives([], rho)  # reject a bad rho now, not at the first update
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be a probability in (0, 1), got {threshold}")
        self.device = torch.device(device)
        self.model = (Discriminator(len(goals.vocab)) if model is None else model).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, fused=fused_adam(self.device))
        self.model.follow(self.optimizer)
        self.train_goals, self.heldout_goals = goals.split(heldout_fraction, split_seed)
        self.replay = PolicyStateReplay(replay_capacity)
        self.rho = rho
        self.threshold = threshold
        self.metric_states = metric_states
        if not 0.0 <= mismatched <= 1.0:
            raise ValueError(f"mismatched must be a fraction in [0, 1], got {mismatched}")
        self.mismatched = mismatched
        #: gradient steps taken, across resumes
        self.steps = 0

    def update(self, n_batches: int, batch_size: int, rng: np.random.Generator) -> dict[str, float]:
        """``n_batches`` cross-entropy steps, then the metrics (keys ``reward_model/...``).

        Each batch is ``batch_size / 2`` goal states (label 1) and as many negatives (label 0):
        replayed policy states, of which the anticipated positives are masked out of the loss,
        and a ``mismatched`` fraction of goal states paired with another mission
        (:func:`mismatched_goal_states`). One
        forward pass both ranks the policy states and computes the loss: the ranking uses the
        current ``D``, as AGILE's does, without a second pass.

        Metrics: ``loss`` (mean over the batches), ``dropped_negatives`` (policy states left out
        in this update; ``floor(rho * batch_size / 2)`` a batch) and ``dropped_negatives_prob``
        (their mean probability: near 1 once the policy reaches states ``D`` takes for goals),
        then :meth:`evaluate`'s.
        """
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"batch_size must be even and at least 2, got {batch_size}")
        if not len(self.train_goals):
            raise ValueError("no goal states to train on")
        half = batch_size // 2
        n_mismatched = round(self.mismatched * half)
        n_policy = half - n_mismatched
        losses: list[float] = []
        dropped_probs: list[np.ndarray] = []
        self.model.train()
        for _ in range(n_batches):
            positives = goal_states(self.train_goals, _draw(rng, len(self.train_goals), half))
            negatives = self.replay.sample(n_policy, rng)
            mismatched = mismatched_goal_states(self.train_goals, n_mismatched, rng)
            logits = self.model(as_tensors(concat_states([positives, negatives, mismatched]), self.device))
            probs = torch.sigmoid(logits[half : half + n_policy].detach()).cpu().numpy()
            kept = anticipated_negatives(probs, self.rho)
            dropped_probs.append(np.delete(probs, kept))
            used = torch.cat(
                [
                    torch.arange(half),
                    half + torch.as_tensor(kept, dtype=torch.long),
                    torch.arange(half + n_policy, len(logits)),
                ]
            ).to(self.device)
            labels = (used < half).to(logits.dtype)
            loss = F.binary_cross_entropy_with_logits(logits[used], labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
            self.steps += 1
        dropped = np.concatenate(dropped_probs) if dropped_probs else np.zeros(0)
        return {
            "reward_model/loss": float(np.mean(losses)) if losses else math.nan,
            **self.evaluate(),
            "reward_model/dropped_negatives": float(len(dropped)),
            "reward_model/dropped_negatives_prob": float(dropped.mean()) if len(dropped) else math.nan,
        }

    def evaluate(self) -> dict[str, float]:
        """How ``D`` thresholds the held-out goal states and the most recent policy states.

        ``false_positive_rate`` is an upper bound: the policy states it counts as wrongly
        rewarded include the goals the policy genuinely reached.
        """
        recent = self.replay.recent(self.metric_states)
        return {
            "reward_model/accuracy_heldout_goals": self._rewarded_fraction(goal_states(self.heldout_goals)),
            "reward_model/false_positive_rate": self._rewarded_fraction(recent) if recent else math.nan,
            "reward_model/replay_states": float(len(self.replay)),
            "reward_model/steps": float(self.steps),
        }

    def _rewarded_fraction(self, states: ObsDict) -> float:
        return float(self.reward(states).mean()) if len(states["image"]) else math.nan

    def probs(self, obs: Mapping[str, ArrayLike]) -> np.ndarray:
        """``D``'s probability for each observation of a batch (any layout :func:`policy_states` takes)."""
        states = policy_states(obs)
        n = len(states["image"])
        chunks = [
            self.model.prob(as_tensors(take(states, slice(i, i + EVAL_CHUNK)), self.device)).cpu().numpy()
            for i in range(0, n, EVAL_CHUNK)
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def reward(self, obs: Mapping[str, ArrayLike]) -> np.ndarray:
        """AGILE's reward, ``1[D > threshold]`` per observation, as float32 0/1."""
        return (self.probs(obs) > self.threshold).astype(np.float32)

    def state_dict(self, include_replay: bool = True) -> dict[str, Any]:
        """Model, optimizer, step count and (optionally) the replay; all tensors, so a run
        saves it with ``torch.save`` and reads it back with ``torch.load(weights_only=True)``.

        Settings (``rho``, ``threshold``, the split) belong to the run's config, not here.
        """
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
        }
        if include_replay:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; a state saved without its replay leaves the current one."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
