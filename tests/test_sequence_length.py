"""``agent.algorithm.sequence_length``: RecurrentPPO trained on sequences of at most N steps, each
started from the LSTM state its rollout stored (truncated backpropagation through time)."""

import copy

import numpy as np
import pytest
import torch
from conftest import TINY, only_run_dir, run_cli
from gymnasium import spaces
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.utils import obs_as_tensor

from film_rl.bench import bench_config, film_model
from film_rl.run import train as training
from film_rl.run.sequences import CutDictRolloutBuffer, CutRolloutBuffer

N_STEPS = 96  # GoToLocal's episodes last up to 64 steps: every env's rollout holds an episode start


def _played(sequence_length: int | None, memory: str = "stack"):
    """A film-lstm model on GoToLocal that has played one rollout and not learnt from it."""
    overrides = [
        f"agent.algorithm.n_steps={N_STEPS}",
        "env.n_envs=3",
        "env.vec_env=dummy",
        "agent.lstm_hidden=16",
        f"agent.memory={memory}",
    ]
    if sequence_length is not None:
        overrides.append(f"agent.algorithm.sequence_length={sequence_length}")
    model = film_model(bench_config("BabyAI-GoToLocal-v0", "film-lstm", overrides), "cpu")
    _, callback = model._setup_learn(N_STEPS * 3, callback=None)
    callback.on_training_start(locals(), globals())
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, N_STEPS)
    return model


def _replayed(model, batch_size: int):
    """Each minibatch's sequences, their longest length, and the log-probabilities the policy
    gives the rollout's actions again, beside the ones it played them with (real rows only)."""
    lengths, replayed, played = [], [], []
    with torch.no_grad():
        for batch in model.rollout_buffer.get(batch_size):
            n_seq = batch.lstm_states.pi[0].shape[1]
            mask = batch.mask.reshape(n_seq, -1) > 0
            lengths.extend(mask.sum(dim=1).tolist())
            _, log_prob, _ = model.policy.evaluate_actions(
                batch.observations, batch.actions.flatten(), batch.lstm_states, batch.episode_starts
            )
            replayed.append(log_prob[batch.mask > 0])
            played.append(batch.old_log_prob[batch.mask > 0])
    return lengths, torch.cat(replayed), torch.cat(played)


