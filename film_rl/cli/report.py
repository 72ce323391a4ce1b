"""`film-rl report`: a sweep's runs (or one run) as a table and learning curves."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from film_rl.cli.common import writable_folder


def cmd_report(args: argparse.Namespace) -> int:
    from film_rl.sweep.report import report

    if args.out:
        writable_folder(Path(args.out), "--out")
    result = report(Path(args.sweep_dir), Path(args.out) if args.out else None, args.wandb, args.level)
    print(result.markdown, end="")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="a sweep's runs as a table (mean ± 95%% CI across seeds) and learning curves; or one run's, per game",
    )
    where = "runs/sweeps/NAME, or one run's directory (finished or still training)"
    p.add_argument("sweep_dir", metavar="DIR", help=where)
    p.add_argument("--out", metavar="DIR", help="where the files go (default DIR/report)")
    p.add_argument(
        "--level",
        metavar="LEVEL",
        help="of runs on several levels, that level's figures alone: its evaluation, its rolling success "
        "and its own episode counts (default DIR/report/LEVEL)",
    )
    p.add_argument(
        "--wandb",
        choices=("auto", "online", "offline", "disabled"),
        help="also log the table and curves to wandb (default: the experiment's logging.wandb)",
    )
    p.set_defaults(func=cmd_report)
