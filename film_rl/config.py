"""Typed experiment configuration, composed from YAML recipes and ``key=value`` overrides.

An experiment file names an env recipe (``envs/NAME.yaml``) and an agent recipe
(``agents/NAME.yaml``) and adds the budget, seed, evaluation and logging. Loading resolves the
recipes, applies the experiment's own ``overrides`` and then the command line's, and checks every
key and type against the dataclasses below: an unknown key or a wrong type is a
:class:`~film_rl.errors.UserError` that names the key and its closest valid neighbours.

The resolved config (recipes inlined) is what a run saves as ``config.yaml``; loading that file
back needs no recipe folder.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from film_rl.errors import UserError, did_you_mean
from film_rl.files import write_yaml

# --------------------------------------------------------------------------- field declarations
# A field's metadata says what the types alone cannot: its range (checked wherever a config is
# typed, so that a value that parses but breaks the maths is refused before anything runs), and
# whether a run saved before the key existed may lack it (its default is then what that run did).


def bounded(
    default: Any, lo: float, hi: float, *, above: bool = False, below: bool = False, later: bool = False
) -> Any:
    """A field whose value lies in ``[lo, hi]`` (``above``: strictly above ``lo``; ``below``: strictly
    below ``hi``); ``None`` passes for an optional field."""
    return field(default=default, metadata={"range": (lo, hi, above, below), "later": later})


def later(default: Any) -> Any:
    """A field added after runs were first saved: a saved config may lack it."""
    return field(default=default, metadata={"later": True})


def _interval(lo: float, hi: float, above: bool, below: bool) -> str:
    return f"{'(' if above else '['}{lo:g}, {hi:g}{')' if below else ']'}"


def check_range(value: Any, metadata: Any, key: str) -> None:
    """Refuse a value outside its field's declared range (each item, for a list)."""
    if metadata.get("nonempty") and not value:
        raise UserError(f"{key} must not be empty")
    bounds = metadata.get("range")
    if bounds is None or value is None:
        return
    lo, hi, above, below = bounds
    for item in value if isinstance(value, list) else [value]:
        if item < lo or item > hi or (above and item == lo) or (below and item == hi):
            raise UserError(f"{key} must be in {_interval(lo, hi, above, below)}, got {item!r}")


