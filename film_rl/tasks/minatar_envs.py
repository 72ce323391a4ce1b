"""Several MinAtar games behind one env, so that one policy plays them all; the game id is its instruction.

MinAtar (Young & Tian, 2019) shrinks five Atari games to 10x10 grids of binary channels: each
channel says where one kind of object is (paddle, ball, bricks, ...). Games differ in how many
channels they have and what they mean, so the observation pads every game's channels to the
widest game's with zeros; telling the network which game (and so which meaning) it sees is the
game id's job. Every game has MinAtar's full set of 6 actions, so one action head serves them
all. Sticky actions and difficulty ramping are MinAtar's own (its ``Environment``), with its
defaults.

>>> import gymnasium as gym
>>> from film_rl.tasks.minatar_envs import register_envs
>>> register_envs()
>>> env = gym.make("film_rl/MultiGameMinAtar-v0", games=["MinAtar/Breakout-v0", "MinAtar/Seaquest-v0"])
>>> obs, info = env.reset(seed=0, options={"game": "Breakout"})
>>> obs["image"].shape, obs["game_id"], info["game"], env.action_space
((10, 10, 10), array([0]), 'Breakout', Discrete(6))
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from film_rl.config import MinAtarConfig
from film_rl.errors import UserError
from film_rl.tasks.games import GameMonitor

ENV_ID = "film_rl/MultiGameMinAtar-v0"
#: ``MinAtar/<Game>-v0`` id -> the module of MinAtar's game (``minatar.environments.<module>``)
GAMES = {
    "MinAtar/Asterix-v0": "asterix",
    "MinAtar/Breakout-v0": "breakout",
    "MinAtar/Freeway-v0": "freeway",
    "MinAtar/Seaquest-v0": "seaquest",
    "MinAtar/SpaceInvaders-v0": "space_invaders",
}
#: MinAtar's full action set (no-op, left, up, right, down, fire), the same for every game
MINATAR_ACTIONS = 6
#: side of every game's grid
SIDE = 10
#: pixels per grid cell in rendered frames (videos)
CELL_PIXELS = 16

ObsDict = dict[str, np.ndarray]


def game_name(env_id: str) -> str:
    """``MinAtar/SpaceInvaders-v0`` -> ``SpaceInvaders``: the name logs, scores and videos use."""
    return env_id.removeprefix("MinAtar/").removesuffix("-v0")


def check_games(games: Sequence[str]) -> None:
    """Every id must be a ``MinAtar/<Game>-v0`` id, listed once; a typo gets the closest ids suggested."""
    if not games:
        raise UserError("env.levels is empty: name at least one MinAtar game, e.g. MinAtar/Breakout-v0")
    known = list(GAMES)
    for game in games:
        if game in known:
            continue
        if game.startswith("MinAtar/") and game.endswith("-v1"):
            hint = f" (v1 is MinAtar's per-game minimal action set; one policy needs the full set: {game[:-1]}0)"
        else:
            bare = game.removeprefix("MinAtar/").split("-")[0].lower()
            close = difflib.get_close_matches(bare, [game_name(k).lower() for k in known], n=3, cutoff=0.5)
            by_name = {game_name(k).lower(): k for k in known}
            hint = f" (did you mean: {', '.join(by_name[c] for c in close)}?)" if close else ""
            if game.startswith(("BabyAI-", "MiniGrid-")):
                hint = " (a BabyAI level: set env.kind=babyai)"
            elif game.startswith("ALE/"):
                hint = " (an Atari game: set env.kind=atari)"
        raise UserError(f"unknown MinAtar game '{game}'{hint}; known: {', '.join(known)}")
    for game in games:
        if list(games).count(game) > 1:
            raise UserError(f"env.levels lists {game} twice; every game needs its own id")


def game_channels(game: str) -> int:
    """How many channels MinAtar's ``game`` observes."""
    from minatar import Environment

    return int(Environment(GAMES[game]).state_shape()[2])


