"""AGILE's reward model: the discriminator, the anticipated-negatives filter, the replay, the trainer."""

import io

import numpy as np
import pytest
import torch

from film_rl.agile.goals import GoalDataset, make_goals
from film_rl.agile.reward_model import (
    Discriminator,
    PolicyStateReplay,
    RewardModelTrainer,
    anticipated_negatives,
    as_tensors,
    concat_states,
    goal_states,
    mismatched_goal_states,
    policy_states,
)
from film_rl.model.conditioning import CONDITIONINGS
from film_rl.tasks.babyai_envs import make_vec_env
from film_rl.tasks.instructions import Vocabulary

LEVEL = "BabyAI-GoToRedBallGrey-v0"
VOCAB = Vocabulary.babyai()


def start_states(seed: int, rounds: int, n_envs: int = 8) -> dict[str, np.ndarray]:
    """Observations right after reset, through the training run's VecEnv: the policy's view of
    states where nothing has been done yet (a red ball straight ahead at the start is rare)."""
    venv = make_vec_env([LEVEL], VOCAB, n_envs, seed=seed)
    batches = []
    for k in range(rounds):
        venv.seed(seed + k * n_envs)
        batches.append(venv.reset())
    venv.close()
    return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: on a busy machine a second torch thread only waits for the first
    (the learning test takes ~40 s with two threads on two busy cores, ~2 s with one)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def goals() -> GoalDataset:
    return make_goals([LEVEL], 60, seed=0, vocab=VOCAB)


@pytest.fixture(scope="module")
def starts() -> dict[str, np.ndarray]:
    return start_states(10_000, 25)


def small_trainer(goals: GoalDataset, seed: int = 0, **kwargs) -> RewardModelTrainer:
    torch.manual_seed(seed)
    model = Discriminator(len(VOCAB), channels=(8, 16), instruction_dim=32, word_dim=16, hidden_dim=32)
    return RewardModelTrainer(goals, model, heldout_fraction=0.25, **kwargs)


def test_discriminator_tells_goal_states_from_start_states(goals, starts):
    """Trained on 45 goal states and 200 start states, D rewards unseen goals and not fresh starts.

    Checked on seeds 0-5: held-out accuracy 1.0 and false positives <= 0.02 on every one; an
    untrained D (a near-constant output) rewards everything or nothing, and fails one of the two.
    """
    torch.manual_seed(0)
    trainer = RewardModelTrainer(goals, heldout_fraction=0.25, mismatched=0.0)  # AGILE as published
    trainer.replay.add(starts)
    fresh = start_states(20_000, 13)
    before = trainer.evaluate()["reward_model/accuracy_heldout_goals"], float(trainer.reward(fresh).mean())
    metrics = trainer.update(200, 32, np.random.default_rng(0))
    after = metrics["reward_model/accuracy_heldout_goals"], float(trainer.reward(fresh).mean())

    def passes(accuracy_and_fpr: tuple[float, float]) -> bool:
        accuracy, false_positives = accuracy_and_fpr
        return accuracy > 0.8 and false_positives < 0.2

    assert passes(after), after
    assert not passes(before), before
    assert metrics["reward_model/false_positive_rate"] < 0.2  # on the replayed starts it trained on
    assert metrics["reward_model/loss"] < 0.4
    assert metrics["reward_model/dropped_negatives"] == 200 * 4  # floor(0.25 * 16) per batch
    assert 0.0 <= metrics["reward_model/dropped_negatives_prob"] <= 1.0
    assert metrics["reward_model/steps"] == 200 and metrics["reward_model/replay_states"] == 200
    assert len(trainer.heldout_goals) == 15 and len(trainer.train_goals) == 45


def test_anticipated_negatives_drops_the_most_goal_like():
    probs = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2])  # ranking: 1, 5, 3, 2, 4, 6, 0
    assert anticipated_negatives(probs, 0.0).tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert anticipated_negatives(probs, 0.25).tolist() == [0, 2, 3, 4, 5, 6]  # floor(1.75) = 1
    assert anticipated_negatives(probs, 0.5).tolist() == [0, 2, 4, 6]  # floor(3.5) = 3
    assert anticipated_negatives(probs[:3], 0.25).tolist() == [0, 1, 2]  # floor(0.75) = 0
    assert anticipated_negatives(torch.tensor(probs), 0.25).tolist() == [0, 2, 3, 4, 5, 6]
    assert anticipated_negatives([], 0.25).tolist() == []


def test_anticipated_negatives_ties_and_rounding():
    # equal probabilities: the earlier state ranks first, so it is the one dropped
    assert anticipated_negatives([0.5, 0.9, 0.5, 0.5, 0.1], 0.4).tolist() == [2, 3, 4]
    assert anticipated_negatives([0.5] * 8, 0.25).tolist() == [2, 3, 4, 5, 6, 7]
    # rho is the decimal it prints as: 0.29 of 100 drops 29 (floating point says 28.999...)
    assert len(anticipated_negatives(np.linspace(0, 1, 100), 0.29)) == 71
    assert len(anticipated_negatives(np.linspace(0, 1, 10), 0.3)) == 7