def check_ranges(config: Any, prefix: str = "") -> None:
    """Every field of a config (built in code rather than parsed) against its declared range."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            check_ranges(value, key)
        else:
            check_range(value, f.metadata, key)


def missing_keys(cls: type[Any], data: Any, prefix: str = "") -> list[str]:
    """Keys of ``cls`` a saved config lacks (those added later excepted): an empty or truncated
    ``config.yaml`` must not quietly run on defaults."""
    if not isinstance(data, dict):
        return [prefix or "everything"]
    hints = typing.get_type_hints(cls)
    missing = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name not in data:
            if not f.metadata.get("later"):
                missing.append(key)
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(data[f.name], dict):
            missing += missing_keys(hints[f.name], data[f.name], key)
    return missing


Conditioning = Literal["film", "scale", "bias", "gate", "concat", "none"]
Encoder = Literal["gru", "bigru", "bow", "conv"]


@dataclass
class AtariConfig:
    """Atari preprocessing (``env.kind: atari``), done once: Machado et al. (2018) / SB3's AtariWrapper.

    Each game is ``ALE/<Game>-v5`` made with ``frameskip=1`` and ``full_action_space=True`` (18
    actions for every game), then gymnasium's ``AtariPreprocessing`` skips frames, max-pools and
    resizes: a v5 id's own frame skip is never stacked on top of it.
    """

    #: up to this many no-op actions at the start of every game
    noop_max: int = bounded(30, 0, 10_000)
    #: emulator frames per agent step (the action repeats; the last two frames are max-pooled)
    frame_skip: int = bounded(4, 1, 100)
    #: grayscale frames stacked in the observation
    frame_stack: int = bounded(4, 1, 64)
    #: side of the square grayscale frames
    #: at least 36: the Nature CNN's three convs need that many pixels
    screen_size: int = bounded(84, 36, 1024)
    #: a lost life ends the training episode (the game itself goes on, as SB3's EpisodicLifeEnv);
    #: evaluation always plays whole games
    terminal_on_life_loss: bool = True
    #: training rewards become their sign (DQN's clipping); logged and evaluated returns stay raw
    clip_rewards: bool = True
    #: sticky actions (ALE v5's default 0.25, Machado et al.); 0 for the deterministic DQN-era ALE
    repeat_action_probability: float = bounded(0.25, 0.0, 1.0)
    #: a game is truncated after this many emulator frames (108,000 = 30 minutes, the usual cap)
    max_episode_frames: int = bounded(108_000, 1, 10**9)


@dataclass
class EnvConfig:
    """Which BabyAI levels or Atari games, how many workers, and how the instruction is encoded."""

    #: ``babyai``: language missions; ``atari``: several ALE games, the game id as the instruction
    kind: Literal["babyai", "atari"] = later("babyai")
    #: BabyAI level ids, or ALE game ids (``ALE/Pong-v5``) when ``kind: atari``; several make a suite
    levels: list[str] = field(default_factory=lambda: ["BabyAI-GoToRedBallGrey-v0"], metadata={"nonempty": True})
    #: ``episode``: each episode draws a level (game); ``worker``: worker i always plays level i mod n
    sampling: Literal["episode", "worker"] = "episode"
    n_envs: int = bounded(8, 1, 1024)
    #: ``auto``: subprocesses when n_envs > 1 and the machine has at least 4 cores; on 2 cores the
    #: pipes cost more than they save (docs/results.md, vector envs on 2 cores)
    vec_env: Literal["auto", "subproc", "dummy"] = "auto"
    max_instruction_length: int = bounded(48, 1, 1024)
    #: training reward multiplier (BabyAI's PPO used 20); logged returns stay unscaled
    reward_scale: float = bounded(1.0, 0.0, 1e6, above=True)
    #: BabyAI training episodes: ``level``: the level ends them on success, with its own reward;
    #: ``done``: AGILE's episodes, ended by minigrid's ``done`` action, paying 1 for ``done`` said in
    #: a goal state (right after a step the level's verifier called a success; BabyAI's own rule):
    #: the true-reward comparison for AGILE, whose runs always end this way. Evaluation always
    #: plays the level's own episodes.
    episode_end: Literal["level", "done"] = later("level")
    #: preprocessing of Atari games (``kind: atari`` only)
    atari: AtariConfig = field(default_factory=AtariConfig, metadata={"later": True})


@dataclass
class AlgorithmConfig:
    """PPO / RecurrentPPO hyperparameters (SB3 names)."""

    n_steps: int = bounded(128, 1, 1_000_000)
    batch_size: int = bounded(256, 2, 1_000_000)
    n_epochs: int = bounded(4, 1, 1000)
    learning_rate: float = bounded(5e-4, 0.0, 1e9, above=True)
    gamma: float = bounded(0.99, 0.0, 1.0, above=True)
    gae_lambda: float = bounded(0.95, 0.0, 1.0)
    clip_range: float = bounded(0.2, 0.0, 10.0, above=True)
    ent_coef: float = bounded(0.01, 0.0, 100.0)
    vf_coef: float = bounded(0.5, 0.0, 100.0)
    max_grad_norm: float = bounded(0.5, 0.0, 1e6, above=True)
    adam_eps: float = bounded(1e-5, 0.0, 1.0, above=True)
    target_kl: float | None = bounded(None, 0.0, 100.0, above=True)
    #: standardise each minibatch's advantages (SB3's default). Off, a sparse reward's rare +1
    #: keeps its size beside the entropy bonus instead of the many small negatives being blown up
    normalize_advantage: bool = later(True)


@dataclass
class RewardModelConfig:
    """AGILE: a FiLM discriminator's judgement replaces the level's reward (see :mod:`film_rl.agile.training`).

    Episodes then end when the policy takes minigrid's ``done`` action, rewarded 1 when the
    discriminator finds that state a goal state for the instruction.
    """

    enabled: bool = False
    #: a goal-state file (``film-rl goals make``); none: the run makes one into RUN_DIR/goals.npz
    goals: str | None = None
    #: bot episodes per level when the run makes its own goal states
    goal_episodes: int = bounded(2000, 1, 10_000_000)
    #: the discriminator's conditioning (none: the policy's)
    conditioning: Conditioning | None = None
    #: reward 1 when D(instruction, state) is above this
    threshold: float = bounded(0.5, 0.0, 1.0, above=True, below=True)
    #: fraction of the policy's states D finds most goal-like left out of the negatives
    rho: float = bounded(0.25, 0.0, 1.0, below=True)
    #: fraction of the negatives that are goal states paired with another mission, which teach D
    #: to read the instruction (see film_rl.agile.reward_model.RewardModelTrainer)
    mismatched: float = bounded(0.5, 0.0, 1.0, later=True)
    learning_rate: float = bounded(1e-3, 0.0, 1.0, above=True)
    batch_size: int = bounded(64, 2, 1_000_000)
    #: discriminator steps between two rollouts
    updates_per_rollout: int = bounded(8, 1, 100_000)
    #: extra discriminator steps after the first rollout, before its rewards mean anything
    warmup_updates: int = bounded(100, 0, 10_000_000)
    #: recent policy states kept as negatives
    replay_capacity: int = bounded(10_000, 1, 100_000_000)


@dataclass
class AgentConfig:
    """The policy network, its conditioning and the algorithm that trains it."""

    #: ``cnn``: feed-forward, trained by PPO; ``lstm``: CNN + LSTM memory, trained by RecurrentPPO
    policy: Literal["cnn", "lstm"] = "cnn"
    conditioning: Conditioning = "film"
    encoder: Encoder = "gru"
    #: [16, 32]: faster than [32, 64] and learns GoToLocal as well (docs/results.md, conditioning)
    channels: list[int] = field(
        default_factory=lambda: [16, 32], metadata={"range": (1, 4096, False, False), "nonempty": True}
    )
    embed_dim: int = bounded(16, 1, 4096)
    #: at most the agent's 7x7 view
    kernel_size: int = bounded(2, 1, 7)
    pool: Literal["flatten", "max"] = "flatten"
    batch_norm: bool = False
    word_dim: int = bounded(32, 1, 4096)
    #: width of the instruction vector: the language encoder's output, or the Atari game embedding
    instruction_dim: int = bounded(128, 1, 4096)
    features_dim: int = bounded(128, 1, 65536)
    #: hidden layers of the actor and critic heads after the features (or the LSTM)
    net_arch: list[int] = field(default_factory=lambda: [64], metadata={"range": (1, 65536, False, False)})
    lstm_hidden: int = bounded(128, 1, 65536)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig, metadata={"later": True})

    def grid_network(self) -> dict[str, Any]:
        """The FiLM-ed grid network's settings, shared by the policy's features extractor and
        AGILE's discriminator (which may swap the conditioning)."""
        return {
            "conditioning": self.conditioning,
            "encoder": self.encoder,
            "channels": tuple(self.channels),
            "embed_dim": self.embed_dim,
            "kernel_size": self.kernel_size,
            "word_dim": self.word_dim,
            "instruction_dim": self.instruction_dim,
            "pool": self.pool,
            "batch_norm": self.batch_norm,
        }


