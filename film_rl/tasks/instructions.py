"""The instruction vocabulary: one fixed list of words covering the whole BabyAI grammar.

The vocabulary is fixed (not grown from the missions a run happens to see) so that token ids
mean the same thing in every run, every worker process and every saved model; it is stored with
each run as ``vocab.json`` and read back from there.

>>> vocab = Vocabulary.babyai()
>>> tokens, length = vocab.encode("go to the red ball", max_length=8)
>>> tokens.tolist(), length
([2, 3, 9, 11, 17, 0, 0, 0], 5)
>>> vocab.decode(tokens)
'go to the red ball'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from film_rl.errors import UserError
from film_rl.files import read_json_object, write_json

PAD, UNK = "<pad>", "<unk>"

#: Every word the BabyAI grammar can produce (minigrid.envs.babyai.core.verifier), grouped by role.
BABYAI_WORDS: tuple[str, ...] = (
    # verbs
    "go", "to", "pick", "up", "open", "put", "next",
    # determiners
    "the", "a",
    # colours (minigrid.core.constants.COLOR_NAMES)
    "red", "green", "blue", "purple", "yellow", "grey",
    # object types
    "ball", "box", "key", "door", "object",
    # locations
    "in", "front", "of", "you", "behind", "on", "your", "left", "right",
    # sequencing
    "and", "then", "after",
)  # fmt: skip

#: a word is a run of letters and digits (any alphabet); anything else separates words
_WORD = re.compile(r"[^\W_]+")


def split_words(text: str) -> list[str]:
    """Lower-case words of a mission; punctuation (", then") is dropped. A word is kept whole,
    accents and digits included, so that ``ballé`` or ``ball3`` is one unknown word (``<unk>``),
    never quietly another known one.

    >>> split_words("Pick up the ball3, then go to the ballé")
    ['pick', 'up', 'the', 'ball3', 'then', 'go', 'to', 'the', 'ballé']
    """
    return _WORD.findall(text.lower())


class Vocabulary:
    """Word <-> id mapping with ``<pad>`` = 0 and ``<unk>`` = 1.

    :param words: the known words, in id order (after the two special tokens).
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.itos: list[str] = [PAD, UNK, *words]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique")
        #: how many unknown words :meth:`encode` has met (logged by the training run)
        self.unknown_count = 0

    @classmethod
    def babyai(cls) -> Vocabulary:
        return cls(BABYAI_WORDS)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def encode(self, text: str, max_length: int) -> tuple[np.ndarray, int]:
        """Token ids padded (or cut) to ``max_length``, and the number of real tokens."""
        words = split_words(text)[:max_length]
        unk = self.stoi[UNK]
        ids = [self.stoi.get(w, unk) for w in words]
        self.unknown_count += ids.count(unk)
        tokens = np.zeros(max_length, dtype=np.int64)
        tokens[: len(ids)] = ids
        return tokens, len(ids)

    def decode(self, tokens: Iterable[int]) -> str:
        return " ".join(self.itos[int(t)] for t in tokens if int(t) != 0)

    def save(self, path: str | Path) -> None:
        write_json(Path(path), {"itos": self.itos}, indent=1)

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """A saved vocabulary, checked (a damaged one is a :class:`UserError` naming the file)."""
        itos = read_json_object(Path(path), {"itos": list}, "film-rl vocabulary")["itos"]
        if itos[:2] != [PAD, UNK] or not all(isinstance(w, str) and w for w in itos) or len(set(itos)) != len(itos):
            raise UserError(f"{path} is not a film-rl vocabulary (expected unique words after {PAD}, {UNK})")
        return cls(itos[2:])


#: BabyAI's colours and object types, as its missions write them (minigrid's COLOR_NAMES, OBJ_TYPES)
COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECT_TYPES = ("ball", "box", "key", "door")
SEQUENCE_WORDS = {"and", "then", "after"}
VERBS = {"go": "go to", "pick": "pick up", "open": "open", "put": "put next"}


#: what a description's noun can be: a type, or ``object`` ("pick up the green object": any type)
OBJECT_NOUNS = {*OBJECT_TYPES, "object"}
#: words that end one object's description and begin the rest of the mission
DESCRIPTION_ENDS = {*SEQUENCE_WORDS, "next", "to"}

#: the words of BabyAI's location phrases ("on your left", "in front of you", "behind you")
LOCATION_WORDS = {"left", "right", "front", "behind"}


def description_traits(mission: str) -> dict[str, str]:
    """How a BabyAI mission describes its objects, one trait per dimension: ``location``: whether
    it names one (relative to where the agent started); ``colour``: whether it names one;
    ``article``: whether the object is indefinite (``a ball``: any ball will do) or definite
    (``the ball``: the one meant); ``object`` and ``object colour``: the type and the colour of
    the first object it names (``ball``, ``red``).

    A mission naming two objects has the first two traits if either description does; the other
    three are its first object's. A dimension is left out where the mission has nothing to say
    (no article, no object of BabyAI's, an object without a colour). Splitting success by these
    shows what a policy reads: a language-blind policy succeeds on ``a ...`` missions by picking
    any match, and only a policy that reads (and, for a location, remembers) the description
    succeeds on ``the ...`` ones; a policy that succeeds on every object but one has not learned
    that one's word (or its cells).
    """
    words = split_words(mission)
    traits = {
        "location": "location" if LOCATION_WORDS.intersection(words) else "no location",
        "colour": "colour" if set(COLOURS).intersection(words) else "no colour",
    }
    start = next((i for i, w in enumerate(words) if w in ("a", "the")), None)
    if start is not None:
        traits["article"] = f"{words[start]} ..."
        # the first description: from its article to its noun, a type or ``object`` (any type)
        end = next((i for i in range(start, len(words)) if words[i] in OBJECT_NOUNS), None)
        if end is not None and not DESCRIPTION_ENDS.intersection(words[start:end]):
            traits["object"] = words[end]
            colour = next((w for w in words[start:end] if w in COLOURS), None)
            if colour is not None:
                traits["object colour"] = colour
    return traits


def instruction_kind(mission: str) -> str:
    """``go to`` / ``pick up`` / ``open`` / ``put next``, or ``sequence`` for compound missions."""
    words = split_words(mission)
    if SEQUENCE_WORDS.intersection(words):
        return "sequence"
    return VERBS.get(words[0], "other") if words else "other"
