"""The one exception type that means "the user asked for something wrong".

The command line prints its message as one line and exits with status 2; anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in a command, a config file or a path, explained in one line."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """`` (did you mean: a, b?)`` for the closest ``choices``, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
