"""BabyAI environments as a policy sees them: a symbolic grid, a direction and a tokenized mission.

>>> import gymnasium as gym
>>> import minigrid  # registers the BabyAI levels
>>> from film_rl.tasks.instructions import Vocabulary
>>> env = InstructionWrapper(gym.make("BabyAI-GoToRedBallGrey-v0"), Vocabulary.babyai())
>>> obs, info = env.reset(seed=0)
>>> obs["image"].shape, obs["instruction"].dtype, info["mission"]
((3, 7, 7), dtype('int64'), 'go to the red ball')
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import minigrid  # noqa: F401  (registers the BabyAI levels)
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from minigrid.envs.babyai.core.verifier import PickupInstr, PutNextInstr
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv

from film_rl.errors import UserError, did_you_mean
from film_rl.tasks import vec_env
from film_rl.tasks.holdout import Holdout, Split, SplitFilter
from film_rl.tasks.instructions import Vocabulary
from film_rl.tasks.minigrid_view import use_fast_view
from film_rl.tasks.vec_env import worker_levels

#: how many words of a mission the policy reads; the longest BossLevel missions stay below it
DEFAULT_MAX_INSTRUCTION_LENGTH = 48

ObsDict = dict[str, np.ndarray]


def silence_rejection_sampling() -> None:
    """Keep BabyAI's "Sampling rejected: ..." prints off the terminal.

    ``RoomGridLevel._gen_grid`` calls ``print`` on every rejected layout. A module-level
    ``print`` in that one module shadows the builtin there and nowhere else, so progress bars and
    the user's own prints are untouched (``contextlib.redirect_stdout`` would swallow those too).
    """
    from minigrid.envs.babyai.core import roomgrid_level

    def _drop(*args: object, **kwargs: Any) -> None:
        return None

    roomgrid_level.print = _drop  # type: ignore[attr-defined]


def babyai_levels() -> list[str]:
    """Every registered BabyAI level id."""
    return sorted(k for k in gym.registry if k.startswith("BabyAI-"))


def mission_levels() -> list[str]:
    """Every registered MiniGrid and BabyAI id: envs whose observations carry a mission."""
    return sorted(k for k in gym.registry if k.startswith(("BabyAI-", "MiniGrid-")))


#: what an env must observe for the language family to read it (minigrid's own observation)
MISSION_KEYS = ("image", "direction", "mission")


def make_level(level: str, render_mode: str | None = None, fast_view: bool = True) -> gym.Env:
    """One env: a registered id (any MiniGrid or BabyAI level, or your own registered env), or a
    ``package.module:Class`` entry point constructed with ``render_mode``.

    ``fast_view``: a minigrid env observes through :func:`film_rl.tasks.minigrid_view.egocentric_view`,
    minigrid's own observation, array for array, without the grid copies ``gen_obs`` makes at every step.
    """
    if level in gym.registry:
        env = gym.make(level, render_mode=render_mode)
    else:
        env = load_env_creator(level)(render_mode=render_mode)  # type: ignore[assignment]
    if fast_view:
        use_fast_view(env)
    return env


def check_levels(levels: Sequence[str]) -> None:
    """Every id must make an env with minigrid's observation (a symbolic view, a direction and a
    mission): a registered MiniGrid or BabyAI id, another registered id, or a
    ``package.module:Class`` entry point. A typo gets the closest registered ids suggested."""
    if not levels:
        raise UserError("env.levels is empty: name at least one BabyAI or MiniGrid level")
    for level in levels:
        if level.startswith("ALE/"):
            raise UserError(f"'{level}' is an Atari game: set env.kind=atari (or use an atari-* env recipe)")
        if level.startswith(("BabyAI-", "MiniGrid-")) or level in gym.registry:
            if level not in gym.registry:
                raise UserError(f"unknown env id '{level}'{did_you_mean(level, mission_levels())}")
            if level.startswith(("BabyAI-", "MiniGrid-")):
                continue  # minigrid's own: its observation is the one the family reads
        elif ":" in level:
            try:
                load_env_creator(level)
            except (ImportError, AttributeError, ValueError) as err:
                raise UserError(f"env entry point '{level}' cannot be imported: {err}") from None
        else:
            raise UserError(
                f"unknown env id '{level}'{did_you_mean(level, mission_levels())} "
                "(a registered id, or a package.module:Class entry point)"
            )
        _check_observation(level)


def _check_observation(level: str) -> None:
    try:
        env = make_level(level)
    except Exception as err:  # a user's env that cannot be made is bad input, said in one line
        raise UserError(f"cannot make env '{level}': {type(err).__name__}: {err}") from None
    space = env.observation_space
    env.close()
    keys = list(space.spaces) if isinstance(space, spaces.Dict) else []
    missing = [k for k in MISSION_KEYS if k not in keys]
    if missing:
        raise UserError(
            f"env '{level}' observes {keys or type(space).__name__}, not minigrid's {{image, direction, mission}} "
            f"(missing: {', '.join(missing)})"
        )


def check_bot_levels(levels: Sequence[str]) -> None:
    """BabyAI levels only: BabyAI's bot, which makes goal states, plays nothing else."""
    if not levels:
        raise UserError("no level given: name at least one BabyAI level")
    known = babyai_levels()
    for level in levels:
        if level not in gym.registry:
            raise UserError(f"unknown env id '{level}'{did_you_mean(level, known)}")
        if level not in known:
            raise UserError(f"'{level}' is not a BabyAI level: BabyAI's bot plays those only")


