"""Typed experiment configuration, composed from YAML recipes and ``key=value`` overrides.

An experiment file names an env recipe (``envs/NAME.yaml``) and an agent recipe
(``agents/NAME.yaml``) and adds the budget, seed, evaluation and logging. Loading resolves the
recipes (each may name a ``base:`` and state only what differs), applies the experiment's own
``overrides`` and then the command line's, and checks every key and type against the dataclasses:
an unknown key or a wrong type is a :class:`~film_rl.errors.UserError` that names the key and its
closest valid neighbours. The env and agent sections are the family's own (``env.kind``), so a
setting of one family is an unknown key in another's run.

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

from film_rl.config import atari, babyai, minatar
from film_rl.config.atari import AtariAgentConfig, AtariEnvConfig
from film_rl.config.babyai import BabyAIEnvConfig, GridAgentConfig
from film_rl.config.fields import bounded, check_range, later, missing_keys, saved_meaning
from film_rl.config.minatar import MinAtarAgentConfig, MinAtarEnvConfig
from film_rl.config.sections import (
    AgentConfig,
    BudgetConfig,
    CheckpointConfig,
    EnvConfig,
    EvalConfig,
    LoggingConfig,
)
from film_rl.errors import UserError, did_you_mean
from film_rl.files import write_yaml

#: the ``init_from`` of a recipe that only makes sense started from another run's policy
INIT_REQUIRED = "required"


@dataclass
class ExperimentConfig:
    """Everything a training run needs; saved resolved as the run's ``config.yaml``.

    ``env`` and ``agent`` are the family's own sections (:data:`FAMILIES`, chosen by ``env.kind``).
    """

    #: the experiment's name: the runs' folder under runs_dir, and the wandb group
    name: str = "experiment"
    env: EnvConfig = field(default_factory=BabyAIEnvConfig)
    agent: AgentConfig = field(default_factory=GridAgentConfig)
    #: seeds the networks, the action sampling and the envs (worker i: seed + i)
    seed: int = bounded(0, 0, 2**32 - 1)
    #: ``auto``: CUDA when available
    device: str = "auto"
    #: torch threads in the trainer process: ``auto`` chooses from the cores and where the envs
    #: step (film_rl.run.train.auto_threads; docs/results.md has the measurements); 0: torch's default
    threads: Literal["auto"] | int = bounded("auto", 0, 1024)
    #: where runs go: RUNS_DIR/NAME/RUN_ID/
    runs_dir: str = "runs"
    #: start the policy from another run's weights (its ``model.zip``, a checkpoint, or its run
    #: directory), e.g. a curriculum: one level learnt, then the next from there. The policy must
    #: have this agent's shape; the optimizer, the step count, the schedules and the episode
    #: statistics start afresh, so the new run counts only its own episodes. A curriculum's later
    #: leg says ``required`` (:data:`INIT_REQUIRED`): run without ``init_from=...`` it is refused,
    #: not trained from scratch under a name that says it is not
    init_from: str | None = later(None)
    #: what ``init_from`` gives the new policy. ``all``: every weight. ``features``: the FiLM network
    #: alone (the grid's CNN, the instruction's encoder and the FiLM generator: the features
    #: extractor), the rest drawn afresh; so a CNN policy's reading of grid and mission can start a
    #: policy of another kind, an LSTM that must learn to remember on a level where the CNN learnt
    #: to see. The two agents' FiLM networks must have one shape. ``memoryless``: every weight but
    #: the memory's (the LSTMs, drawn afresh): a memoryless run's whole policy for an LSTM with
    #: ``agent.memory: residual``, which then starts as that policy
    init_parts: Literal["all", "features", "memoryless"] = later("all")
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    #: the env recipe this config was composed from (a tag on wandb)
    env_recipe: str = ""
    #: the agent recipe this config was composed from (a tag on wandb)
    agent_recipe: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Family:
    """An environment family's config sections, and the keys the first release saved for every
    family alike, which a saved config of this family may hold and which are dropped on reading."""

    env: type[EnvConfig]
    agent: type[AgentConfig]
    legacy: dict[str, tuple[str, ...]]


#: ``env.kind`` -> its sections; the tasks (film_rl.tasks.registry) name the same families
FAMILIES = {
    "babyai": Family(BabyAIEnvConfig, GridAgentConfig, babyai.LEGACY_KEYS),
    "atari": Family(AtariEnvConfig, AtariAgentConfig, atari.LEGACY_KEYS),
    "minatar": Family(MinAtarEnvConfig, MinAtarAgentConfig, minatar.LEGACY_KEYS),
}


def family(data: dict[str, Any]) -> Family:
    """The family of a raw config, by its ``env.kind`` (default ``babyai``)."""
    env = data.get("env")
    kind = env.get("kind", "babyai") if isinstance(env, dict) else "babyai"
    if kind not in FAMILIES:
        choices = list(FAMILIES)
        raise UserError(f"env.kind: {kind!r} is not one of {', '.join(choices)}{did_you_mean(str(kind), choices)}")
    return FAMILIES[kind]


def drop_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """A config saved by the first release, with the keys it saved for every family alike removed
    where they are not this family's (e.g. ``env.atari`` in a BabyAI run)."""
    known = family(data)
    out = dict(data)
    for section, keys in known.legacy.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in keys}
    return out


