"""The config reference, generated from the typed dataclasses so that it cannot drift from them:
every key with its type, default, allowed range and meaning (the field's ``#:`` comment).

``film-rl config`` prints it; ``docs/config.md`` is it, written by ``film-rl config --write``
and checked against the dataclasses by the tests.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from typing import Any

from film_rl.config.experiment import FAMILIES, ExperimentConfig

_FIELD = re.compile(r"^\s+(\w+)\s*:")


def field_docs(cls: type[Any]) -> dict[str, str]:
    """Each field's ``#:`` comment lines, joined, from the class's source (its base classes' too)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        pending: list[str] = []
        for line in inspect.getsource(klass).splitlines():
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            match = _FIELD.match(line)
            if match and pending:
                docs[match.group(1)] = " ".join(pending)
            if not stripped.startswith("#"):
                pending = []
    return docs


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):  # a mapping of its fields, e.g. {color: red \| ..., object: ...}
        hints = typing.get_type_hints(tp)
        return "{" + ", ".join(f"{f.name}: {_type_name(hints[f.name])}" for f in dataclasses.fields(tp)) + "}"
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`" if value != "" else '`""`'


def _range(f: dataclasses.Field[Any]) -> str:
    bounds = f.metadata.get("range")
    if bounds is None:
        return ""
    lo, hi, above, below = bounds
    return f"{'(' if above else '['}{_number(lo)}, {_number(hi)}{')' if below else ']'}"


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _rows(cls: type[Any], prefix: str, sections: dict[str, type[Any]]) -> list[str]:
    hints = {**typing.get_type_hints(cls), **sections}
    docs = field_docs(cls)
    rows: list[str] = []
    nested: list[tuple[type[Any], str]] = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            nested.append((tp, f"{key}."))
            continue
        meaning = docs.get(f.name, "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(tp)} | {_default(f)} | {_range(f)} | {meaning} |")
    for tp, sub in nested:
        rows += _rows(tp, sub, {})
    return rows


HEADER = "| key | type | default | range | meaning |\n|---|---|---|---|---|"


def reference_markdown() -> str:
    """The whole reference: the keys every run has, then each family's env and agent sections."""
    common = {"env": FAMILIES["babyai"].env, "agent": FAMILIES["babyai"].agent}
    top = [r for r in _rows(ExperimentConfig, "", common) if not r.startswith(("| `env.", "| `agent."))]
    out = [
        "# Config reference",
        "",
        "Generated from film-rl's typed config (`film-rl config --write docs/config.md`); every key can",
        "be set in a recipe or experiment YAML, or as `key=value` on the command line. An unknown key,",
        "a wrong type or a value outside its range is refused in one line before anything runs.",
        "",
        "A recipe of your own is a YAML file named by path: `film-rl train experiments/quickstart.yaml",
        "env=my-levels.yaml agent=my-agent.yaml` (or `env: my-levels.yaml` in an experiment). It may say",
        "`base: NAME` and list only what differs. `agent=NAME` swaps the agent recipe under the",
        "experiment's own changes to it: `film-rl train experiments/pickuploc.yaml agent=film-lstm` trains",
        "the LSTM recipe with the experiment's `agent:` keys (its entropy bonus, learning rate) on top, and",
        "a key the experiment sets wins over the recipe's. `env=NAME` replaces the env section whole.",
        "",
        "## Every run",
        "",
        HEADER,
        *top,
    ]
    for kind, family in FAMILIES.items():
        out += ["", f"## `env.kind: {kind}`", "", HEADER]
        out += _rows(family.env, "env.", {})
        out += _rows(family.agent, "agent.", {})
    return "\n".join(out) + "\n"
