"""`film-rl sweep`: every grid setting x seed, locally or on a Ray cluster."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from film_rl.errors import UserError


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console

    from film_rl.sweep.launch import run_sweep
    from film_rl.sweep.runner import Sweep, load_spec, make_spec, save_spec, sweep_dir

    if args.max_concurrent is not None and args.max_concurrent <= 0:
        raise UserError("--max-concurrent must be positive")
    if args.resume is not None:
        if args.experiment is not None or args.overrides or args.grid:
            raise UserError("--resume runs the sweep as it was saved; give no experiment, overrides or --grid")
        folder = Path(args.resume)
        spec = load_spec(folder)
        if args.seeds is not None:  # more seeds for the same sweep: the finished trials count
            spec = spec.with_seeds(args.seeds)
    else:
        if args.experiment is None:
            raise UserError("name an experiment file (or --resume SWEEP_DIR)")
        spec = make_spec(
            args.experiment, args.overrides, args.grid, args.seeds, args.retries, args.gpus_per_trial, args.name
        )
        folder = sweep_dir(spec)
        if folder.exists() and not args.dry_run:
            raise UserError(f"{folder} exists; continue it with: film-rl sweep --resume {folder}")
    sweep = Sweep(spec, folder)
    sweep.check_finished()
    console = Console(soft_wrap=True)  # long trial names and paths stay on one line in logs
    if not console.is_terminal:
        console.width = 160  # a log file has no edge: keep the tables' trial names whole
    todo = sweep.todo()
    console.print(
        f"sweep {spec.name}: {len(sweep.states)} trials ({len(sweep.states) - len(todo)} finished), "
        f"backend {args.backend}, in {folder}",
        highlight=False,
    )
    if args.dry_run:  # each trial's state, and the overrides its run will take
        for trial in spec.trials():
            console.print(f"  {trial.id}: {sweep.states[trial.id].state}", highlight=False)
            console.print(f"    film-rl train {spec.experiment} {' '.join(spec.overrides + trial.overrides())}",
                          highlight=False, markup=False, soft_wrap=True)  # fmt: skip
        return 0
    if args.backend == "ray":
        from film_rl.sweep.ray_backend import require_ray

        require_ray()
    save_spec(spec, folder)
    summary = run_sweep(sweep, args.backend, args.max_concurrent, args.ray_address, console)
    states = [row["state"] for row in summary["trials"]]
    console.print(f"report: film-rl report {folder}", highlight=False)
    if "interrupted" in states:
        console.print(f"interrupted; continue with: film-rl sweep --resume {folder}", highlight=False)
        return 130
    failed = [row["trial"] for row in summary["trials"] if row["state"] != "done"]
    if failed:
        logs = ", ".join(str(folder / "trials" / t / "trial.log") for t in failed[:3])
        console.print(f"{len(failed)} trial(s) failed; see {logs}", highlight=False)
        return 1
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sweep", help="train every grid setting x seed, locally or on a Ray cluster")
    p.add_argument("experiment", nargs="?", help="experiments/NAME.yaml (its sweep: section is the default grid)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every trial")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="sweep KEY over values (repeat)")
    p.add_argument(
        "--seeds",
        type=int,
        metavar="K",
        help="seeds per setting: seed, seed+1, ... (default 1); with --resume, raises the count",
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (auto: the running one)")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once (local default: one per core)")
    p.add_argument("--retries", type=int, metavar="N", help="run a failed trial again up to N times (default 1)")
    p.add_argument("--gpus-per-trial", type=float, metavar="F", help="Ray: GPU share of each trial (default 0)")
    p.add_argument("--name", help="the sweep's name (default: experiment-date-time)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="run the trials of a sweep that are not finished")
    p.add_argument("--dry-run", action="store_true", help="list the trials and stop")
    p.set_defaults(func=cmd_sweep)