@pytest.mark.parametrize("sequence_length", [None, 8, 13])
def test_cut_sequences_replay_the_rollout_from_the_states_it_stored(sequence_length):
    """Every sequence is at most ``sequence_length`` steps, and training sees what acting saw: the
    policy gives each action the probability it was played with, because a sequence cut inside an
    episode starts from the LSTM state stored there, not from zeros (sb3-contrib's episode start)."""
    model = _played(sequence_length)
    if sequence_length is not None:
        assert isinstance(model.rollout_buffer, CutDictRolloutBuffer)
    lengths, replayed, played = _replayed(model, batch_size=64)
    assert sum(lengths) == N_STEPS * 3
    assert max(lengths) <= (sequence_length or N_STEPS)
    if sequence_length is not None:  # cut: each env's rollout is at least ceil(96 / L) sequences
        assert len(lengths) >= 3 * -(-N_STEPS // sequence_length)
    torch.testing.assert_close(replayed, played, atol=1e-5, rtol=1e-4)


def test_a_cut_that_reset_the_memory_would_replay_other_probabilities():
    """The replay above can fail: starting the cut sequences from zeros, as at an episode start,
    gives a drawn LSTM's actions other probabilities."""
    model = _played(8)
    buffer = model.rollout_buffer
    buffer.get(None)  # arrange the buffer's rows env-major, as sampling reads them
    buffer.hidden_states_pi[:] = 0.0
    buffer.cell_states_pi[:] = 0.0
    _, replayed, played = _replayed(model, batch_size=64)
    assert (replayed - played).abs().max() > 1e-3


def test_a_sequence_length_of_the_whole_rollout_samples_as_sb3_contrib_does():
    """``sequence_length >= n_steps`` cuts nowhere but where sb3-contrib already does: the same
    minibatches, field for field, as its own buffer holding the same rollout."""
    model = _played(N_STEPS)
    cut = model.rollout_buffer
    plain = RecurrentDictRolloutBuffer.__new__(RecurrentDictRolloutBuffer)
    plain.__dict__.update(copy.deepcopy(cut.__dict__))
    np.random.seed(0)
    ours = list(cut.get(64))
    np.random.seed(0)
    theirs = list(plain.get(64))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        for name in ("actions", "old_values", "old_log_prob", "advantages", "returns", "episode_starts", "mask"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)
        for key in a.observations:
            torch.testing.assert_close(a.observations[key], b.observations[key], rtol=0, atol=0)
        for x, y in zip((*a.lstm_states.pi, *a.lstm_states.vf), (*b.lstm_states.pi, *b.lstm_states.vf), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_the_cut_is_kept_when_a_run_resumes(tmp_path, monkeypatch):
    """The rollout buffer is not saved with the model: a resumed run cuts its sequences again,
    at its config's length."""
    done = run_cli(
        "train", "experiments/quickstart.yaml", "agent=film-lstm", "agent.algorithm.sequence_length=4",
        f"runs_dir={tmp_path}", *TINY,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = only_run_dir(tmp_path)
    resumed = {}
    monkeypatch.setattr(training, "_learn", lambda model, *args, **kwargs: resumed.setdefault("model", model))
    training.resume(run, ["budget.timesteps=512"])
    buffer = resumed["model"].rollout_buffer
    assert isinstance(buffer, CutDictRolloutBuffer) and buffer.sequence_length == 4
    refused = run_cli("train", "--resume", str(run), "agent.algorithm.sequence_length=8")
    assert refused.returncode == 2
    assert "cannot change 'agent.algorithm.sequence_length' when resuming" in refused.stderr


@pytest.mark.parametrize(
    "override,message",
    [
        ("agent.algorithm.sequence_length=16", "agent.algorithm.sequence_length=16 is for policy: lstm"),
        ("agent.algorithm.sequence_length=0", "agent.algorithm.sequence_length must be in [1, 1e+06], got 0"),
    ],
)
def test_a_sequence_length_the_run_cannot_use_is_one_line_and_exit_status_2(tmp_path, override, message):
    agent = "agent=film-cnn" if "16" in override else "agent=film-lstm"
    refused = run_cli("train", "experiments/quickstart.yaml", agent, override, f"runs_dir={tmp_path}", *TINY)
    assert refused.returncode == 2
    assert len(refused.stderr.splitlines()) == 1 and message in refused.stderr
    assert not any(tmp_path.iterdir())


def test_a_cut_minibatch_holds_the_same_rows():
    """The cut changes where sequences start, never which rows are sampled: every row of the
    rollout once per epoch, padding aside."""
    model = _played(8)
    sampled = torch.cat([batch.observations["image"][batch.mask > 0] for batch in model.rollout_buffer.get(64)])
    played = obs_as_tensor(model.rollout_buffer.observations, "cpu")["image"]
    rows = sorted(map(tuple, sampled.flatten(start_dim=1).tolist()))
    assert rows == sorted(map(tuple, played.flatten(start_dim=1).tolist()))


def test_the_buffer_for_array_observations_cuts_too():
    """The same cut for sb3-contrib's other buffer (observations that are one array): each of two
    envs' 16 steps, one episode long, in sequences of at most 5 steps."""
    buffer = CutRolloutBuffer(16, spaces.Box(0, 1, (3,)), spaces.Discrete(2), (16, 1, 2, 4), "cpu", n_envs=2)
    buffer.cut_every(5)
    zeros = torch.zeros(1, 2, 4)
    states = RNNStates((zeros, zeros), (zeros, zeros))
    for t in range(16):
        start = np.full(2, t == 0, dtype=np.float32)
        buffer.add(
            np.zeros((2, 3)), np.zeros((2, 1)), np.zeros(2), start, torch.zeros(2), torch.zeros(2), lstm_states=states
        )
    buffer.compute_returns_and_advantage(last_values=torch.zeros(2), dones=np.zeros(2))
    (batch,) = buffer.get(None)
    n_seq = batch.lstm_states.pi[0].shape[1]
    lengths = (batch.mask.reshape(n_seq, -1) > 0).sum(dim=1).tolist()
    assert sum(lengths) == 32 and max(lengths) <= 5 and len(lengths) >= 2 * 4
