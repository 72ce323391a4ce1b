"""Several Atari games behind one env, so that one policy plays them all; the game id is its instruction.

Every game uses the full 18-action set (``full_action_space=True``), so one action head serves
the whole suite, as in Kirkpatrick et al. (2017). Preprocessing happens once: ``ALE/<Game>-v5``
is made with ``frameskip=1`` and gymnasium's ``AtariPreprocessing`` does the no-op starts, the
frame skip with max-pooling over the last two frames and the 84x84 grayscale resize (a v5 id
left at its own ``frameskip=4`` under a skipping wrapper would skip 16 frames). The env stacks
the frames itself. Training adds SB3's life-loss and reward-clipping wrappers on top of a
``Monitor``, so logged returns are whole games, unclipped.

>>> import gymnasium as gym
>>> from film_rl.tasks.atari_envs import register_envs
>>> register_envs()  # ale-py's games and film_rl/MultiGameAtari-v0
>>> env = gym.make("film_rl/MultiGameAtari-v0", games=["ALE/Pong-v5", "ALE/Breakout-v5"])
>>> obs, info = env.reset(seed=0, options={"game": "ALE/Breakout-v5"})
>>> obs["image"].shape, obs["game_id"], info["game"], env.action_space
((4, 84, 84), array([1]), 'Breakout', Discrete(18))
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence
from typing import Any, SupportsFloat

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import AtariPreprocessing
from stable_baselines3.common.atari_wrappers import ClipRewardEnv, EpisodicLifeEnv
from stable_baselines3.common.vec_env import VecEnv

from film_rl.config import AtariConfig
from film_rl.errors import UserError
from film_rl.tasks.games import GameMonitor
from film_rl.tasks.vec_env import make_vec_env, worker_levels

ENV_ID = "film_rl/MultiGameAtari-v0"
#: the full Atari action set: every game gets the same action head
ATARI_ACTIONS = 18

ObsDict = dict[str, np.ndarray]


def atari_games() -> list[str]:
    """Every ALE game id this ale-py registers (ROMs ship with ale-py)."""
    register_envs()
    return sorted(k for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5"))


def game_name(env_id: str) -> str:
    """``ALE/MsPacman-v5`` -> ``MsPacman``: the name logs, scores and videos use."""
    return env_id.removeprefix("ALE/").removesuffix("-v5")


def _suggest(text: str, known: list[str]) -> str:
    """Close ALE ids for a typo, also when written ``Pong``, ``PongNoFrameskip-v4`` or ``ALE/Pong-v4``."""
    bare = re.sub(r"(NoFrameskip|Deterministic)?(-v\d+)?$", "", text.removeprefix("ALE/")).lower()
    by_name = {game_name(k).lower(): k for k in known}
    close = difflib.get_close_matches(bare, list(by_name), n=3, cutoff=0.6)
    return f" (did you mean: {', '.join(by_name[n] for n in close)}?)" if close else ""


def check_games(games: Sequence[str]) -> None:
    """Every id must be an ``ALE/<Game>-v5`` id, listed once; a typo gets the closest ids suggested."""
    if not games:
        raise UserError("env.levels is empty: name at least one Atari game, e.g. ALE/Pong-v5")
    known = atari_games()
    for game in games:
        if game not in known:
            hint = " (a BabyAI level: set env.kind=babyai)" if game.startswith("BabyAI-") else _suggest(game, known)
            raise UserError(f"unknown Atari game '{game}'{hint}")
    for game in games:
        if list(games).count(game) > 1:
            raise UserError(f"env.levels lists {game} twice; every game needs its own id")


def make_game(
    env_id: str,
    settings: AtariConfig,
    render_mode: str | None = None,
) -> gym.Env:
    """One game, preprocessed once: 18 actions, frame skip with max-pooling, no-op starts, 84x84 grayscale."""
    register_envs()
    env = gym.make(
        env_id,
        frameskip=1,  # AtariPreprocessing skips; the v5 default of 4 would be applied on top
        obs_type="grayscale",  # what AtariPreprocessing reads; ALE then skips an RGB copy every frame
        full_action_space=True,
        repeat_action_probability=settings.repeat_action_probability,
        max_num_frames_per_episode=settings.max_episode_frames,
        render_mode=render_mode,
        disable_env_checker=True,
    )
    return AtariPreprocessing(
        env,
        noop_max=settings.noop_max,
        frame_skip=settings.frame_skip,
        screen_size=settings.screen_size,
        terminal_on_life_loss=False,  # a soft life loss is EpisodicLifeEnv's job: it must not reset the game
        grayscale_obs=True,
    )


class MultiGameAtariEnv(gym.Env[ObsDict, np.int64]):
    """Several ALE games, one at a time: observation ``{image: stacked frames, game_id}``, 18 actions.

    ``game_id`` is the game's index in ``games`` as an integer ``Box`` (SB3 would one-hot a
    ``Discrete``). Each reset plays a game drawn uniformly from ``play``, or the one named by
    ``options={"game": ...}`` (an id, a name or an index).
    ``info`` carries ``game`` (the name) and ALE's ``lives`` / frame counters.

    :param games: the suite, ``ALE/<Game>-v5`` ids; their order defines the game ids.
    :param play: the games this env draws from (default: all), e.g. one per vector-env worker.
    :param settings: preprocessing (:class:`film_rl.config.AtariConfig`); ``None``: the defaults.
    :param render_mode: ``rgb_array`` to record the full-colour screen.
    :param preload: build the games of ``play`` now (training: every one is played soon, and an
        ALE ROM load is slow) rather than when first played (evaluation, which names one game
        per episode).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}  # noqa: RUF012  (gymnasium declares it)

    def __init__(
        self,
        games: Sequence[str],
        play: Sequence[str] | None = None,
        settings: AtariConfig | None = None,
        render_mode: str | None = None,
        preload: bool = True,
    ) -> None:
        check_games(games)
        self.games = list(games)
        self.names = [game_name(g) for g in self.games]
        self.settings = settings or AtariConfig()
        self.play = [self._index(g) for g in (play or self.games)]
        self.render_mode = render_mode
        s = self.settings
        image = spaces.Box(0, 255, (s.frame_stack, s.screen_size, s.screen_size), np.uint8)
        self.observation_space = spaces.Dict(  # type: ignore[assignment]
            {"image": image, "game_id": spaces.Box(0, len(self.games) - 1, (1,), np.int64)}
        )
        self.action_space = spaces.Discrete(ATARI_ACTIONS)  # type: ignore[assignment]
        self._envs: dict[int, gym.Env] = {}
        for index in self.play if preload else []:
            self._game(index)
        self._seeded: set[int] = set()
        self._current = self.play[0]
        self._frames = np.zeros(image.shape, np.uint8)

    def _index(self, game: str | int) -> int:
        if isinstance(game, int | np.integer) and 0 <= int(game) < len(self.games):
            return int(game)
        for names in (self.games, self.names):
            if game in names:
                return names.index(str(game))
        raise ValueError(f"{game!r} is not a game of this suite ({', '.join(self.names)})")

    def _game(self, index: int) -> gym.Env:
        if index not in self._envs:
            self._envs[index] = make_game(self.games[index], self.settings, self.render_mode)
        return self._envs[index]

    @property
    def current_game(self) -> str:
        return self.names[self._current]

    @property
    def ale(self) -> ale_py.ALEInterface:
        """The current game's emulator (SB3's ``EpisodicLifeEnv`` reads the lives from it)."""
        return self._game(self._current).unwrapped.ale  # type: ignore[attr-defined,no-any-return]

    def _observe(self) -> ObsDict:
        return {"image": self._frames.copy(), "game_id": np.array([self._current], np.int64)}

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        info["game"] = self.names[self._current]
        return info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "game" in options:
            self._current = self._index(options["game"])
        else:
            self._current = self.play[int(self.np_random.integers(len(self.play)))]
        env = self._game(self._current)
        # A game's emulator is seeded when first played and whenever this env is: reseeding means
        # reloading the ROM, which an unseeded auto-reset need not pay for.
        game_seed = None
        if seed is not None or self._current not in self._seeded:
            game_seed = int(self.np_random.integers(2**31 - 1))
            self._seeded.add(self._current)
        frame, info = env.reset(seed=game_seed)
        self._frames.fill(0)  # zero padding until the stack fills, like SB3's VecFrameStack
        self._frames[-1] = frame
        return self._observe(), self._info(info)

    def step(self, action: np.int64 | int) -> tuple[ObsDict, SupportsFloat, bool, bool, dict[str, Any]]:
        frame, reward, terminated, truncated, info = self._envs[self._current].step(int(action))
        self._frames[:-1] = self._frames[1:]
        self._frames[-1] = frame
        return self._observe(), reward, terminated, truncated, self._info(info)

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        return self._game(self._current).render()  # type: ignore[return-value]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def register_envs() -> None:
    """Register ale-py's games and ``film_rl/MultiGameAtari-v0`` with gymnasium (idempotent).

    Called by everything here that makes or lists games, rather than at import, so that importing
    film-rl changes no process-wide state; call it before ``gym.make(ENV_ID)`` in your own code.
    """
    if ENV_ID in gym.registry:
        return
    gym.register_envs(ale_py)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no emulator banner on every command's stderr
    gym.register(ENV_ID, entry_point="film_rl.tasks.atari_envs:MultiGameAtariEnv")


