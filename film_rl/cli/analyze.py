"""`film-rl analyze`: what a run's FiLM generator learned about its instructions."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from film_rl.cli.common import writable_folder
from film_rl.errors import UserError


def cmd_analyze(args: argparse.Namespace) -> int:

    for name in ("instructions", "analogies", "threads"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive")
    if args.episodes < 0:
        raise UserError("--episodes must be 0 (skip the interpolation and the arithmetic) or more")
    if args.seed < 0:
        raise UserError("--seed must be 0 or more (numpy and gymnasium take unsigned seeds)")
    if args.out:
        writable_folder(Path(args.out), "--out")
    from rich.console import Console
    from tqdm import TqdmExperimentalWarning

    from film_rl.analysis.analyze import analyze
    from film_rl.analysis.outputs import SHORT
    from film_rl.run.evaluate import EpisodeProgress

    warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
    from tqdm.rich import tqdm

    bars: list[Any] = []
    lines: list[EpisodeProgress] = []

    def progress(done: int, total: int) -> None:
        if total <= 0:
            return
        if not sys.stderr.isatty():  # a log file: plain lines, every tenth of the episodes
            lines.append(lines[0] if lines else EpisodeProgress(total, "analysis"))
            lines[0](done, total)
            return
        if not bars:  # made once the episodes to play are known; on stderr: --json keeps stdout
            bars.append(tqdm(total=total, unit="episode", options={"console": Console(stderr=True)}))
        bars[0].update(done - bars[0].n)

    try:
        result = analyze(
            args.target,
            out=Path(args.out) if args.out else None,
            n_instructions=args.instructions,
            layer=args.layer,
            feature_maps=args.feature_map,
            episodes=args.episodes,
            seed=args.seed,
            deterministic=args.deterministic,
            pair=tuple(args.pair) if args.pair else None,  # type: ignore[arg-type]
            analogies=[tuple(a) for a in args.analogy or []],  # type: ignore[misc]
            n_analogies=args.analogies,
            levels=args.level,
            device=args.device,
            threads=args.threads,
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    names = " and ".join(SHORT[p] for p in result.parameters)
    sizes = " + ".join(map(str, result.layer_sizes))
    print(f"{result.model}: {result.conditioning} ({names}), {len(result.layer_sizes)} conditioned layers, "
          f"{sizes} = {sum(result.layer_sizes)} parameters per instruction")  # fmt: skip
    for note in result.notes:  # first: a note may say the missions analysed are another level's
        print(f"note: {note}")
    what = result.instruction_noun
    resets = f" ({result.resets:,} seeded resets)" if result.resets else ""
    print(f"{result.instructions} {what} of {', '.join(result.levels)}{resets}")
    if result.attribute_shares:
        shares = ", ".join(f"{name} {share:.2f}" for name, share in result.attribute_shares.items())
        print(f"share of the parameters' variance each attribute explains: {shares}")
    i = result.interpolation
    if i is not None:
        print(f"interpolation A = {i.a!r} -> B = {i.b!r} ({i.episodes_a} / {i.episodes_b} episodes)")
        print("  α            " + " ".join(f"{x:>4.1f}" for x in i.alphas))
        print("  on A's goal  " + " ".join(f"{x:>4.2f}" for x in i.success_a))
        print("  on B's goal  " + " ".join(f"{x:>4.2f}" for x in i.success_b))
    for x in result.analogies:
        print(f"arithmetic {x.a!r} - {x.b!r} + {x.c!r} -> {x.expected!r}: success {x.arithmetic:.2f} "
              f"(FiLM(expected) {x.own:.2f}, FiLM(A) {x.control:.2f}; {x.episodes} episodes); "
              f"nearest analysed: {x.nearest!r}")  # fmt: skip
    print(f"wrote {result.out}: summary.md, film_params.csv, analysis.json, {len(result.figures)} figures")
    if result.wandb is not None:
        print(f"logged to the run's wandb run ({result.wandb})")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("analyze", help="study a run's learned FiLM parameters: scatter, projections, interpolation")
    p.add_argument("target", help="a run directory, or a model / checkpoint zip inside one")
    p.add_argument("--instructions", type=int, default=200, metavar="N", help="distinct missions to sample")
    p.add_argument("--out", metavar="DIR", help="where figures, CSV and summary go (default RUN_DIR/analysis)")
    p.add_argument("--layer", type=int, default=-1, help="conditioned layer of the scatter plots (default: last)")
    p.add_argument(
        "--feature-map", type=int, action="append", metavar="M",
        help="feature map of the attribute scatter (repeat; default: the 3 the instructions move most)",
    )  # fmt: skip
    p.add_argument("--episodes", type=int, default=50, help="per success rate; 0 skips interpolation and arithmetic")
    p.add_argument("--seed", type=int, default=0, help="first env seed scanned, and the action sampling's seed")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--deterministic", dest="deterministic", action="store_true", default=None,
        help="argmax actions (default: the run's eval.deterministic)",
    )  # fmt: skip
    group.add_argument("--stochastic", dest="deterministic", action="store_false", help="sampled actions")
    p.add_argument("--pair", nargs=2, metavar=("A", "B"), help="the two missions to interpolate between")
    p.add_argument(
        "--analogy", nargs=4, action="append", metavar=("A", "B", "C", "EXPECTED"),
        help="evaluate FiLM(A) - FiLM(B) + FiLM(C) on EXPECTED's goal (repeat for several)",
    )  # fmt: skip
    p.add_argument("--analogies", type=int, default=2, metavar="K", help="analogies to find when none is named")
    p.add_argument(
        "--level", action="append", metavar="LEVEL",
        help="sample missions from this level instead of the run's own (repeat for several)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="torch device for the policy (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the policy acts on small batches)")
    p.add_argument("--json", action="store_true", help="print analysis.json")
    p.set_defaults(func=cmd_analyze)
