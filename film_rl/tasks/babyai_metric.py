"""BabyAI's sample-efficiency metric as BabyAI's own scripts compute it.

BabyAI (mila-iqia/babyai, ``scripts/train_rl.py``) trains with 64 processes x 40 frames per PPO
update and writes a log row every 10 updates: the success rate of the episodes that ended in that
update. ``scripts/rl_dataeff.py`` then reports the cumulative episode count at the first row where
the mean of the rows' success rates over a window of 100 rows *centred* on that row (10 rows on
GoToRedBallGrey) reaches 0.99. The window spans 2.56M frames, half of them after the reported
row: the success must hold for ~1.28M frames beyond the count, which a rolling window over the
last 100 episodes (:class:`film_rl.tasks.babyai.InstructionStats`' live figure) does not ask.
Only this figure may stand beside BabyAI's published ones.

Here a row is every :data:`ROW_FRAMES` timesteps of the run, whatever its envs and rollout
length, and counts every episode that ended in it (BabyAI looks at the last update of each ten):
for a policy that changes slowly over ten updates, the same expectation with less noise (and
a row without an ending episode repeats the previous row's rate, where BabyAI repeats its 64
latest episodes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: timesteps per BabyAI log row: 64 processes x 40 frames x 10 updates
ROW_FRAMES = 64 * 40 * 10


def fewest_episodes(success_length: float, max_steps: int, window: int = 100, threshold: float = 0.99) -> float:
    """The fewest episodes BabyAI's centred window can count at its first ``threshold`` crossing,
    for a policy whose successful episodes last ``success_length`` steps on average (a failure runs
    to ``max_steps``).

    The count is the cumulative episode count at the window's centre row, so it holds every episode
    of the ``window // 2 + 1`` rows up to the centre, which lie inside the window. A row of
    :data:`ROW_FRAMES` frames with failure rate ``d`` ends ``ROW_FRAMES / (L + d (T - L))`` episodes,
    convex in ``d``: the fewest come from spreading the window's whole failure allowance,
    ``(1 - threshold) * window`` rows' worth, evenly over those rows. A policy that succeeds from its
    first frame with the shortest paths counts about this many: the metric cannot go lower, and
    counts fewer episodes for a policy that dawdles (longer episodes, fewer of them).
    """
    rows, failures = _rows_to_centre(window, threshold)
    return rows * ROW_FRAMES / (success_length + failures * (max_steps - success_length))


def success_length_for(count: float, max_steps: int, window: int = 100, threshold: float = 0.99) -> float:
    """The inverse of :func:`fewest_episodes`: how many steps a policy's successful episodes must
    average for BabyAI's centred window to count as few as ``count`` episodes at its crossing."""
    rows, failures = _rows_to_centre(window, threshold)
    return (rows * ROW_FRAMES / count - failures * max_steps) / (1.0 - failures)


def _rows_to_centre(window: int, threshold: float) -> tuple[int, float]:
    """The rows up to a window's centre, and their failure rate with the window's whole failure
    allowance spent in them."""
    rows = window // 2 + 1
    return rows, min(1.0, (1.0 - threshold) * window / rows)


class CentredSuccess:
    """Rows of :data:`ROW_FRAMES` timesteps and the first centred window to reach each threshold.

    :param window: rows in the centred window (BabyAI's ``--window``: 100, or 10 on GoToRedBallGrey).
    :param thresholds: success rates whose first crossing is recorded in :attr:`reached`.
    """

    def __init__(self, window: int = 100, thresholds: tuple[float, ...] = (0.9, 0.99)) -> None:
        self.window = window
        self.thresholds = thresholds
        self.episodes = 0
        #: closed rows: (episodes ended so far, success rate of the row's episodes)
        self.rows: list[tuple[int, float]] = []
        self._ended = 0  # in the open row
        self._successes = 0
        #: threshold -> the cumulative episode count at the centre of the first window reaching it
        self.reached: dict[float, int] = {}
        #: a run resumed from a checkpoint saved before these rows were kept: its early rows are
        #: unknown, so the metric is not counted for it (a window of made-up rows would report one)
        self.unknown = False

    def episode(self, success: bool) -> None:
        self.episodes += 1
        self._ended += 1
        self._successes += int(success)

    def advance(self, timesteps: int) -> bool:
        """Close every row that ``timesteps`` (the run's count after this step) has passed; whether any was."""
        closed = False
        while not self.unknown and timesteps >= (len(self.rows) + 1) * ROW_FRAMES:
            self._close()
            closed = True
        return closed

    def _close(self) -> None:
        # no episode ended in the row: BabyAI's row repeats the latest episodes it has, which are
        # failures (its placeholders) before the first one ends
        previous = self.rows[-1][1] if self.rows else 0.0
        rate = self._successes / self._ended if self._ended else previous
        self.rows.append((self.episodes, rate))
        self._ended = self._successes = 0
        if len(self.rows) < self.window:
            return
        # pandas' rolling(window, center=True) puts the window [i - w//2, i + (w-1)//2] at row i
        mean = self.latest_window()
        assert mean is not None
        centre = len(self.rows) - self.window + self.window // 2
        for t in self.thresholds:
            if mean >= t and t not in self.reached:
                self.reached[t] = self.rows[centre][0]

    def latest_window(self) -> float | None:
        """The mean success of the newest full window of rows; ``None`` before there is one."""
        if len(self.rows) < self.window:
            return None
        return float(np.mean([rate for _, rate in self.rows[-self.window :]]))

    def state(self) -> dict[str, Any]:
        return {
            "unknown": self.unknown,
            "window": self.window,
            "episodes": self.episodes,
            "rows": [list(row) for row in self.rows],
            "open": [self._ended, self._successes],
            "reached": {str(t): n for t, n in self.reached.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.episodes = int(state["episodes"])
        self.rows = [(int(n), float(rate)) for n, rate in state["rows"]]
        self._ended, self._successes = (int(x) for x in state["open"])
        self.reached = {float(t): int(n) for t, n in state["reached"].items()}
        self.unknown = bool(state.get("unknown", False))
