"""RecurrentPPO's rollout cut into sequences of at most N steps: truncated backpropagation through
time (BabyAI's ``recurrence``).

sb3-contrib cuts its rollout into sequences only at episode starts, so the LSTM's gradient runs
back through up to ``n_steps`` steps, and every minibatch is padded to its longest sequence. On a
level whose episodes last hundreds of steps (GoTo: up to 576) that is one long chain per episode.
Here a sequence also starts every ``sequence_length`` steps of each env's rollout. The LSTM state it
starts from is the one the buffer stored at that step while the rollout was played: what the memory
held then, computed by the weights of that time; the gradient stops there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize


def cut_flags(sequence_length: int, n_steps: int, n_envs: int) -> np.ndarray:
    """One flag per row of the rollout, in the buffer's env-major order: every
    ``sequence_length``-th step of each env's rollout.

    sb3-contrib's ``_get_samples`` starts a sequence wherever an episode starts or the env changes.
    These flags join the env changes, which start a sequence and nothing else: the LSTM state is
    not reset there, as it is at an episode start, but taken from the buffer.
    """
    steps = np.zeros((n_steps, n_envs), dtype=np.float32)
    steps[::sequence_length] = 1.0
    return RecurrentRolloutBuffer.swap_and_flatten(steps)  # (n_steps, n_envs) -> env-major rows


class _CutSequences:
    """The cut, placed before either of sb3-contrib's recurrent buffers (array or dict
    observations), whose ``_get_samples`` it hands the flags to."""

    sequence_length: int
    cuts: np.ndarray
    buffer_size: int
    n_envs: int

    def cut_every(self, sequence_length: int) -> None:
        """Start a sequence every ``sequence_length`` steps; the flags are the same for every
        rollout this buffer holds, so they are computed once."""
        self.sequence_length = sequence_length
        self.cuts = cut_flags(sequence_length, self.buffer_size, self.n_envs)

    def _get_samples(self, batch_inds: np.ndarray, env_change: np.ndarray, env: VecNormalize | None = None) -> Any:
        cut = np.logical_or(env_change, self.cuts).astype(np.float32)
        return super()._get_samples(batch_inds, cut, env)  # type: ignore[misc]


# sb3-contrib's _get_samples takes env_change where SB3's does not: mypy flags the base classes
class CutRolloutBuffer(_CutSequences, RecurrentRolloutBuffer):  # type: ignore[misc]
    """sb3-contrib's buffer for array observations, cut every ``sequence_length`` steps."""


class CutDictRolloutBuffer(_CutSequences, RecurrentDictRolloutBuffer):  # type: ignore[misc]
    """sb3-contrib's buffer for dict observations (BabyAI's, Atari's), cut every ``sequence_length`` steps."""


def cut_sequences(model: BaseAlgorithm, sequence_length: int | None) -> None:
    """Give a RecurrentPPO ``model`` a rollout buffer whose sequences are at most
    ``sequence_length`` steps long (None: sb3-contrib's, cut at episode starts only; PPO has no
    sequences). The buffer is not saved with the model, so a loaded model gets its cut again
    from its config."""
    if sequence_length is None or not isinstance(model, RecurrentPPO):
        return
    old = model.rollout_buffer
    assert isinstance(old, (RecurrentRolloutBuffer, RecurrentDictRolloutBuffer))  # RecurrentPPO's own
    cls = CutDictRolloutBuffer if isinstance(old, RecurrentDictRolloutBuffer) else CutRolloutBuffer
    buffer = cls(
        old.buffer_size,
        old.observation_space,
        old.action_space,
        old.hidden_state_shape,
        old.device,
        gae_lambda=old.gae_lambda,
        gamma=old.gamma,
        n_envs=old.n_envs,
    )
    buffer.cut_every(sequence_length)
    model.rollout_buffer = buffer
