"""`film-rl train`: train an experiment, or resume an interrupted run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from film_rl.cli.common import print_games
from film_rl.errors import UserError


def cmd_train(args: argparse.Namespace) -> int:
    from film_rl.config import load_experiment
    from film_rl.run.train import TrainingInterrupted, describe_interrupt, resume, train

    try:
        if args.resume is not None:
            overrides = ([args.experiment] if args.experiment else []) + args.overrides
            result = resume(Path(args.resume), overrides)
        else:
            if args.experiment is None:
                raise UserError("name an experiment file (or --resume RUN_DIR)")
            result = train(load_experiment(args.experiment, args.overrides))
    except TrainingInterrupted as err:
        print(describe_interrupt(err), file=sys.stderr)
        return 128 + err.signum
    print(f"run directory: {result.run_dir}")
    print(f"model: {result.model_path}")
    if result.eval.per_game is not None:
        print(f"evaluation ({result.eval.episodes} whole games):")
        print_games(result.eval)
        return 0
    print(
        f"evaluation ({result.eval.episodes} episodes): success_rate={result.eval.success_rate:.3f} "
        f"mean_return={result.eval.mean_return:.3f} mean_episode_length={result.eval.mean_episode_length:.1f}"
    )
    for kind, rate in result.eval.per_kind.items():
        print(f"  {kind}: {rate:.3f}")
    for name, figures in (result.eval.splits or {}).items():  # a run with held-out instructions
        print(f"  {name} split ({figures['episodes']} episodes): success_rate={figures['success_rate']:.3f}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train an experiment, or resume an interrupted run")
    p.add_argument("experiment", nargs="?", help="experiments/NAME.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. agent.conditioning=concat seed=3")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    p.set_defaults(func=cmd_train)