def policy_input(obs: dict[str, Any], tokens: np.ndarray, length: int) -> ObsDict:
    """Minigrid's observation as the policy reads it: the image channels-first, the direction,
    the mission's token ids (see :meth:`Vocabulary.encode`) and its length."""
    return {
        "image": np.ascontiguousarray(np.asarray(obs["image"]).transpose(2, 0, 1), dtype=np.uint8),
        "direction": np.array([obs["direction"]], np.int64),
        "instruction": tokens.copy(),
        "instruction_length": np.array([length], np.int64),
    }


class InstructionWrapper(gym.Wrapper[ObsDict, int, dict[str, Any], int], gym.utils.RecordConstructorArgs):
    """Turn minigrid's ``{image, direction, mission}`` into integer arrays a network can read.

    The image becomes channels-first ``(3, 7, 7)`` uint8 (so SB3 does not transpose it), the
    mission a fixed-length ``int64`` token ``Box`` plus its length. Integer ``Box`` spaces, not
    ``Discrete``/``MultiDiscrete``, keep SB3 from one-hot encoding them.

    :param env: a minigrid / BabyAI environment.
    :param vocab: the fixed vocabulary; unknown words become ``<unk>`` and are counted.
    :param max_length: tokens kept per mission (longer missions are cut).
    """

    def __init__(self, env: gym.Env, vocab: Vocabulary, max_length: int = DEFAULT_MAX_INSTRUCTION_LENGTH) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, vocab=vocab, max_length=max_length)
        super().__init__(env)
        self.vocab = vocab
        self.max_length = max_length
        h, w, c = env.observation_space["image"].shape  # type: ignore[index]
        self.observation_space = spaces.Dict(  # type: ignore[assignment]
            {
                "image": spaces.Box(0, 255, (c, h, w), np.uint8),
                "direction": spaces.Box(0, 3, (1,), np.int64),
                "instruction": spaces.Box(0, len(vocab) - 1, (max_length,), np.int64),
                "instruction_length": spaces.Box(0, max_length, (1,), np.int64),
            }
        )
        self._tokens = np.zeros(max_length, np.int64)
        self._length = 0

    def _observe(self, obs: dict[str, Any]) -> ObsDict:
        return policy_input(obs, self._tokens, self._length)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._tokens, self._length = self.vocab.encode(str(obs["mission"]), self.max_length)
        info["mission"] = obs["mission"]
        return self._observe(obs), info

    def step(self, action: int) -> tuple[ObsDict, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(obs), reward, terminated, truncated, info


class PreviousAction(gym.Wrapper[ObsDict, int, ObsDict, int], gym.utils.RecordConstructorArgs):
    """Add the action just taken to the observation as ``previous_action``: at an episode's start,
    when there is none yet, the number of actions (one past the last action's id).

    A memory holds only what its input showed it. The view alone says little of where the agent
    has been in a maze of rooms (GoTo); its own turns and steps do. IMPALA and R2D2 feed their
    LSTMs the previous action for this reason. An integer ``Box``, as the direction is, so SB3
    does not one-hot it.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        self.none = int(env.action_space.n)  # type: ignore[attr-defined]
        previous = spaces.Box(0, self.none, (1,), np.int64)
        self.observation_space = spaces.Dict({**env.observation_space.spaces, "previous_action": previous})  # type: ignore[attr-defined,assignment]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return {**obs, "previous_action": np.array([self.none], np.int64)}, info

    def step(self, action: int) -> tuple[ObsDict, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return {**obs, "previous_action": np.array([int(action)], np.int64)}, reward, terminated, truncated, info


class BabyAISuccess(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Mark each episode's end with ``info["is_success"]``, and each step with ``info["level"]``.

    BabyAI's verifier ends an episode with a positive reward exactly when the instruction was
    carried out, so success is ``terminated and reward > 0``. SB3 averages ``is_success`` into
    ``rollout/success_rate`` by itself. The level on every step lets a suite's training split
    what is computed per step (the critic's explained variance) by level.

    :param env: a BabyAI level (or :class:`MultiLevelEnv`).
    :param level: the level's name, reported per episode for per-level success rates.
    """

    def __init__(self, env: gym.Env, level: str) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, level=level)
        super().__init__(env)
        self.level = level

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info.setdefault("is_success", bool(terminated and float(reward) > 0))  # DoneActionEnds sets its own
        # a suite's MultiLevelEnv knows the level; wrappers in between do not forward attributes
        info["level"] = getattr(self.env.unwrapped, "current_level", self.level)
        return obs, reward, terminated, truncated, info