@dataclass
class BudgetConfig:
    timesteps: int = bounded(100_000, 1, 10**12)
    #: stop early once the rolling training success rate reaches this (BabyAI's 0.99 criterion)
    stop_at_success: float | None = bounded(None, 0.0, 1.0, above=True, later=True)
    #: episodes in the rolling success rate (BabyAI uses 100)
    success_window: int = bounded(100, 1, 1_000_000, later=True)


@dataclass
class EvalConfig:
    #: episodes of the final evaluation written to eval.json
    episodes: int = bounded(200, 1, 10_000_000)
    #: argmax actions; off by default because a memoryless policy that sees the same view twice
    #: then repeats itself forever (e.g. turning in place), which sampling escapes
    deterministic: bool = False
    #: timesteps between evaluations during training (0: only the final one)
    freq: int = bounded(0, 0, 10**12)
    freq_episodes: int = bounded(50, 1, 10_000_000)


@dataclass
class CheckpointConfig:
    #: timesteps between checkpoints (Ctrl-C / SIGTERM always writes one)
    freq: int = bounded(50_000, 0, 10**12)
    #: how many periodic checkpoints to keep on disk
    keep: int = bounded(3, 1, 1_000_000)


@dataclass
class LoggingConfig:
    #: ``auto``: online when an API key is configured, offline otherwise
    wandb: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "film-rl"
    entity: str | None = None
    #: wandb group (empty: the experiment's name); a sweep groups its trials under its own name
    group: str = later("")
    #: extra wandb tags, e.g. a sweep trial's swept values
    tags: list[str] = field(default_factory=list, metadata={"later": True})
    tensorboard: bool = True
    progress_bar: bool = True


