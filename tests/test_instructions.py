"""The fixed vocabulary covers the whole BabyAI grammar; unknown words never crash."""

import gymnasium as gym
import pytest

from film_rl.errors import UserError
from film_rl.tasks.babyai_envs import babyai_levels
from film_rl.tasks.instructions import UNK, Vocabulary, split_words


def test_vocabulary_covers_missions_of_every_registered_level():
    vocab = Vocabulary.babyai()
    levels = babyai_levels()
    assert len(levels) > 50
    unknown = set()
    for level in levels:
        env = gym.make(level)
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            unknown.update(w for w in split_words(obs["mission"]) if w not in vocab.stoi)
            _, length = vocab.encode(obs["mission"], 48)
            assert length == len(split_words(obs["mission"])), f"{level}: mission longer than 48 words"
        env.close()
    assert not unknown, f"words missing from the vocabulary: {sorted(unknown)}"
    assert vocab.unknown_count == 0


def test_unknown_words_map_to_unk_and_are_counted():
    vocab = Vocabulary.babyai()
    tokens, length = vocab.encode("go to the crimson ball, quickly", max_length=10)
    assert length == 6
    assert vocab.decode(tokens) == f"go to the {UNK} ball {UNK}"
    assert vocab.unknown_count == 2


def test_long_missions_are_cut_and_short_ones_padded():
    vocab = Vocabulary.babyai()
    tokens, length = vocab.encode("go to the red ball and go to the blue key", max_length=4)
    assert length == 4 and vocab.decode(tokens) == "go to the red"
    tokens, length = vocab.encode("open the door", max_length=6)
    assert tokens.tolist()[3:] == [0, 0, 0]


def test_save_and_load_round_trip(tmp_path):
    vocab = Vocabulary.babyai()
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "bad.json").write_text('{"itos": ["a", "b"]}')
    with pytest.raises(UserError, match="not a film-rl vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")
