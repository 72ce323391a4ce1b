"""Goal-state datasets: what the world looks like, to the policy, when an instruction has been carried out.

AGILE (Bahdanau et al. 2019, "Learning to Understand Goal Specifications by Modelling Reward")
trains a reward model to tell whether an observation satisfies an instruction; its positive
examples are (instruction, goal state) pairs. Here they come from minigrid's BabyAI bot: each
episode is played by the bot, and when the level's own verifier declares success, the
observation of that step is kept together with the mission's tokens.

Observations and tokens come out of :func:`film_rl.tasks.babyai_envs.make_babyai_env`, the same wrappers the
policy is trained behind, so a stored state is bit for bit what the policy would see.

On disk a dataset is one ``.npz`` file (no pickled objects; read with ``allow_pickle=False``)::

    instructions  (N, L) int64    token ids, padded with 0 to L (InstructionWrapper's encoding)
    lengths       (N,)   int64    real tokens per row
    images        (N, 3, 7, 7) uint8  the egocentric view at success, channels first
    directions    (N,)   int64    the agent's direction at success (0-3)
    levels        (N,)   int64    index into level_names
    level_names   (K,)   str      BabyAI level ids
    missions      (N,)   str      the mission text
    seeds         (N,)   int64    the reset seed of the episode each state ends
    meta          ()     str      JSON: schema "film-rl/goals", schema_version, vocab (the token
                                  list, <pad> and <unk> first), episodes_attempted, bot_failures,
                                  bot_errors, seed, film_rl_version

Episode ``i`` plays ``levels[i % len(levels)]``, reset with seed ``seed + i``, so any state can
be replayed from its level and seed.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from film_rl.errors import UserError
from film_rl.files import write_atomically
from film_rl.tasks.babyai_envs import DEFAULT_MAX_INSTRUCTION_LENGTH, check_bot_levels, make_babyai_env
from film_rl.tasks.holdout import Holdout
from film_rl.tasks.instructions import Vocabulary, instruction_kind
from film_rl.version import __version__

if TYPE_CHECKING:
    import gymnasium as gym

SCHEMA = "film-rl/goals"
SCHEMA_VERSION = 1

#: every array of the file, with the shape of one row (``None``: any length, checked elsewhere)
ROW_SHAPES: dict[str, tuple[int | None, ...]] = {
    "instructions": (None,),
    "lengths": (),
    "images": (3, 7, 7),
    "directions": (),
    "levels": (),
    "missions": (),
    "seeds": (),
}
#: numpy dtype kinds each array may have: integers, unsigned bytes, unicode text
DTYPE_KINDS = {name: "iu" for name in ROW_SHAPES} | {"images": "u", "missions": "U", "level_names": "U"}
ARRAYS = (*ROW_SHAPES, "level_names", "meta")
META_KEYS = ("schema", "schema_version", "vocab", "episodes_attempted", "bot_failures", "bot_errors", "seed")


def vocab_fingerprint(words: Sequence[str]) -> str:
    """First 12 hex digits of the SHA-256 of the token list: one short name per vocabulary."""
    return hashlib.sha256(json.dumps(list(words)).encode()).hexdigest()[:12]


@dataclass(eq=False)
class GoalDataset:
    """Goal states with their instructions, one row per episode the bot solved.

    :param meta: how the file was made (see the module docstring); subsets keep their parent's.
        A loaded file's ``schema`` and ``schema_version`` are the file's; saving writes the current ones.
    """

    instructions: np.ndarray
    lengths: np.ndarray
    images: np.ndarray
    directions: np.ndarray
    levels: np.ndarray
    level_names: list[str]
    missions: np.ndarray
    seeds: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.missions)

    @property
    def vocab(self) -> Vocabulary:
        """The vocabulary the instructions were encoded with."""
        return Vocabulary(self.meta["vocab"][2:])

    def level_counts(self) -> dict[str, int]:
        """Goal states per level, in ``level_names`` order."""
        counts = np.bincount(self.levels, minlength=len(self.level_names))
        return {name: int(c) for name, c in zip(self.level_names, counts, strict=True)}

    def kinds(self) -> dict[str, int]:
        """Goal states per instruction kind (``go to``, ``pick up``, ``open``, ``put next``, ``sequence``)."""
        return dict(Counter(instruction_kind(str(m)) for m in self.missions).most_common())

    def subset(self, index: np.ndarray) -> GoalDataset:
        """The rows ``index`` (integer positions or a boolean mask), levels and meta unchanged."""
        return replace(
            self,
            **{name: getattr(self, name)[index] for name in ROW_SHAPES},
            level_names=list(self.level_names),
            meta=dict(self.meta),
        )

    def split(self, fraction: float, seed: int = 0) -> tuple[GoalDataset, GoalDataset]:
        """``(train, held_out)``: a random ``fraction`` of the states held out, both in file order.

        The same ``seed`` gives the same split, so a held-out accuracy is comparable across runs.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"held-out fraction must be between 0 and 1, got {fraction}")
        order = np.random.default_rng(seed).permutation(len(self))
        held = np.zeros(len(self), dtype=bool)
        held[order[: round(fraction * len(self))]] = True
        return self.subset(~held), self.subset(held)

    def save(self, path: str | Path) -> None:
        """Write the ``.npz`` file atomically (never half a file at ``path``), readable by whoever could
        read a plain file there (the umask decides, not a private temporary file's 0600)."""
        path = Path(path)
        arrays = {name: getattr(self, name) for name in ROW_SHAPES}
        arrays["level_names"] = np.array(self.level_names, dtype=str)
        meta = {**self.meta, "schema": SCHEMA, "schema_version": SCHEMA_VERSION}
        arrays["meta"] = np.array(json.dumps(meta))
        write_atomically(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__


def load_goals(path: str | Path, vocab: Vocabulary | None = None) -> GoalDataset:
    """Read and check a goal-state file; every problem is a one-line :class:`UserError` naming the file.

    :param vocab: when given, the file must have been encoded with this vocabulary (token ids
        from another one would silently mean other words).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such goal-state file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a goal-state file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a goal-state file (not an .npz archive); it may be truncated or corrupted")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [name for name in ARRAYS if name not in npz.files]
            if missing:
                raise UserError(f"{path} is not a complete goal-state file: missing array(s) {', '.join(missing)}")
            arrays = {name: npz[name] for name in ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise UserError(f"{path} is unreadable ({_first_line(err)}); it may be truncated or corrupted") from None

    meta = _read_meta(path, arrays["meta"])
    for name, kinds in DTYPE_KINDS.items():
        if arrays[name].dtype.kind not in kinds:
            raise UserError(f"{path}: '{name}' has dtype {arrays[name].dtype}; not a film-rl goal-state file")
    if arrays["missions"].ndim != 1:
        raise UserError(f"{path}: 'missions' has shape {arrays['missions'].shape}, expected one mission per state")
    rows = len(arrays["missions"])
    for name, row_shape in ROW_SHAPES.items():
        array = arrays[name]
        if array.ndim != 1 + len(row_shape) or len(array) != rows:
            raise UserError(
                f"{path}: inconsistent arrays: '{name}' has shape {array.shape} but there are {rows} missions"
            )
        if any(want is not None and want != got for want, got in zip(row_shape, array.shape[1:], strict=True)):
            raise UserError(f"{path}: '{name}' has shape {array.shape}, expected rows of shape {row_shape}")
    level_names = [str(name) for name in arrays["level_names"].reshape(-1)]
    if rows and (arrays["levels"].min() < 0 or arrays["levels"].max() >= len(level_names)):
        raise UserError(f"{path}: inconsistent arrays: 'levels' indexes past the {len(level_names)} level names")
    if vocab is not None and vocab.itos != meta["vocab"]:
        raise UserError(
            f"{path} was encoded with another vocabulary ({len(meta['vocab'])} tokens, "
            f"{vocab_fingerprint(meta['vocab'])}) than this one ({len(vocab)} tokens, {vocab_fingerprint(vocab.itos)})"
        )
    return GoalDataset(
        instructions=arrays["instructions"].astype(np.int64, copy=False),
        lengths=arrays["lengths"].astype(np.int64, copy=False),
        images=arrays["images"].astype(np.uint8, copy=False),
        directions=arrays["directions"].astype(np.int64, copy=False),
        levels=arrays["levels"].astype(np.int64, copy=False),
        level_names=level_names,
        missions=arrays["missions"],
        seeds=arrays["seeds"].astype(np.int64, copy=False),
        meta=meta,
    )


def describe(path: str | Path) -> dict[str, Any]:
    """What ``film-rl goals info`` reports: size, counts per level and instruction kind, provenance."""
    path = Path(path)
    dataset = load_goals(path)
    meta = dataset.meta
    return {
        "path": str(path),
        "states": len(dataset),
        "schema": meta["schema"],
        "schema_version": meta["schema_version"],
        "file_bytes": path.stat().st_size,
        "levels": dataset.level_counts(),
        "kinds": dataset.kinds(),
        "instruction_length": int(dataset.instructions.shape[1]),
        "vocab_size": len(meta["vocab"]),
        "vocab_fingerprint": vocab_fingerprint(meta["vocab"]),
        "episodes_attempted": meta["episodes_attempted"],
        "bot_failures": meta["bot_failures"],
        "bot_errors": meta["bot_errors"],
        "seed": meta["seed"],
        "film_rl_version": meta.get("film_rl_version"),
    }


def _read_meta(path: Path, array: np.ndarray) -> dict[str, Any]:
    try:
        meta = json.loads(str(array.item()))
    except (ValueError, TypeError):
        meta = None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: 'meta' is not a JSON object; not a film-rl goal-state file")
    if meta.get("schema") != SCHEMA:
        raise UserError(f"{path}: schema {meta.get('schema')!r} is not {SCHEMA!r}; not a film-rl goal-state file")
    version = meta.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise UserError(f"{path}: invalid schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{path}: schema_version {version} is newer than this film-rl reads ({SCHEMA_VERSION}); upgrade film-rl"
        )
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise UserError(f"{path}: 'meta' lacks {', '.join(missing)}")
    if not isinstance(meta["vocab"], list) or meta["vocab"][:2] != Vocabulary([]).itos:
        raise UserError(f"{path}: 'meta' holds no film-rl vocabulary")
    return meta


def _bot_episode(env: gym.Env, seed: int) -> tuple[dict[str, np.ndarray] | None, str, bool]:
    """One episode played by BabyAI's bot: (observation at success or None, mission, whether the bot raised)."""
    from minigrid.utils.baby_ai_bot import BabyAIBot

    obs, info = env.reset(seed=seed)
    mission = str(info["mission"])
    try:
        bot = BabyAIBot(env.unwrapped)
    except Exception:  # the bot asserts on instructions it cannot plan for
        return None, mission, True
    while True:
        try:
            action = bot.replan()
        except Exception:  # its asserts, DisappearedBoxError, IndexError: levels it cannot solve
            return None, mission, True
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return (obs if info["is_success"] else None), mission, False


def make_goals(
    levels: Sequence[str],
    episodes: int,
    seed: int,
    vocab: Vocabulary,
    *,
    max_length: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    holdout: Holdout | None = None,
    fast_view: bool = True,
) -> GoalDataset:
    """Let BabyAI's bot play ``episodes`` episodes and keep the goal state of each one it solves.

    :param levels: BabyAI level ids; episode ``i`` plays ``levels[i % len(levels)]`` with seed
        ``seed + i``, so every level gets its share and any state can be replayed.
    :param vocab: the policy's vocabulary; the file records it, and a reader can insist on it.
    :param max_length: tokens per instruction; ``None`` is the policy's default.
    :param progress: called after every episode with (episodes done, goal states kept).
    :param holdout: play only the missions training may see (a held-out one is redrawn).
    :param fast_view: observe through film-rl's copy of minigrid's observation (``env.fast_view``).
    """
    if episodes <= 0:
        raise UserError(f"episodes must be positive, got {episodes}")
    levels = list(dict.fromkeys(levels))  # a level named twice is still one level
    check_bot_levels(levels)
    length = DEFAULT_MAX_INSTRUCTION_LENGTH if max_length is None else max_length
    envs = [
        make_babyai_env([level], vocab, max_length=length, holdout=holdout, fast_view=fast_view) for level in levels
    ]
    kept: list[tuple[dict[str, np.ndarray], str, int, int]] = []
    errors = 0
    try:
        for i in range(episodes):
            obs, mission, raised = _bot_episode(envs[i % len(envs)], seed + i)
            errors += raised
            if obs is not None:
                kept.append((obs, mission, i % len(envs), seed + i))
            if progress is not None:
                progress(i + 1, len(kept))
    finally:
        for env in envs:
            env.close()

    def column(key: str, row_shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return np.array([obs[key] for obs, *_ in kept], dtype=dtype).reshape(len(kept), *row_shape)

    return GoalDataset(
        instructions=column("instruction", (length,), np.int64),
        lengths=column("instruction_length", (), np.int64),
        images=column("image", (3, 7, 7), np.uint8),
        directions=column("direction", (), np.int64),
        levels=np.array([level for _, _, level, _ in kept], dtype=np.int64),
        level_names=list(levels),
        missions=np.array([mission for _, mission, _, _ in kept], dtype=str),
        seeds=np.array([s for *_, s in kept], dtype=np.int64),
        meta={
            "vocab": list(vocab.itos),
            "episodes_attempted": episodes,
            "bot_failures": episodes - len(kept),
            "bot_errors": errors,
            "seed": seed,
            "film_rl_version": __version__,
        },
    )
