"""``film-rl``: the command line. Each subcommand is a thin shell over one module.

User mistakes (a missing file, an unknown key, a corrupted model) print one line to stderr and
exit with status 2; Ctrl-C during training saves a checkpoint first.
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Sequence

from film_rl.cli import analyze, bench, config, evaluate, goals, report, sweep, train
from film_rl.cli.common import EXIT_USER_ERROR, Parser
from film_rl.errors import UserError

#: the commands, in the order ``film-rl --help`` lists them; each module adds its own arguments
COMMANDS = (train, evaluate, analyze, bench, sweep, report, goals, config)


def _quiet_libraries() -> None:
    """Warnings that say nothing actionable to a film-rl user."""
    warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")
    warnings.filterwarnings("ignore", message=".*You are trying to run PPO on the GPU.*")


def build_parser() -> Parser:
    parser = Parser(prog="film-rl", description=__doc__.split("\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_libraries()
    # a log file (nohup, CI, `> log`) sees each line when it is written, not a buffer's worth later
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may also follow options (`sweep EXP --grid k=a,b seed=3`), which
    # argparse alone does not take once the positionals are consumed
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except UserError as err:
        print(f"film-rl {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once (every file is written atomically)
        print(f"film-rl {args.command}: stopped", file=sys.stderr)
        return 130
