"""Which missions a run holds out, resolved against its levels and checked: both splits must
have missions. The envs that keep to a split are :mod:`film_rl.tasks.holdout`'s."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np

from film_rl.config import BabyAIEnvConfig
from film_rl.errors import UserError
from film_rl.tasks.babyai_envs import make_level, silence_rejection_sampling
from film_rl.tasks.holdout import Holdout, combinations

#: resets (seeds 0, 1, ...) that sample a level's missions: enough for every colour-object
#: combination of the one-room levels (GoToLocal shows all 18 within 100)
SAMPLED_RESETS = 200


@functools.lru_cache(maxsize=64)
def sampled_missions(level: str, resets: int = SAMPLED_RESETS) -> tuple[str, ...]:
    """The missions of ``resets`` resets of ``level`` (seeds 0, 1, ...): the same on every machine."""
    silence_rejection_sampling()
    env = make_level(level)
    try:
        return tuple(str(env.reset(seed=seed)[0]["mission"]) for seed in range(resets))
    finally:
        env.close()


def resolve(
    combos: Iterable[tuple[str, str]], missions: Iterable[str], fraction: float, seed: int, levels: Sequence[str]
) -> Holdout:
    """The holdout a config asks for, with ``fraction`` of the levels' colour-object combinations
    (those their sampled missions name, sorted) drawn with ``seed``, checked against the levels:
    a level whose every mission would be held out, or levels of which none would be, is refused."""
    chosen = set(combos)
    if fraction > 0:
        known = sorted({pair for level in levels for m in sampled_missions(level) for pair in combinations(m)})
        if not known:
            raise UserError(
                f"env.holdout.fraction: the missions of {', '.join(levels)} name no colour-object "
                "combination to hold out"
            )
        count = max(1, round(fraction * len(known)))
        picked = np.random.default_rng(seed).choice(len(known), size=count, replace=False)
        chosen |= {known[i] for i in sorted(picked)}
    holdout = Holdout(frozenset(chosen), frozenset(missions))
    if holdout:
        check(holdout, levels)
    return holdout


def from_config(env: BabyAIEnvConfig) -> Holdout:
    """The holdout of a run's ``env`` section (empty when it holds nothing out)."""
    spec = env.holdout
    if not spec:
        return Holdout()
    pairs = [(c.color, c.object) for c in spec.combinations]
    return resolve(pairs, spec.missions, spec.fraction, spec.seed, env.levels)


def check(holdout: Holdout, levels: Sequence[str]) -> None:
    """Both splits must have missions: training needs some, and so does the held-out evaluation."""
    any_held = False
    for level in levels:
        sample = sampled_missions(level)
        held = [m for m in sample if holdout.held_out(m)]
        if len(held) == len(sample):
            raise UserError(
                f"env.holdout holds out every mission of {level} (e.g. '{sample[0]}'): training would have none"
            )
        any_held = any_held or bool(held)
    if not any_held:
        raise UserError(
            f"env.holdout ({', '.join(holdout.describe())}) matches none of {SAMPLED_RESETS} sampled missions of "
            f"{', '.join(levels)}: nothing would be held out"
        )
