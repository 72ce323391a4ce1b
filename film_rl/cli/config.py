"""`film-rl config`: every config key with its type, default, range and meaning."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_config(args: argparse.Namespace) -> int:
    from film_rl.config.reference import reference_markdown
    from film_rl.files import write_text

    text = reference_markdown()
    if args.write:
        write_text(Path(args.write), text)
        print(f"wrote {args.write}")
    else:
        print(text, end="")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("config", help="every config key: type, default, range and meaning (markdown)")
    p.add_argument(
        "--write", metavar="FILE", help="write the reference to FILE (docs/config.md) instead of printing it"
    )
    p.set_defaults(func=cmd_config)
