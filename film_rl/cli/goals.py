"""`film-rl goals`: goal-state datasets for AGILE's reward model.

Goal states come from BabyAI's bot, which plays BabyAI levels only: this command names that family."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from film_rl.cli.common import Parser
from film_rl.errors import UserError


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} kB"


def cmd_goals_make(args: argparse.Namespace) -> int:
    from film_rl.agile.goals import make_goals
    from film_rl.tasks.babyai_envs import check_bot_levels
    from film_rl.tasks.instructions import Vocabulary

    if args.episodes <= 0:
        raise UserError("--episodes must be positive")
    if args.seed < 0:
        raise UserError("--seed must be 0 or more (numpy and gymnasium take unsigned seeds)")
    check_bot_levels(args.env)
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; name a file, e.g. {out / 'goals.npz'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"cannot write {out}: {out.parent} is not a directory") from None
    except OSError as err:
        raise UserError(f"cannot create {out.parent}: {err.strerror}") from None
    from tqdm import TqdmExperimentalWarning

    warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
    from tqdm.rich import tqdm  # the bar training shows (SB3's progress bar)

    with tqdm(total=args.episodes, unit="episode") as bar:

        def progress(done: int, kept: int) -> None:
            bar.update(done - bar.n)
            bar.set_postfix(solved=kept, refresh=False)

        dataset = make_goals(args.env, args.episodes, args.seed, Vocabulary.babyai(), progress=progress)
    if not len(dataset):
        raise UserError(f"the bot solved none of the {args.episodes} episodes; nothing written to {out}")
    try:
        dataset.save(out)
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    failures, errors = dataset.meta["bot_failures"], dataset.meta["bot_errors"]
    print(
        f"wrote {out}: {len(dataset)} goal states from {args.episodes} episodes "
        f"(bot failed {failures}, {errors} by raising), {_size(out.stat().st_size)}"
    )
    return 0


def cmd_goals_info(args: argparse.Namespace) -> int:

    from film_rl.agile.goals import describe

    info = describe(Path(args.file))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: {info['states']} goal states, {_size(info['file_bytes'])}")
    print(f"schema              {info['schema']} v{info['schema_version']}")
    print(
        f"made from           {info['episodes_attempted']} episodes, seed {info['seed']} "
        f"(bot failed {info['bot_failures']}, {info['bot_errors']} by raising), film-rl {info['film_rl_version']}"
    )
    print(f"instructions        {info['instruction_length']} tokens, vocabulary of {info['vocab_size']} "
          f"({info['vocab_fingerprint']})")  # fmt: skip
    print("levels")
    for level, count in info["levels"].items():
        print(f"  {level:<34}{count}")
    print("instruction kinds")
    for kind, count in info["kinds"].items():
        print(f"  {kind:<34}{count}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("goals", help="goal-state datasets for a reward model: states where BabyAI's bot succeeded")
    actions = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    m = actions.add_parser("make", help="let BabyAI's bot play N episodes and keep each solved episode's last view")
    m.add_argument("--env", action="append", required=True, metavar="LEVEL", help="BabyAI level (repeat for several)")
    m.add_argument("--episodes", type=int, required=True, metavar="N", help="episodes in all, levels in turn")
    m.add_argument("--out", required=True, metavar="FILE", help="the .npz file to write")
    m.add_argument("--seed", type=int, default=0, help="episode i is reset with seed S + i")
    m.set_defaults(func=cmd_goals_make)
    i = actions.add_parser("info", help="states, levels, instruction kinds and provenance of a goal-state file")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=cmd_goals_info)