@dataclass
class ExperimentConfig:
    """Everything a training run needs; saved resolved as the run's ``config.yaml``."""

    name: str = "experiment"
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    seed: int = bounded(0, 0, 2**32 - 1)
    #: ``auto``: CUDA when available
    device: str = "auto"
    #: torch threads in the trainer process (0: torch's default)
    threads: int = bounded(0, 0, 1024)
    runs_dir: str = "runs"
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    #: the recipe names this config was composed from (tags on wandb)
    env_recipe: str = ""
    agent_recipe: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- typed conversion


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise UserError(
                f"{key}: {value!r} is not one of {', '.join(map(str, choices))}"
                + did_you_mean(str(value), map(str, choices))
            )
        return value
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            value = [value]  # a single level or width may be written without brackets
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, key)  # type: ignore[arg-type]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        number = _number(value)
        if number is None or isinstance(value, bool) or not float(number).is_integer():
            raise UserError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if tp is float:
        number = _number(value)
        if number is None or isinstance(value, bool) or not math.isfinite(number):
            raise UserError(f"{key}: expected a number, got {value!r}")
        return float(number)
    if tp is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp} for {key}")


def _number(value: Any) -> float | None:
    """Numbers as YAML 1.1 leaves them: ``2e5`` and ``1e-4`` arrive as strings."""
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def _from_dict(cls: type[Any], data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise UserError(f"unknown config key '{dotted}'{did_you_mean(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], dotted)
        check_range(kwargs[key], fields[key].metadata, dotted)
    return cls(**kwargs)


# --------------------------------------------------------------------------- composing recipes


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_bytes().decode())
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a YAML file (binary bytes); it may be corrupted") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level")
    return data


def recipe_dirs(kind: str, experiment_path: Path | None) -> list[Path]:
    """Where ``envs/`` or ``agents/`` recipes are looked up: beside the experiments folder, then the
    current directory, then the project checkout this package was installed from."""
    dirs = []
    if experiment_path is not None:
        dirs.append(experiment_path.resolve().parent.parent / kind)
    dirs.append(Path.cwd() / kind)
    dirs.append(Path(__file__).resolve().parent.parent / kind)
    return list(dict.fromkeys(dirs))


