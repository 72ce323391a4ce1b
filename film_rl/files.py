"""Every file film-rl writes goes through :func:`write_atomically`; every file it reads back is checked.

A file is written under a temporary name in its own directory, flushed to the disk and renamed
over the old one, so a reader (or a ``kill -9``) sees the old file or the new one, never half of
one. The temporary file is made with the permissions a plain ``open(path, "w")`` would give
(``0o666`` less the umask), so a shared dataset stays readable by whoever could read a plain file.

A failure to write (a full disk, a read-only folder) becomes one :class:`~film_rl.errors.UserError`
naming the file, and the temporary file is removed: the previous version stays as it was.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from film_rl.errors import UserError

#: the suffix of every temporary file, so that a run directory can be swept of stale ones
TMP = ".tmp"


def temporary_name(path: Path) -> Path:
    """``.NAME.<random>.tmp.<suffix>`` beside ``path``: hidden, unique, and with ``path``'s own
    suffix (SB3 and numpy append theirs to a name that lacks it)."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}{TMP}{path.suffix}")


def write_error(err: OSError, path: Path) -> UserError:
    """The one line a failed write becomes."""
    if err.errno == errno.ENOSPC:
        return UserError(f"no space left on device while writing {path}")
    return UserError(f"cannot write {path}: {err.strerror or err}")


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` all or nothing: ``write`` writes a temporary file beside it (named with
    ``path``'s suffix, made by a plain ``open``, so with the usual permissions), which is then
    flushed to the disk and renamed over ``path``.

    :raises UserError: the disk is full or the folder is not writable; ``path`` is unchanged and
        no temporary file is left behind.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        _sync_file(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(err, path) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _sync_directory(path.parent)


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(folder: Path) -> None:
    """Make the rename itself durable (a power cut right after it keeps the new file)."""
    with contextlib.suppress(OSError):
        _sync_file(folder)


def write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_bytes(text.encode()))


def write_json(path: Path, data: Any, indent: int | None = None) -> None:
    write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_csv(path: Path, rows: Iterable[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    write_text(path, buffer.getvalue())


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed process left behind (their name says whose file they were)."""
    for stale in [*folder.glob(f".*{TMP}*"), *folder.glob("*.tmp.zip"), *folder.glob("*.json.tmp")]:  # + older names
        with contextlib.suppress(OSError):
            stale.unlink()


# --------------------------------------------------------------------------- reading back


def read_text(path: Path, what: str = "file") -> str:
    """A text file's contents; missing, unreadable, binary or empty files are one-line errors."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} is missing") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a {what}") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    if not data.strip():
        raise UserError(f"{path} is empty; it may have been truncated")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a {what} (binary bytes); it may be corrupted") from None


def read_json(path: Path, what: str = "JSON file") -> Any:
    """A JSON file, checked: a truncated or corrupted one is a one-line error naming it."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); it may be truncated") from None


def read_json_object(path: Path, required: dict[str, type | tuple[type, ...]], what: str) -> dict[str, Any]:
    """A JSON object holding at least ``required`` keys of the given types."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a {what} (expected a JSON object)")
    for key, kind in required.items():
        if key not in data:
            raise UserError(f"{path} is not a complete {what}: '{key}' is missing")
        if not isinstance(data[key], kind) or (isinstance(data[key], bool) and bool not in _types(kind)):
            raise UserError(f"{path} is not a valid {what}: '{key}' has the wrong type")
    return data


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