class MultiGameMinAtarEnv(gym.Env[ObsDict, np.int64]):
    """Several MinAtar games, one at a time: observation ``{image: (C, 10, 10) uint8, game_id}``, 6 actions.

    ``image`` holds the current game's channels first and zeros up to ``C``, the widest game's
    channel count. ``game_id`` is the game's index in ``games`` as an integer ``Box`` (SB3 would
    one-hot a ``Discrete``). Each reset plays a game drawn uniformly from ``play``, or the one named
    by ``options={"game": ...}`` (an id, a name or an index); ``info["game"]`` is its name.

    :param games: the suite, ``MinAtar/<Game>-v0`` ids; their order defines the game ids.
    :param play: the games this env draws from (default: all), e.g. one per vector-env worker.
    :param settings: sticky actions, ramping, step cap (:class:`film_rl.config.MinAtarConfig`).
    :param render_mode: ``rgb_array`` for coloured 160x160 frames.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012  (gymnasium declares it)

    def __init__(
        self,
        games: Sequence[str],
        play: Sequence[str] | None = None,
        settings: MinAtarConfig | None = None,
        render_mode: str | None = None,
    ) -> None:
        from minatar import Environment

        check_games(games)
        self.games = list(games)
        self.names = [game_name(g) for g in self.games]
        self.settings = settings or MinAtarConfig()
        self.play = [self._index(g) for g in (play or self.games)]
        self.render_mode = render_mode
        s = self.settings
        self._envs = [
            Environment(GAMES[g], sticky_action_prob=s.sticky_action_prob, difficulty_ramping=s.difficulty_ramping)
            for g in self.games
        ]
        self.channels = max(int(e.state_shape()[2]) for e in self._envs)
        image = spaces.Box(0, 1, (self.channels, SIDE, SIDE), np.uint8)
        self.observation_space = spaces.Dict(  # type: ignore[assignment]
            {"image": image, "game_id": spaces.Box(0, len(self.games) - 1, (1,), np.int64)}
        )
        self.action_space = spaces.Discrete(MINATAR_ACTIONS)  # type: ignore[assignment]
        self._seeded: set[int] = set()
        self._current = self.play[0]
        self._steps = 0

    def _index(self, game: str | int) -> int:
        if isinstance(game, int | np.integer) and 0 <= int(game) < len(self.games):
            return int(game)
        for names in (self.games, self.names):
            if game in names:
                return names.index(str(game))
        raise ValueError(f"{game!r} is not a game of this suite ({', '.join(self.names)})")

    @property
    def current_game(self) -> str:
        return self.names[self._current]

    def _observe(self) -> ObsDict:
        state = self._envs[self._current].state()  # (10, 10, c) bool
        image = np.zeros((self.channels, SIDE, SIDE), np.uint8)
        image[: state.shape[2]] = np.moveaxis(state, 2, 0)
        return {"image": image, "game_id": np.array([self._current], np.int64)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "game" in options:
            self._current = self._index(options["game"])
        else:
            self._current = self.play[int(self.np_random.integers(len(self.play)))]
        game = self._envs[self._current]
        # each game keeps its own random stream across episodes; this env's seed seeds them all
        if seed is not None or self._current not in self._seeded:
            game.seed(int(self.np_random.integers(2**31 - 1)))
            self._seeded.add(self._current)
        game.reset()
        self._steps = 0
        return self._observe(), {"game": self.current_game}

    def step(self, action: np.int64 | int) -> tuple[ObsDict, SupportsFloat, bool, bool, dict[str, Any]]:
        reward, terminated = self._envs[self._current].act(int(action))
        self._steps += 1
        cap = self.settings.max_episode_steps
        truncated = bool(cap is not None and self._steps >= cap and not terminated)
        return self._observe(), float(reward), bool(terminated), truncated, {"game": self.current_game}

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """The grid as colours: black background, one colour per channel (the last drawn wins)."""
        if self.render_mode != "rgb_array":
            return None
        state = self._envs[self._current].state()
        palette = _palette(state.shape[2])
        frame = np.zeros((SIDE, SIDE, 3), np.uint8)
        for channel in range(state.shape[2]):
            frame[state[:, :, channel]] = palette[channel]
        return frame.repeat(CELL_PIXELS, axis=0).repeat(CELL_PIXELS, axis=1)


def _palette(n: int) -> np.ndarray:
    """``n`` distinct bright colours (matplotlib's tab10), as uint8 RGB rows."""
    from matplotlib import colormaps

    colours = colormaps["tab10"](np.arange(n) % 10)[:, :3]
    return np.asarray(np.round(colours * 255), dtype=np.uint8)


def make_minatar_env(
    games: Sequence[str],
    settings: MinAtarConfig,
    *,
    play: Sequence[str] | None = None,
    training: bool = True,
    render_mode: str | None = None,
) -> gym.Env:
    """The multi-game env as training (per-game ``Monitor``) or evaluation sees it: MinAtar's
    rewards are small integers already, so neither clips them, and its episodes are whole games."""
    env: gym.Env = MultiGameMinAtarEnv(games, play, settings, render_mode)
    return GameMonitor(env) if training else env


def register_envs() -> None:
    """Register ``film_rl/MultiGameMinAtar-v0`` with gymnasium (idempotent); call it before
    ``gym.make(ENV_ID)`` in your own code."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="film_rl.tasks.minatar_envs:MultiGameMinAtarEnv")
