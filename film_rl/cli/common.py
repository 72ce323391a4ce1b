"""What every command shares: the parser class, the exit status of bad input, result printing."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, NoReturn

from film_rl.errors import UserError

EXIT_USER_ERROR = 2


class Parser(argparse.ArgumentParser):
    """Bad arguments are bad input like any other: one line, status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def writable_folder(folder: Path, option: str) -> None:
    """Make ``folder`` (or find it) and check it takes files, before any work is done for it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{option} {folder}: not a directory") from None
    except OSError as err:
        raise UserError(f"{option} {folder}: cannot create it ({err.strerror or err})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{option} {folder}: not writable")


def print_games(result: Any) -> None:
    """Per-game results: one line per game, then the human-normalized mean and median across games."""
    print(f"  {'game':<16}{'episodes':>9}{'mean_return':>13}{'std':>10}{'length':>9}{'human_normalized':>18}")
    for game, f in (result.per_game or {}).items():
        score = f"{f['human_normalized']:.3f}" if "human_normalized" in f else "-"
        print(
            f"  {game:<16}{f['episodes']:>9.0f}{f['mean_return']:>13.1f}{f['std_return']:>10.1f}"
            f"{f['mean_episode_length']:>9.0f}{score:>18}"
        )
    if result.human_normalized is not None:
        normalized = result.human_normalized
        print(f"human_normalized across games: mean {normalized['mean']:.3f}, median {normalized['median']:.3f}")