def make_atari_env(
    games: Sequence[str],
    settings: AtariConfig,
    *,
    play: Sequence[str] | None = None,
    training: bool = True,
    render_mode: str | None = None,
) -> gym.Env:
    """The multi-game env as training (life loss, clipped rewards, Monitor) or evaluation (whole games, raw
    rewards) sees it."""
    env: gym.Env = MultiGameAtariEnv(games, play, settings, render_mode, preload=training)
    if not training:
        return env
    env = GameMonitor(env)
    if settings.terminal_on_life_loss:
        env = EpisodicLifeEnv(env)
    if settings.clip_rewards:
        env = ClipRewardEnv(env)
    return env


def make_atari_vec_env(
    games: Sequence[str],
    settings: AtariConfig,
    n_envs: int,
    *,
    seed: int,
    sampling: str = "episode",
    subprocess: bool = False,
) -> VecEnv:
    """``n_envs`` training workers seeded ``seed + i``; ``sampling`` as for BabyAI suites
    (:func:`film_rl.tasks.vec_env.worker_levels`): ``worker`` pins game ``i mod n`` to worker ``i``."""
    games = list(games)
    workers = [
        functools.partial(make_atari_env, games, settings, play=play) for play in worker_levels(games, n_envs, sampling)
    ]
    return make_vec_env(workers, seed, subprocess)
