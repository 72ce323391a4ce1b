"""What a config field declares beyond its type: its range, and whether runs saved before it
existed may lack it. Checked wherever a config is typed, so that a value that parses but breaks
the maths is refused before anything runs."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field
from typing import Any

from film_rl.errors import UserError


def bounded(
    default: Any, lo: float, hi: float, *, above: bool = False, below: bool = False, later: bool = False
) -> Any:
    """A field whose value lies in ``[lo, hi]`` (``above``: strictly above ``lo``; ``below``: strictly
    below ``hi``); ``None`` passes for an optional field."""
    return field(default=default, metadata={"range": (lo, hi, above, below), "later": later})


def later(default: Any, *, saved: Any = None) -> Any:
    """A field added after runs were first saved: a saved config may lack it.

    ``saved``: where the field's arrival changed what its absence means, a function of the saved
    section's keys giving the value a run saved before the field had (read back by
    :func:`saved_meaning`); without it, such a run had ``default``.
    """
    metadata: dict[str, Any] = {"later": True}
    if saved is not None:
        metadata["saved"] = saved
    return field(default=default, metadata=metadata)


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
        if isinstance(item, str):  # a named setting beside the numbers, such as threads: auto
            continue
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


def saved_meaning(cls: type[Any], data: Any, sections: dict[str, type[Any]] | None = None) -> Any:
    """A saved config with each field it lacks, and whose ``later(saved=...)`` says what its
    absence meant, filled in with that value: the run is read back as what it did, not as
    today's default would make it. ``sections``: as for :func:`missing_keys`."""
    if not isinstance(data, dict):
        return data
    hints = {**typing.get_type_hints(cls), **(sections or {})}
    out = dict(data)
    for f in dataclasses.fields(cls):
        if f.name not in out:
            if "saved" in f.metadata:
                out[f.name] = f.metadata["saved"](data)
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(out[f.name], dict):
            out[f.name] = saved_meaning(hints[f.name], out[f.name])
    return out


def missing_keys(
    cls: type[Any], data: Any, prefix: str = "", sections: dict[str, type[Any]] | None = None
) -> list[str]:
    """Keys of ``cls`` a saved config lacks (those added later excepted): an empty or truncated
    ``config.yaml`` must not quietly run on defaults. ``sections``: the classes some fields take
    (a family's env and agent sections)."""
    if not isinstance(data, dict):
        return [prefix or "everything"]
    hints = {**typing.get_type_hints(cls), **(sections or {})}
    missing = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name not in data:
            if not f.metadata.get("later"):
                missing.append(key)
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(data[f.name], dict):
            missing += missing_keys(hints[f.name], data[f.name], key)
    return missing
