"""Instructions training never sees: which missions are held out, and an env that never draws one.

A held-out split answers the question every instruction-following result is asked: does the policy
follow an instruction it was never trained on? Missions are held out by colour-object combination
(``{color: red, object: ball}`` holds out every mission that names a red ball, whatever its verb:
"go to the red ball", "put a red ball next to the blue key"), by exact text, or as a fraction of
the levels' colour-object combinations drawn from a seed.

Training envs redraw a held-out mission with the level's own generator (:class:`SplitFilter`), so
the policy, AGILE's reward model and its goal states only ever see the training split; evaluation
plays either split the same way, reproducibly.

>>> holdout = Holdout(combos=frozenset({("red", "ball")}))
>>> holdout.held_out("put the red ball next to the blue key"), holdout.held_out("go to a ball")
(True, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np

from film_rl.errors import UserError
from film_rl.tasks.instructions import COLOURS, OBJECT_TYPES

Split = Literal["train", "heldout", "all"]

#: an object as BabyAI's missions describe it: "the red ball", "a key", "the grey door"
_DESCRIPTION = re.compile(rf"\b(?:the|a)\s+(?:({'|'.join(COLOURS)})\s+)?({'|'.join(OBJECT_TYPES)})\b")
#: redraws before a reset gives up: a split this rare cannot be trained or evaluated on
MAX_REDRAWS = 10_000


def combinations(mission: str) -> set[tuple[str, str]]:
    """The (colour, object) pairs a mission names; an object without a colour names no pair."""
    return {(color, obj) for color, obj in _DESCRIPTION.findall(mission) if color}


@dataclass(frozen=True)
class Holdout:
    """What is held out: colour-object combinations and exact missions."""

    combos: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    missions: frozenset[str] = field(default_factory=frozenset)

    def held_out(self, mission: str) -> bool:
        return mission in self.missions or not self.combos.isdisjoint(combinations(mission))

    def in_split(self, mission: str, split: Split) -> bool:
        return split == "all" or self.held_out(mission) == (split == "heldout")

    def describe(self) -> list[str]:
        """Readable, sorted: ``["red ball", "yellow key", '"go to the red box"']``."""
        return [f"{c} {o}" for c, o in sorted(self.combos)] + [f'"{m}"' for m in sorted(self.missions)]

    def matched(self, mission: str) -> list[str]:
        """The held-out items (as :meth:`describe` writes them) that hold ``mission`` out.

        >>> Holdout(combos=frozenset({("red", "ball")})).matched("put the red ball next to a key")
        ['red ball']
        """
        pairs = combinations(mission)
        items = [f"{c} {o}" for c, o in sorted(self.combos) if (c, o) in pairs]
        return items + ([f'"{mission}"'] if mission in self.missions else [])

    def __bool__(self) -> bool:
        return bool(self.combos or self.missions)


class SplitFilter(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Reset until the mission is in ``split``: a mission of the other split is redrawn by the
    level's own generator, with a seed derived from the reset's (deterministic for a given seed).

    Every step reports in ``info["heldout_redraws"]`` how many draws its episode's reset threw
    away; training sums them over finished episodes as ``instructions/heldout_redraws``.

    :param env: a BabyAI level (or several), below every wrapper that reads the mission.
    :param holdout: what is held out.
    :param split: the missions this env plays: ``train`` (training), ``heldout`` or ``all``.
    """

    def __init__(self, env: gym.Env, holdout: Holdout, split: Split = "train") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, holdout=holdout, split=split)
        super().__init__(env)
        self.holdout, self.split = holdout, split
        self.redraws = 0  # of the current episode's reset

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.redraws = 0
        while not self.holdout.in_split(str(obs["mission"]), self.split):
            self.redraws += 1
            if self.redraws > MAX_REDRAWS:
                raise UserError(f"no mission of the {self.split} split in {MAX_REDRAWS:,} draws: the split is too rare")
            again = None if seed is None else int(np.random.SeedSequence([seed, self.redraws]).generate_state(1)[0])
            obs, info = self.env.reset(seed=again, options=options)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["heldout_redraws"] = self.redraws  # every step: a wrapper above may end the episode (AGILE's done)
        return obs, reward, terminated, truncated, info