@pytest.mark.parametrize("rho", [-0.1, 1.0, 1.5, float("nan")])
def test_anticipated_negatives_rejects_rho_outside_the_unit_interval(rho):
    with pytest.raises(ValueError, match="rho"):
        anticipated_negatives([0.1, 0.2], rho)


def test_anticipated_negatives_rejects_nan_probabilities():
    with pytest.raises(ValueError, match="NaN"):
        anticipated_negatives([0.1, float("nan")], 0.25)


def numbered(first: int, n: int, width: int = 6) -> dict[str, np.ndarray]:
    """``n`` fake policy states whose every cell is their number, ``first`` onwards."""
    ids = np.arange(first, first + n)
    return {
        "image": np.broadcast_to(ids[:, None, None, None], (n, 3, 7, 7)).astype(np.uint8),
        "direction": ids % 4,  # (n,): stored as (n, 1)
        "instruction": np.tile(ids[:, None], (1, width)),
    }


def test_replay_is_bounded_and_fifo():
    replay = PolicyStateReplay(capacity=5)
    replay.add(numbered(0, 3))
    replay.add(numbered(3, 4))
    assert len(replay) == 5
    assert replay.recent()["image"][:, 0, 0, 0].tolist() == [2, 3, 4, 5, 6]  # 0 and 1 went first
    assert replay.recent(2)["instruction"][:, 0].tolist() == [5, 6]
    assert replay.recent()["direction"].shape == (5, 1)
    replay.add(numbered(10, 7))  # more than fit at once: the newest 5
    assert replay.recent()["image"][:, 0, 0, 0].tolist() == [12, 13, 14, 15, 16]
    replay.add(numbered(20, 0))
    assert len(replay) == 5

    rng = np.random.default_rng(0)
    drawn = replay.sample(5, rng)["image"][:, 0, 0, 0]
    assert sorted(drawn.tolist()) == [12, 13, 14, 15, 16]  # no repeats while there are enough
    assert set(replay.sample(12, rng)["image"][:, 0, 0, 0].tolist()) <= {12, 13, 14, 15, 16}


def test_replay_rejects_empty_sampling_and_other_shapes():
    replay = PolicyStateReplay(capacity=4)
    with pytest.raises(ValueError, match="empty"):
        replay.sample(1, np.random.default_rng(0))
    replay.add(numbered(0, 2, width=6))
    with pytest.raises(ValueError, match="instruction"):
        replay.add(numbered(2, 2, width=8))
    with pytest.raises(ValueError, match="capacity"):
        PolicyStateReplay(0)


def test_replay_reads_a_rollout_buffer_layout(starts):
    """SB3 keeps observations as float32 ``(n_steps, n_envs, ...)``: they land in the same rows."""
    replay = PolicyStateReplay(capacity=1000)
    replay.add({key: value.reshape(25, 8, *value.shape[1:]).astype(np.float32) for key, value in starts.items()})
    stored = replay.recent()
    for key, value in policy_states(starts).items():
        assert stored[key].dtype == value.dtype and np.array_equal(stored[key], value), key


def test_goal_and_policy_states_share_one_layout(goals, starts):
    from_goals, from_env = goal_states(goals, [0, 1, 2]), policy_states(starts)
    for key in ("image", "direction", "instruction"):
        assert from_goals[key].dtype == from_env[key].dtype, key
        assert from_goals[key].shape[1:] == from_env[key].shape[1:], key
    assert np.array_equal(from_goals["direction"][:, 0], goals.directions[:3])


def test_shorter_instructions_are_padded_to_the_same_reading(goals):
    """A goal file made with a smaller max_length mixes with the policy's states unchanged."""
    torch.manual_seed(0)
    model = Discriminator(len(VOCAB))
    torch.nn.init.normal_(model.generator.head.weight)
    states = goal_states(goals, range(4))
    short = {**states, "instruction": states["instruction"][:, :8]}
    mixed = concat_states([short, states])
    assert mixed["instruction"].shape == (8, 48)
    logits = model(as_tensors(mixed))
    assert torch.allclose(logits[:4], logits[4:], atol=1e-6)


