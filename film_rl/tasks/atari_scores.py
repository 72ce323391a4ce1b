"""Human-normalized Atari scores: published random and human reference scores, and per-game bookkeeping.

``human_normalized = (score - random) / (human - random)``: 0 is a uniformly random policy, 1 a
professional human game tester. Averaging raw returns across games is meaningless (Pong's range
is -21..21, Asterix's runs to hundreds of thousands); the normalized score is what multi-game
papers compare, as a mean and, more robustly, a median across games.

>>> round(human_normalized("Pong", 14.6), 3), round(human_normalized("Breakout", 1.7), 3)
(1.0, 0.0)
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping

#: (random, human) reference score per ALE game (the name in ``ALE/<Name>-v5``).
#: Source: Badia et al. (2020), "Agent57: Outperforming the Atari Human Benchmark", appendix,
#: table of random and human scores on Atari-57; for the 49 games of Mnih et al. (2015),
#: "Human-level control through deep reinforcement learning", Nature, extended data table 2, the
#: figures are the same. Both were measured with up to 30 no-op starts and episodes capped at
#: 108,000 frames (30 minutes), the protocol :class:`film_rl.tasks.atari_envs.MultiGameAtariEnv` follows.
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3),
    "Asteroids": (719.1, 47388.7),
    "Atlantis": (12850.0, 29028.1),
    "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5),
    "BeamRider": (363.9, 16926.5),
    "Berzerk": (123.7, 2630.4),
    "Bowling": (23.1, 160.7),
    "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5),
    "Centipede": (2090.9, 12017.0),
    "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4),
    "Defender": (2874.5, 18688.9),
    "DemonAttack": (152.1, 1971.0),
    "DoubleDunk": (-18.6, -16.4),
    "Enduro": (0.0, 860.5),
    "FishingDerby": (-91.7, -38.7),
    "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7),
    "Gopher": (257.6, 2412.5),
    "Gravitar": (173.0, 3351.4),
    "Hero": (1027.0, 30826.4),
    "IceHockey": (-11.2, 0.9),
    "Jamesbond": (29.0, 302.8),
    "Kangaroo": (52.0, 3035.0),
    "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3),
    "MontezumaRevenge": (0.0, 4753.3),
    "MsPacman": (307.3, 6951.6),
    "NameThisGame": (2292.3, 8049.0),
    "Phoenix": (761.4, 7242.6),
    "Pitfall": (-229.4, 6463.7),
    "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0),
    "Riverraid": (1338.5, 17118.0),
    "RoadRunner": (11.5, 7845.0),
    "Robotank": (2.2, 11.9),
    "Seaquest": (68.4, 42054.7),
    "Skiing": (-17098.1, -4336.9),
    "Solaris": (1236.3, 12326.7),
    "SpaceInvaders": (148.0, 1668.7),
    "StarGunner": (664.0, 10250.0),
    "Surround": (-10.0, 6.5),
    "Tennis": (-23.8, -8.3),
    "TimePilot": (3568.0, 5229.2),
    "Tutankham": (11.4, 167.6),
    "UpNDown": (533.4, 11693.2),
    "Venture": (0.0, 1187.5),
    "VideoPinball": (16256.9, 17667.9),
    "WizardOfWor": (563.5, 4756.5),
    "YarsRevenge": (3092.9, 54576.9),
    "Zaxxon": (32.5, 9173.3),
}


def human_normalized(game: str, score: float) -> float:
    """``score`` on ``game`` relative to random (0) and human (1) play; NaN for a game without references."""
    if game not in REFERENCE_SCORES:
        return math.nan
    random, human = REFERENCE_SCORES[game]
    return (score - random) / (human - random)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


#: a game's mean return -> its normalized score (NaN: no reference for that game)
Normalizer = Callable[[str, float], float]


def summarize_games(
    returns: Mapping[str, Iterable[float]], normalize: Normalizer | None = human_normalized
) -> dict[str, float]:
    """Scalars for a logger from each game's episode returns (unclipped, whole games).

    Per game: ``ep_return/<game>`` (mean) and ``human_normalized/<game>``; across the games that
    have a reference score: ``human_normalized_mean`` and ``human_normalized_median`` (the
    multi-game papers' headline figures). Games without episodes are left out. ``normalize=None``:
    returns only (a family without reference scores, such as MinAtar).
    """
    out: dict[str, float] = {}
    normalized = []
    for game, values in sorted(returns.items()):
        values = list(values)
        if not values:
            continue
        mean = sum(values) / len(values)
        out[f"ep_return/{game}"] = mean
        score = normalize(game, mean) if normalize is not None else math.nan
        if not math.isnan(score):
            out[f"human_normalized/{game}"] = score
            normalized.append(score)
    if normalized:
        out["human_normalized_mean"] = sum(normalized) / len(normalized)
        out["human_normalized_median"] = _median(normalized)
    return out


class GameScores:
    """Rolling per-game returns of finished episodes, for training-time logging.

    :param window: most recent episodes kept per game.
    :param normalize: the family's normalized score (``None``: returns only).
    """

    def __init__(self, window: int = 100, normalize: Normalizer | None = human_normalized) -> None:
        self.normalize = normalize
        self.returns: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.episodes: dict[str, int] = defaultdict(int)

    def add(self, game: str, episode_return: float) -> None:
        self.returns[game].append(float(episode_return))
        self.episodes[game] += 1

    def summary(self) -> dict[str, float]:
        """:func:`summarize_games` over the window, plus ``episodes/<game>`` (all time)."""
        out = summarize_games(self.returns, self.normalize)
        out.update({f"episodes/{game}": float(n) for game, n in sorted(self.episodes.items())})
        return out