def _load_recipe(kind: str, name: str, experiment_path: Path | None, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A recipe's keys, its ``base:`` recipe's first (recursively), this recipe's own over them."""
    if name in seen:
        raise UserError(f"{kind[:-1]} recipe '{name}' inherits from itself: {' -> '.join([*seen, name])}")
    data = _find_recipe(kind, name, experiment_path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise UserError(f"{kind[:-1]} recipe '{name}': base must be a recipe name, got {base!r}")
    return merge(_load_recipe(kind, base, experiment_path, (*seen, name)), data)


def _find_recipe(kind: str, name: str, experiment_path: Path | None) -> dict[str, Any]:
    if name.endswith((".yaml", ".yml")):
        return read_yaml(Path(name))
    dirs = recipe_dirs(kind, experiment_path)
    for folder in dirs:
        path = folder / f"{name}.yaml"
        if path.is_file():
            return read_yaml(path)
    known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})
    raise UserError(f"unknown {kind[:-1]} recipe '{name}'{did_you_mean(name, known)} (looked in {dirs[0]})")


def merge(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``own`` over ``base``, section by section: a recipe states only what differs from its base."""
    out = dict(base)
    for key, value in own.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``agent.conditioning=concat`` -> (``agent.conditioning``, ``"concat"``); values are YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override '{text}' is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"cannot set '{key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def compose(raw: dict[str, Any], overrides: list[str], experiment_path: Path | None = None) -> ExperimentConfig:
    """Resolve recipe names, then apply the file's ``overrides`` and then ``overrides``, then type-check."""
    data = dict(raw)
    data.pop("sweep", None)  # what `film-rl sweep` varies (film_rl.sweep.runner); one run trains the base config
    file_overrides = data.pop("overrides", None) or {}
    if not isinstance(file_overrides, dict):
        raise UserError("overrides: expected a mapping of dotted keys to values")
    cli = [parse_override(o) for o in overrides]
    for key, value in cli:  # `env=NAME` / `agent=NAME` swap a recipe before anything is merged
        if key in ("env", "agent"):
            data[key] = value
    for kind in ("env", "agent"):
        value = data.get(kind)
        if isinstance(value, str):
            data[f"{kind}_recipe"] = value
            data[kind] = _load_recipe(f"{kind}s", value, experiment_path)
    for key, value in [*file_overrides.items(), *[(k, v) for k, v in cli if k not in ("env", "agent")]]:
        _set_dotted(data, str(key), value)
    return _from_dict(ExperimentConfig, data)  # type: ignore[no-any-return]


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment file (or a run's resolved ``config.yaml``) and apply ``overrides``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such experiment file: {path}")
    raw = _experiment_with_base(path)
    raw.setdefault("name", path.stem)
    return compose(raw, overrides or [], path)


def _experiment_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """An experiment file over its ``base:`` experiment (a name in the same folder, or a path);
    the base's ``name`` and ``sweep`` are its own and are not inherited."""
    if path.resolve() in seen:
        raise UserError(f"experiment {path} inherits from itself")
    raw = read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise UserError(f"{path}: base must be an experiment name, got {base!r}")
    base_path = Path(base) if base.endswith((".yaml", ".yml")) else path.parent / f"{base}.yaml"
    if not base_path.is_file():
        raise UserError(f"{path}: no base experiment {base_path}")
    inherited = _experiment_with_base(base_path, (*seen, path.resolve()))
    for own in ("name", "sweep"):
        inherited.pop(own, None)
    return merge(inherited, raw)


def save_config(config: ExperimentConfig, path: Path) -> None:
    write_yaml(path, config.to_dict())


def load_saved_config(path: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """A run's own ``config.yaml``, which must be complete: a truncated or emptied file is refused
    rather than filled in with defaults (the run would silently become another experiment)."""
    raw = read_yaml(path)
    missing = missing_keys(ExperimentConfig, raw)
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise UserError(f"{path} is incomplete ({shown} missing); it may have been truncated")
    return compose(raw, overrides or [], path)