def take_first(states: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return policy_states({key: value[:n] for key, value in states.items()})


def test_reward_is_one_exactly_where_d_exceeds_the_threshold(goals, starts):
    trainer = small_trainer(goals)
    states = concat_states([goal_states(goals, range(10)), take_first(starts, 11)])
    probs = trainer.probs(states)
    assert len(np.unique(probs)) > 10  # an untrained D still tells these states apart
    trainer.threshold = float(np.median(probs))  # one of the probabilities: not above itself
    rewards = trainer.reward(states)
    assert rewards.dtype == np.float32 and set(np.unique(rewards)) == {0.0, 1.0}
    assert np.array_equal(rewards, (probs > trainer.threshold).astype(np.float32))
    assert rewards.sum() == 10  # 21 states, the median's own reward is 0


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_every_conditioning_builds_runs_and_reads_the_instruction(conditioning, goals):
    torch.manual_seed(0)
    model = Discriminator(len(VOCAB), conditioning=conditioning, channels=(8, 16), instruction_dim=32)
    batch = as_tensors(goal_states(goals, range(6)))
    logits = model(batch)
    assert logits.shape == (6,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.head.parameters())
    probs = model.prob(batch)
    assert probs.shape == (6,) and not probs.requires_grad and ((probs > 0) & (probs < 1)).all()

    tokens, _ = VOCAB.encode("pick up the blue key", 48)
    other = {**batch, "instruction": torch.as_tensor(tokens).expand(6, -1)}
    if model.generator is None:  # the language-blind baseline ignores the instruction altogether
        assert torch.equal(model.prob(other), probs)
    else:  # a trained generator head makes the instruction matter (a fresh one is the identity)
        torch.nn.init.normal_(model.generator.head.weight)
        assert not torch.allclose(model.prob(other), model.prob(batch))


def test_update_rejects_odd_batches_and_an_empty_replay(goals):
    trainer = small_trainer(goals)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="empty"):
        trainer.update(1, 8, rng)
    with pytest.raises(ValueError, match="even"):
        trainer.update(1, 7, rng)
    with pytest.raises(ValueError, match="rho"):
        small_trainer(goals, rho=1.0)


def test_state_dict_round_trip_resumes_exactly(goals, starts):
    trainer = small_trainer(goals, seed=0)
    trainer.replay.add(starts)
    trainer.update(5, 16, np.random.default_rng(0))
    buffer = io.BytesIO()
    torch.save(trainer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed = small_trainer(goals, seed=1)  # other initial weights, empty replay
    states = concat_states([goal_states(goals), policy_states(starts)])
    assert not np.array_equal(resumed.probs(states), trainer.probs(states))
    resumed.load_state_dict(state)
    assert np.array_equal(resumed.probs(states), trainer.probs(states))
    assert resumed.steps == 5 and len(resumed.replay) == len(trainer.replay) == 200
    for key, value in trainer.replay.recent().items():
        assert np.array_equal(resumed.replay.recent()[key], value), key

    # the optimizer's moments came along too: the next updates are the same
    first = trainer.update(3, 16, np.random.default_rng(7))
    second = resumed.update(3, 16, np.random.default_rng(7))
    assert first == second
    assert np.array_equal(resumed.probs(states), trainer.probs(states))

    without = small_trainer(goals, seed=1)
    without.replay.add(numbered(0, 3, width=48))
    without.load_state_dict(trainer.state_dict(include_replay=False))
    assert len(without.replay) == 3


def test_mismatched_negatives_pair_goal_states_with_other_missions():
    goals = make_goals(["BabyAI-GoToLocal-v0"], 40, seed=0, vocab=VOCAB)
    states = mismatched_goal_states(goals, 30, np.random.default_rng(0))
    assert 0 < len(states["image"]) <= 30
    own = {goals.images[i].tobytes(): goals.instructions[i] for i in range(len(goals))}
    for image, instruction in zip(states["image"], states["instruction"], strict=True):
        assert not np.array_equal(own[image.tobytes()], instruction)  # never the state's own mission


def test_mismatched_negatives_teach_the_discriminator_to_read_the_mission():
    """GoToLocal goal states only: without other negatives, D can learn the mission only from the
    mismatched pairs; it must then reject held-out goal states shown with another mission."""
    goals = make_goals(["BabyAI-GoToLocal-v0"], 300, seed=0, vocab=VOCAB)
    torch.manual_seed(0)
    trainer = RewardModelTrainer(goals, heldout_fraction=0.2, mismatched=1.0, lr=3e-3)
    trainer.replay.add(goal_states(trainer.train_goals, np.arange(2)))  # the replay is not drawn from
    trainer.update(300, 64, np.random.default_rng(0))
    held = trainer.heldout_goals
    swapped = mismatched_goal_states(held, 500, np.random.default_rng(1))
    accuracy = float(trainer.reward(goal_states(held)).mean())
    wrongly_rewarded = float(trainer.reward(swapped).mean())
    # seeds 0-2: accuracy 0.82-0.97, wrongly rewarded 0.11-0.30; without mismatched negatives
    # (mismatched=0.0) D rewards everything: 1.0 and 0.996
    assert accuracy > 0.7, accuracy
    assert wrongly_rewarded < 0.4 and accuracy - wrongly_rewarded > 0.4, (accuracy, wrongly_rewarded)
