"""`film-rl bench`: throughput, sample efficiency, the conditioning ablation, multi-game Atari.

The benchmarks are family-specific by purpose (BabyAI's sample-efficiency metric and papers,
SB3's own Atari recipe as the multi-game reference), so this command names the families."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from film_rl.cli.common import Parser
from film_rl.errors import UserError


def _print_bench(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    kind = result["benchmark"]
    table = Table(title=f"film-rl bench {kind}: {result.get('level')} ({result['machine']})")
    if kind in ("throughput", "atari"):
        for column in ("variant", "steps/s (median)", "ratio to reference"):
            table.add_column(column, justify="right")
        for variant, sps in result["steps_per_second"].items():
            ratio = result.get(f"ratio_{variant}", 1.0)
            table.add_row(variant, f"{sps:.0f}", f"{ratio:.2f}")
        table.caption = f"peak RSS {result['peak_rss_mb']:.0f} MB; {result['repeats']} alternated rounds"
    elif kind == "efficiency":
        columns = ("seed", "episodes to 0.99 (BabyAI's window)", "(last 100 episodes)", "frames", "seconds",
                   "final success")  # fmt: skip
        for column in columns:
            table.add_column(column, justify="right")
        among_others = len(result.get("levels", [])) > 1
        for run in result["runs"]:
            final = run["final_success_rate"]
            table.add_row(
                str(run["seed"]), "-" if among_others else str(run["babyai_episodes_to_99"] or "not reached"),
                str(run["episodes_to_99"] or "-"), str(run["frames"]), str(run["seconds"]),
                "-" if final is None else f"{final:.3f}",
            )  # fmt: skip
        table.caption = (
            f"the level's own episodes, trained beside {', '.join(result['levels'])}; BabyAI's window "
            "counts every level's, so it has none; "
            if among_others
            else f"median {result['median_babyai_episodes_to_99']} (BabyAI's window); "
        ) + f"BabyAI: {result['babyai'] or 'no figure'}"
    elif kind == "floor":
        for column in ("bot episodes", "bot success", "bot mean length", "step limit", "window",
                       "fewest episodes to 0.99 (BabyAI's window)"):  # fmt: skip
            table.add_column(column, justify="right")
        table.add_row(
            str(result["bot_episodes"]), f"{result['bot_success_rate']:.3f}", f"{result['bot_mean_length']:.2f}",
            str(result["max_steps"]), str(result["window"]), f"{result['fewest_babyai_episodes_to_99']:,}",
        )  # fmt: skip
        table.caption = f"BabyAI: {result['babyai'] or 'no figure'}"
        if "count" in result:
            needed, bot = result["success_length_for_count"], result["bot_mean_length"]
            table.caption += f"; a count of {result['count']:,} " + (
                f"needs successful episodes of {needed:.2f} steps on average (the bot's: {bot:.2f})"
                if needed > bot
                else "lies above the floor: the bot's paths reach it"
            )
    else:
        for column in ("conditioning", "episodes to 0.9", "episodes to 0.99", "final success"):
            table.add_column(column, justify="right")
        for name, run in result["results"].items():
            table.add_row(name, str(run["episodes_to_90"] or "-"), str(run["episodes_to_99"] or "-"),
                          f"{run['final_success_rate']:.3f}")  # fmt: skip
    Console().print(table)


def cmd_bench(args: argparse.Namespace) -> int:
    from film_rl import bench
    from film_rl.tasks.babyai_envs import check_levels

    for name in ("timesteps", "repeats", "n_envs", "seeds", "budget", "episodes", "count"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    if args.kind == "atari":
        result = bench.atari(
            args.suite, args.game, args.n_envs, args.timesteps, args.repeats, progress=print, overrides=args.overrides
        )
        _print_bench(result)
        bench.write_result(result, Path(args.out) if args.out else None)
        if args.out:
            print(f"wrote {args.out}")
        return 0
    level = getattr(args, "env", None) or args.level or experiment_level(getattr(args, "experiment", None))
    check_levels([level])
    if args.kind == "floor":
        result = bench.floor(level, args.episodes, args.seed, args.count)
    elif args.kind == "throughput":
        result = bench.throughput(
            level,
            args.n_envs,
            args.timesteps,
            args.repeats,
            progress=lambda s: print(s),
            overrides=args.overrides,
            variants=None if args.variants is None else [v for v in args.variants.split(",") if v],
        )
    else:
        from film_rl.run.train import TrainingInterrupted, describe_interrupt

        try:
            if args.kind == "efficiency":
                from film_rl.tasks.babyai_metric import ROW_FRAMES

                window = bench.success_window(level) * ROW_FRAMES
                if args.budget < window and len(bench.efficiency_levels(level, args.experiment, args.overrides)) == 1:
                    print(
                        f"note: BabyAI's window on {level} spans {window:,} frames; a budget of {args.budget:,} "
                        "cannot report its metric, only the rolling one",
                        file=sys.stderr,
                    )
                result = bench.efficiency(
                    level, args.seeds, args.agent, args.budget, args.overrides, args.runs_dir, args.experiment
                )
            else:
                result = bench.conditioning(level, args.budget, args.agent, args.seed, args.overrides, args.runs_dir)
        except TrainingInterrupted as err:  # the run in progress is saved and resumable like any other
            print(describe_interrupt(err), file=sys.stderr)
            return 128 + err.signum
    _print_bench(result)
    bench.write_result(result, Path(args.out) if args.out else None)
    if args.out:
        print(f"wrote {args.out}")
    return 0


def experiment_level(experiment: str | None) -> str:
    """The one level an experiment trains on, for ``bench efficiency --experiment`` without ``--level``."""
    from film_rl.config import load_experiment

    if experiment is None:
        raise UserError("name a level (--level) or a level's recipe (--experiment)")
    levels = getattr(load_experiment(experiment).env, "levels", [])
    if len(levels) != 1:
        raise UserError(f"--experiment {experiment} trains on {len(levels)} levels; name the one to measure (--level)")
    return str(levels[0])


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure throughput, sample efficiency and the conditioning ablation")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=Parser)
    t = kinds.add_parser(
        "throughput", help="steps/s of FiLM policies against a plain SB3 CNN, medians of alternated runs"
    )
    t.add_argument("--env", default="BabyAI-GoToLocal-v0")
    t.add_argument(
        "--variants",
        help="the FiLM variants timed beside the reference, comma-separated (default: every one; an "
        "override that only one takes, such as agent.critic_features=own: --variants film_cnn)",
    )
    e = kinds.add_parser("efficiency", help="episodes until the success first reaches 0.99 by BabyAI's centred window")
    e.add_argument("--level", help="BabyAI level id (default: --experiment's one level)")
    e.add_argument("--experiment", metavar="FILE", help="the level's recipe (default: --agent on the bench's settings)")
    e.add_argument("--seeds", type=int, default=1)
    e.add_argument("--budget", type=int, default=1_000_000, help="timesteps per seed at most")
    a = kinds.add_parser(
        "atari", help="steps/s of one FiLM policy over several Atari games against SB3's single-game Atari PPO"
    )
    a.add_argument("--suite", default="atari-4game", help="Atari env recipe (envs/NAME.yaml)")
    a.add_argument("--game", help="the reference's game (default: the suite's first)")
    for q in (t, a):  # the throughput benches: alternated rounds of the same length
        q.add_argument("--n-envs", type=int, default=8)
        q.add_argument("--timesteps", type=int, default=20_000)
        q.add_argument("--repeats", type=int, default=3)
    f = kinds.add_parser(
        "floor", help="the fewest episodes BabyAI's centred window can count on a level (its bot's paths)"
    )
    f.add_argument("--level", required=True)
    f.add_argument("--episodes", type=int, default=1000, help="bot episodes to average")
    f.add_argument("--seed", type=int, default=0, help="first episode's seed")
    f.add_argument("--count", type=int, help="also: the successful-episode length at which the window counts this few")
    c = kinds.add_parser("conditioning", help="film / concat / bias / scale / gate / none at the same budget")
    c.add_argument("--level", required=True)
    c.add_argument("--budget", type=int, default=200_000)
    c.add_argument("--seed", type=int, default=0)
    for q in (e, c):
        q.add_argument("--agent", default="film-cnn", help="agent recipe")
        q.add_argument("--runs-dir", default="runs/bench")
    f.add_argument("--out", metavar="FILE", help="write the result as JSON")
    f.set_defaults(func=cmd_bench)
    for q in (t, e, c, a):
        q.add_argument("overrides", nargs="*", help="key=value overrides of the experiment")
        q.add_argument("--out", metavar="FILE", help="write the result as JSON")
        q.set_defaults(func=cmd_bench)