def read_as_saved(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config (a run's, or a sweep's base) as the run it describes did it: the first
    release's keys of other families dropped, and every option added since whose absence meant
    something other than today's default (``later(saved=...)``) set to what it meant."""
    data = drop_legacy(data)
    known = family(data)
    filled: dict[str, Any] = saved_meaning(ExperimentConfig, data, {"env": known.env, "agent": known.agent})
    return filled


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
        if len(args) == 1:
            return _coerce(value, args[0], key)
        for arg in args:  # the first reading that fits: `auto`, else a number
            try:
                return _coerce(value, arg, key)
            except UserError:
                continue
        wanted = " or ".join(_describe(a) for a in args)
        raise UserError(f"{key}: expected {wanted}, got {value!r}")
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


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(c) for c in typing.get_args(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


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


def _from_dict(
    cls: type[Any], data: dict[str, Any], prefix: str = "", sections: dict[str, type[Any]] | None = None
) -> Any:
    hints = {**typing.get_type_hints(cls), **(sections or {})}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise UserError(f"unknown config key '{dotted}'{did_you_mean(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], dotted)
        check_range(kwargs[key], fields[key].metadata, dotted)
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in kwargs
    ]
    if required:
        raise UserError(f"{prefix or 'config'}: missing {', '.join(required)}")
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
    dirs.append(Path(__file__).resolve().parents[2] / kind)
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


def flatten(section: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"budget": {"timesteps": 5}}`` -> ``{"budget.timesteps": 5}``: a section as overrides."""
    out: dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
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
            current = data.get(key)
            # an agent recipe is swapped under the experiment's own changes to it: `pickuploc.yaml
            # agent=film-lstm` is PickupLoc's training settings on the LSTM, not the LSTM recipe's
            # defaults. An env recipe is replaced whole: an experiment's env changes are mostly its
            # levels, which the named recipe is there to choose.
            swap = key == "agent" and isinstance(value, str) and isinstance(current, dict) and "base" in current
            data[key] = {**current, "base": value} if swap else value  # type: ignore[dict-item]
    for kind in ("env", "agent"):
        value = data.get(kind)
        if isinstance(value, str):
            data[f"{kind}_recipe"] = value
            data[kind] = _load_recipe(f"{kind}s", value, experiment_path)
        elif isinstance(value, dict) and "base" in value:  # a recipe and what this experiment changes in it
            own = dict(value)
            base = own.pop("base")
            if not isinstance(base, str):
                raise UserError(f"{kind}.base must be a recipe name, got {base!r}")
            data[f"{kind}_recipe"] = base
            data[kind] = merge(_load_recipe(f"{kind}s", base, experiment_path), own)
    for key, value in [*file_overrides.items(), *[(k, v) for k, v in cli if k not in ("env", "agent")]]:
        _set_dotted(data, str(key), value)
    return _typed(data)


def _typed(data: dict[str, Any]) -> ExperimentConfig:
    """Type-check a composed config, its env and agent sections as its family's."""
    known = family(data)
    return _from_dict(ExperimentConfig, data, sections={"env": known.env, "agent": known.agent})  # type: ignore[no-any-return]


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
    for kind in ("env", "agent"):
        # keys under a base experiment's recipe name change that recipe rather than replace it
        if isinstance(inherited.get(kind), str) and isinstance(raw.get(kind), dict):
            raw = {**raw, kind: {"base": inherited[kind], **raw[kind]}}
    return merge(inherited, raw)


def save_config(config: ExperimentConfig, path: Path) -> None:
    write_yaml(path, config.to_dict())


def saved_missing_keys(raw: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys a saved config (a run's, or a sweep's base) lacks, read as its family's."""
    known = family(raw)
    return missing_keys(ExperimentConfig, raw, prefix, sections={"env": known.env, "agent": known.agent})


def load_saved_config(path: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """A run's own ``config.yaml``, which must be complete: a truncated or emptied file is refused
    rather than filled in with defaults (the run would silently become another experiment)."""
    raw = read_yaml(path)
    if raw:
        raw = read_as_saved(raw)
    missing = saved_missing_keys(raw)
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise UserError(f"{path} is incomplete ({shown} missing); it may have been truncated")
    return compose(raw, overrides or [], path)