def playing(env: gym.Env) -> Any:
    """The BabyAI level an env is playing now: itself unwrapped, or a :class:`MultiLevelEnv`'s
    current level (wrappers in between do not forward attributes)."""
    base = env.unwrapped
    return getattr(base, "playing", base)


class PickupInfo(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Name what the agent picks up: ``info["picked_up"] = "red ball"`` on the step it does, and
    on missions that say which object to pick up (pick up, put next), ``info["picked_up_meant"]``:
    whether it is one the mission means (minigrid's ``ObjDesc.obj_set``, location included).

    What a policy picks up first on a pick-up or put-next mission shows which words of the
    description it reads: one that reads the type but not the colour holds a ball of the wrong
    colour, one that does not read the location holds the ball on the wrong side
    (:func:`film_rl.tasks.babyai.first_pickups` counts them in an evaluation). Only the
    evaluation env wears it: training reads nothing of it.

    :param env: a wrapped BabyAI level or :class:`MultiLevelEnv` (it reads ``unwrapped.carrying``).
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        self._meant: list[Any] = []  # the descriptions of the objects to pick up

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._meant = objects_to_pick_up(getattr(playing(self.env), "instrs", None))
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        before = getattr(playing(self.env), "carrying", None)
        obs, reward, terminated, truncated, info = self.env.step(action)
        carrying = getattr(playing(self.env), "carrying", None)
        if carrying is not None and carrying is not before:
            info["picked_up"] = f"{carrying.color} {carrying.type}"
            if self._meant:
                info["picked_up_meant"] = any(carrying is o for desc in self._meant for o in desc.obj_set)
        return obs, reward, terminated, truncated, info


def action_instructions(instr: Any) -> list[Any]:
    """The single actions (go to, pick up, open, put next) of a BabyAI instruction, in order:
    a sequence's (before / after / and) two halves unfolded."""
    if instr is None:
        return []
    if hasattr(instr, "instr_a"):
        return action_instructions(instr.instr_a) + action_instructions(instr.instr_b)
    return [instr]


def objects_to_pick_up(instr: Any) -> list[Any]:
    """The descriptions (minigrid's ``ObjDesc``) of the objects a BabyAI instruction says to pick
    up: a pick-up's object, a put-next's object to move; sequences included."""
    actions = action_instructions(instr)
    return [
        a.desc if isinstance(a, PickupInstr) else a.desc_move
        for a in actions
        if isinstance(a, (PickupInstr, PutNextInstr))
    ]


def object_descriptions(instr: Any) -> list[Any]:
    """Every object description (minigrid's ``ObjDesc``) of a BabyAI instruction, sequences included."""
    names = ("desc", "desc_move", "desc_fixed")
    return [
        d for action in action_instructions(instr) for d in (getattr(action, n, None) for n in names) if d is not None
    ]


def fitting_all_but_location(desc: Any, cells: list[Any]) -> list[Any]:
    """The objects among ``cells`` that fit a description's type and colour, wherever they lie."""
    return [c for c in cells if desc.type in (None, c.type) and desc.color in (None, c.color)]


def objects_in_start_room(level: Any) -> list[Any]:
    """The objects of the room the agent starts in (the whole grid for a plain MiniGrid level):
    minigrid's locations apply only there (``ObjDesc.find_matching_objs``)."""
    room = level.room_from_pos(*level.agent_pos) if hasattr(level, "room_from_pos") else None
    grid = level.grid
    return [
        cell
        for i in range(grid.width)
        for j in range(grid.height)
        if (cell := grid.get(i, j)) is not None and (room is None or room.pos_inside(i, j))
    ]


def location_decides(level: Any) -> bool | None:
    """Whether a location in the mission picks its object out: some object of the grid fits a
    description's type and colour but not its location. ``None`` when no description names one.

    "Pick up the ball on your left" in a room with one ball is read without its location; with a
    second ball on the right, only a policy that read the location, and recalls which side was its
    left when the episode began, picks the right one. Read at the reset, when the level has just
    matched each description against the agent's starting pose (``ObjDesc.obj_set``).

    :param level: a BabyAI level, unwrapped.
    """
    located = [d for d in object_descriptions(getattr(level, "instrs", None)) if getattr(d, "loc", None)]
    if not located:
        return None
    cells = objects_in_start_room(level)
    return any(len(fitting_all_but_location(desc, cells)) > len(desc.obj_set) for desc in located)


def location_odds(level: Any) -> float | None:
    """Where a location decides which object to pick up: the chance that a policy ignoring the
    location picks the one meant, choosing uniformly among the objects of its room that fit the
    type and colour (the objects meant over those, for the first such description). ``None`` where
    no location decides an object to pick up.

    :param level: a BabyAI level, unwrapped, just reset.
    """
    cells = objects_in_start_room(level)
    for desc in objects_to_pick_up(getattr(level, "instrs", None)):
        if getattr(desc, "loc", None):
            fits = fitting_all_but_location(desc, cells)
            if len(fits) > len(desc.obj_set):
                return len(desc.obj_set) / len(fits)
    return None


class ResetInfo(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Add to each reset's ``info`` what :meth:`facts` reads off the level just reset: facts about
    the episode about to be played, for an evaluation to split its figures by. Only the evaluation
    env wears these.

    :param env: a wrapped BabyAI level or :class:`MultiLevelEnv`.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        info.update(self.facts(playing(self.env)))
        return obs, info

    def facts(self, level: Any) -> dict[str, Any]:
        """The facts of the episode ``level`` (unwrapped, just reset) is about to play."""
        raise NotImplementedError


class LocationInfo(ResetInfo):
    """Say at each reset whether the mission's location decides which object is meant:
    ``info["location_decides"]`` (:func:`location_decides`), on missions that name a location; and
    where it decides the object to pick up, ``info["location_odds"]`` (:func:`location_odds`): the
    chance of picking the right one without reading it.

    Success on missions naming a location mixes two kinds: those where one object fits the rest of
    the description anyway, and those where the location is the only way to tell two objects
    apart. Only the second show whether a policy reads (and remembers) locations; an evaluation
    splits them (:func:`film_rl.tasks.babyai.summarize`).
    """

    def facts(self, level: Any) -> dict[str, Any]:
        decides = location_decides(level)
        if decides is None:
            return {}
        odds = location_odds(level) if decides else None
        return {"location_decides": decides} | ({"location_odds": odds} if odds is not None else {})


#: where the object a mission sends the agent to first starts, nearest first (:func:`object_meant_starts`)
OBJECT_MEANT_STARTS = ("in view", "in the agent's room", "in another room")


def first_object_meant(instr: Any) -> Any | None:
    """The description (minigrid's ``ObjDesc``) of the object a single-action mission sends the
    agent to first: the one to go to, pick up or open, a put-next's object to move. ``None`` for
    sequences (BossLevel), whose halves each have their own."""
    if len(action_instructions(instr)) != 1:
        return None
    descriptions = object_descriptions(instr)  # a put-next's object to move before its target
    return descriptions[0] if descriptions else None


def object_meant_starts(level: Any) -> str | None:
    """Where the object a mission sends the agent to first lies when the episode begins: ``in
    view`` (the agent's first observation shows it, walls and doors hiding what they hide), else
    ``in the agent's room`` (a door on the room's wall counts), else ``in another room``; where
    several objects fit the description, the nearest of these counts. ``None`` for sequences.

    A memoryless policy reaches an object in view by following what it sees, one in its room by
    turning about, and one in another room only by searching rooms it cannot remember having
    searched: on GoTo, success falls where the object starts in another room (docs/results.md),
    which success alone hides.

    :param level: a BabyAI level, unwrapped, just reset (``ObjDesc.obj_poss`` set by its verifier).
    """
    desc = first_object_meant(getattr(level, "instrs", None))
    if desc is None or not desc.obj_poss:
        return None
    if any(level.agent_sees(x, y) for x, y in desc.obj_poss):
        return OBJECT_MEANT_STARTS[0]
    room = level.room_from_pos(*level.agent_pos) if hasattr(level, "room_from_pos") else None
    if room is None or any(room.pos_inside(x, y) for x, y in desc.obj_poss):
        return OBJECT_MEANT_STARTS[1]
    return OBJECT_MEANT_STARTS[2]


class StartInfo(ResetInfo):
    """Say at each reset where the object the mission sends the agent to first lies:
    ``info["object_meant_starts"]`` (:func:`object_meant_starts`), on single-action missions.

    On the multi-room levels (GoTo, Pickup, Open) most objects meant start out of sight, some in
    another room; an evaluation splits success by where (:func:`film_rl.tasks.babyai.summarize`),
    which says whether a policy fails at reading the mission or at finding what it read.
    """

    def facts(self, level: Any) -> dict[str, Any]:
        where = object_meant_starts(level)
        return {} if where is None else {"object_meant_starts": where}


class PutNextInfo(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Say which part of a put-next mission the agent carried out: ``info["carrying_object_to_move"]``
    on each step it holds an object the mission says to move, ``info["dropped_next_to_target"]`` on
    a step it drops anything beside an object the mission says to put it next to.

    A success needs both at once (the named object, dropped beside the named one), which a random
    policy manages in ~1% of PutNextLocal's episodes: while success sits at that floor, these say
    whether a policy has learnt either part (:func:`film_rl.tasks.babyai.put_next_parts` counts
    them in an evaluation). Beside, as minigrid's verifier has it: one cell apart, not diagonally,
    from a target's position after the drop (the level updates ``obj_poss`` on every drop). On
    sequences (BossLevel) the flags cover every put-next in the mission. Only the evaluation env
    wears it.

    :param env: a wrapped BabyAI level or :class:`MultiLevelEnv`.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        self._instrs: list[Any] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        actions = action_instructions(getattr(playing(self.env), "instrs", None))
        self._instrs = [action for action in actions if isinstance(action, PutNextInstr)]
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        before = getattr(playing(self.env), "carrying", None)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not self._instrs:
            return obs, reward, terminated, truncated, info
        carrying = getattr(playing(self.env), "carrying", None)
        if carrying is not None and any(carrying is o for i in self._instrs for o in i.desc_move.obj_set):
            info["carrying_object_to_move"] = True
        if before is not None and carrying is None:  # dropped: minigrid set its cur_pos
            (x, y) = before.cur_pos
            targets = [pos for i in self._instrs for pos in i.desc_fixed.obj_poss]
            if any(abs(x - tx) + abs(y - ty) == 1 for tx, ty in targets):
                info["dropped_next_to_target"] = True
        return obs, reward, terminated, truncated, info


class DoneActionEnds(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """AGILE's episodes: the policy, not the level, says when the instruction is carried out.

    The level's verifier no longer ends the episode on success; minigrid's ``done`` action ends it
    (or the time limit, or a verifier failure such as picking up the wrong object). In an AGILE run
    the reward is always 0: the reward model's judgement of the state at ``done`` replaces it
    (:class:`film_rl.agile.training.RewardModelReward`), so the level's reward must never reach the policy.
    Whether the verifier reported success at any step is kept as the ground truth in
    ``info["is_success"]`` at the episode's end, which is what ``rollout/success_rate`` logs.

    ``reward_success``: instead, pay 1 for a ``done`` said right after a step the verifier called a
    success: BabyAI's own rule for ``done`` (``verifier.ActionInstr.verify`` under
    ``BABYAI_DONE_ACTIONS``), i.e. ``done`` said *in* a goal state, the state AGILE's reward model
    judges. This is the true reward in AGILE's episodes, the comparison of Bahdanau et al. (2019),
    whose RL baseline must also learn to say ``done``. A ``done`` said after walking on past the
    target is not paid, though the episode still counts as a success in ``info["is_success"]``.

    >>> import gymnasium as gym
    >>> env = DoneActionEnds(gym.make("BabyAI-GoToRedBallGrey-v0"))
    >>> _ = env.reset(seed=0)
    >>> env.step(env.unwrapped.actions.done)[1:4]  # reward, terminated, truncated
    (0.0, True, False)

    :param env: a BabyAI level (or :class:`MultiLevelEnv`).
    :param reward_success: reward 1 at ``done`` after the verifier's success (no reward model).
    """

    def __init__(self, env: gym.Env, reward_success: bool = False) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, reward_success=reward_success)
        super().__init__(env)
        self.done_action = int(env.unwrapped.actions.done)  # type: ignore[attr-defined]
        self.reward_success = reward_success
        self._succeeded = False  # the verifier reported success at some step of this episode
        self._in_goal = False  # ... at the last step

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._succeeded = self._in_goal = False
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        said_done = int(action) == self.done_action
        paid = 1.0 if self.reward_success and said_done and self._in_goal else 0.0
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._in_goal = terminated and float(reward) > 0
        self._succeeded = self._succeeded or self._in_goal
        terminated = said_done or (terminated and not self._in_goal)
        if terminated or truncated:
            info["is_success"] = self._succeeded
        return obs, paid, terminated, truncated, info


class MultiLevelEnv(gym.Env[Any, Any]):
    """Several BabyAI levels behind one env; each episode plays a level drawn at random.

    All BabyAI levels share observation and action spaces, so one policy can serve them all.

    :param levels: registered level ids.
    :param render_mode: passed to every level.
    :param fast_view: see :func:`make_level`.
    """

    def __init__(self, levels: Sequence[str], render_mode: str | None = None, fast_view: bool = True) -> None:
        self.levels = list(levels)
        self.envs = [make_level(level, render_mode=render_mode, fast_view=fast_view) for level in self.levels]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.render_mode = render_mode
        self.metadata = self.envs[0].metadata
        self.actions = self.envs[0].unwrapped.actions  # type: ignore[attr-defined]  # minigrid's, shared by all
        self._current = 0

    @property
    def current_level(self) -> str:
        return self.levels[self._current]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self._current = int(self.np_random.integers(len(self.envs)))
        level_seed = int(self.np_random.integers(2**31 - 1))
        return self.envs[self._current].reset(seed=level_seed, options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        return self.envs[self._current].step(action)

    @property
    def playing(self) -> gym.Env:
        """The level being played, unwrapped (what a wrapper reads a level's state from)."""
        return self.envs[self._current].unwrapped

    @property
    def carrying(self) -> Any:
        """What the agent holds in the level being played (minigrid's ``carrying``)."""
        return getattr(self.playing, "carrying", None)

    def render(self) -> Any:
        return self.envs[self._current].render()

    def close(self) -> None:
        for env in self.envs:
            env.close()


class ScaleReward(gym.RewardWrapper[Any, Any], gym.utils.RecordConstructorArgs):
    """Multiply the training reward (BabyAI's PPO used x20); Monitor keeps the raw return."""

    def __init__(self, env: gym.Env, scale: float) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, scale=scale)
        super().__init__(env)
        self.scale = scale

    def reward(self, reward: SupportsFloat) -> float:
        return float(reward) * self.scale


class TimeoutIsTerminal(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """The level's step limit ends an episode as a terminal state (``terminated``, not
    ``truncated``), so PPO values what follows a timeout at 0, as BabyAI's own PPO did (torch-ac
    masks every ``done``), where SB3 bootstraps a truncated episode's last return from the critic.

    Why a run may want it: a BabyAI level's limit is part of its task (success is judged within
    it, and the reward falls with the steps taken), and the policy does not see the clock, so the
    critic's value of a cut episode's last state is that of the same state early in an episode: a
    timeout is paid as if the episode could still succeed.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, False, info


class EpisodeMonitor(Monitor, gym.utils.RecordConstructorArgs):
    """SB3's ``Monitor`` (episode return, length, ``is_success``, level), recreatable from its spec."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env, info_keywords=("is_success", "level"))


def make_babyai_env(
    levels: Sequence[str],
    vocab: Vocabulary,
    *,
    max_length: int = DEFAULT_MAX_INSTRUCTION_LENGTH,
    reward_scale: float = 1.0,
    render_mode: str | None = None,
    done_action_ends: bool = False,
    reward_success_at_done: bool = False,
    holdout: Holdout | None = None,
    split: Split = "train",
    fast_view: bool = True,
    timeout_bootstrap: bool = True,
    previous_action: bool = False,
) -> gym.Env:
    """One wrapped env over ``levels``: a single level, or a per-episode draw among several.

    ``done_action_ends``: AGILE's episodes; ``reward_success_at_done``: with the true reward paid
    at ``done`` (see :class:`DoneActionEnds`). ``holdout``: play only the missions of ``split``
    (below every wrapper, so nothing above ever sees a mission of the other split). ``fast_view``:
    see :func:`make_level`. ``timeout_bootstrap=False``: see :class:`TimeoutIsTerminal`.
    ``previous_action``: see :class:`PreviousAction`.
    """
    silence_rejection_sampling()  # idempotent; here, because every BabyAI env is made here
    if len(levels) == 1:
        env: gym.Env = make_level(levels[0], render_mode=render_mode, fast_view=fast_view)
    else:
        env = MultiLevelEnv(levels, render_mode=render_mode, fast_view=fast_view)
    if holdout:
        env = SplitFilter(env, holdout, split)
    if done_action_ends:
        env = DoneActionEnds(env, reward_success=reward_success_at_done)
    env = BabyAISuccess(env, levels[0])
    env = InstructionWrapper(env, vocab, max_length)
    if previous_action:
        env = PreviousAction(env)
    env = EpisodeMonitor(env)
    if reward_scale != 1.0:
        env = ScaleReward(env, reward_scale)
    if not timeout_bootstrap:
        env = TimeoutIsTerminal(env)
    return env


def make_vec_env(
    levels: Sequence[str],
    vocab: Vocabulary,
    n_envs: int,
    *,
    seed: int,
    sampling: str = "episode",
    max_length: int = DEFAULT_MAX_INSTRUCTION_LENGTH,
    reward_scale: float = 1.0,
    subprocess: bool = False,
    done_action_ends: bool = False,
    reward_success_at_done: bool = False,
    fast_view: bool = True,
) -> VecEnv:
    """``n_envs`` BabyAI workers, in subprocesses or in this process, seeded ``seed + i``."""
    workers = [
        functools.partial(
            make_babyai_env,
            ls,
            vocab,
            max_length=max_length,
            reward_scale=reward_scale,
            done_action_ends=done_action_ends,
            reward_success_at_done=reward_success_at_done,
            fast_view=fast_view,
        )
        for ls in worker_levels(levels, n_envs, sampling)
    ]
    return vec_env.make_vec_env(workers, seed, subprocess)
