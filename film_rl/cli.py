"""``film-rl``: the command line. Each subcommand is a thin shell over one module.

User mistakes (a missing file, an unknown key, a corrupted model) print one line to stderr and
exit with status 2; Ctrl-C during training saves a checkpoint first.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from film_rl.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _quiet_libraries() -> None:
    """Warnings that say nothing actionable to a film-rl user."""
    warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")
    warnings.filterwarnings("ignore", message=".*You are trying to run PPO on the GPU.*")


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
        _print_games(result.eval)
        return 0
    print(
        f"evaluation ({result.eval.episodes} episodes): success_rate={result.eval.success_rate:.3f} "
        f"mean_return={result.eval.mean_return:.3f} mean_episode_length={result.eval.mean_episode_length:.1f}"
    )
    for kind, rate in result.eval.per_kind.items():
        print(f"  {kind}: {rate:.3f}")
    return 0


def _print_games(result: Any) -> None:
    """Atari: one line per game, then the human-normalized mean and median across games."""
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from film_rl.run import run_dir as runs
    from film_rl.run.evaluate import evaluate
    from film_rl.tasks.registry import task_for

    if args.episodes <= 0:
        raise UserError("--episodes must be positive")
    if args.video_episodes is not None and args.video_episodes <= 0:
        raise UserError("--video-episodes must be positive")
    if args.seed < 0:
        raise UserError("--seed must be 0 or more (numpy and gymnasium take unsigned seeds)")
    if args.video:
        writable_folder(Path(args.video), "--video")  # before the episodes are played, not after
    run_dir, model_path = runs.locate(args.target)
    config = runs.read_config(run_dir)
    vocab = runs.read_vocab(run_dir)
    task = task_for(config, vocab)
    if args.episodes < task.min_episodes():
        plays = f"{task.min_episodes()} {task.level_noun}s"
        raise UserError(f"--episodes {args.episodes}: this run plays {plays}, one episode each at least")
    model = runs.load_model(config, model_path, device=args.device)
    deterministic = config.eval.deterministic if args.deterministic is None else args.deterministic
    reward_model = None
    if args.reward_model:
        from film_rl.agile.training import REWARD_MODEL, build_reward_model, load_reward_model

        saved = runs.beside(model_path, REWARD_MODEL)
        if not config.agent.reward_model.enabled or not saved.exists():
            raise UserError(f"--reward-model: {run_dir} is not an AGILE run (no {saved.name} beside {model_path.name})")
        reward_model = build_reward_model(config, vocab, run_dir, args.device)
        load_reward_model(reward_model, saved)
    result = evaluate(
        model,
        task,
        episodes=args.episodes,
        seed=args.seed,
        deterministic=deterministic,
        video_dir=Path(args.video) if args.video else None,
        video_episodes=args.video_episodes,
        reward_model=reward_model,
    )
    if args.json:
        print(result.to_json())
        return 0
    print(f"{model_path}: {result.episodes} episodes, {'deterministic' if deterministic else 'stochastic'} actions")
    if result.per_game is not None:
        _print_games(result)
        if args.video:
            print(f"videos: {args.video}")
        return 0
    print(f"success_rate        {result.success_rate:.3f}")
    print(f"mean_return         {result.mean_return:.3f}")
    print(f"mean_episode_length {result.mean_episode_length:.1f}")
    for kind, rate in result.per_kind.items():
        print(f"  {kind:<18}{rate:.3f}")
    if result.reward_model is not None:
        judged = result.reward_model
        print(
            f"reward model on final states: precision {judged['precision']:.3f} recall {judged['recall']:.3f} "
            f"accuracy {judged['accuracy']:.3f} (threshold {judged['threshold']})"
        )
    if args.video:
        print(f"videos: {args.video}")
    return 0


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
        for column in ("seed", "episodes to 0.99", "frames", "seconds", "final success"):
            table.add_column(column, justify="right")
        for run in result["runs"]:
            table.add_row(
                str(run["seed"]), str(run["episodes_to_99"] or "not reached"), str(run["frames"]),
                str(run["seconds"]), f"{run['final_success_rate']:.3f}",
            )  # fmt: skip
        table.caption = f"median {result['median_episodes_to_99']}; BabyAI: {result['babyai'] or 'no figure'}"
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

    for name in ("timesteps", "repeats", "n_envs", "seeds", "budget"):
        if getattr(args, name, 1) <= 0:
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
    level = getattr(args, "env", None) or args.level
    check_levels([level])
    if args.kind == "throughput":
        result = bench.throughput(
            level, args.n_envs, args.timesteps, args.repeats, progress=lambda s: print(s), overrides=args.overrides
        )
    else:
        from film_rl.run.train import TrainingInterrupted, describe_interrupt

        try:
            if args.kind == "efficiency":
                result = bench.efficiency(level, args.seeds, args.agent, args.budget, args.overrides, args.runs_dir)
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
    import json

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


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console

    from film_rl.sweep.launch import run_sweep
    from film_rl.sweep.runner import Sweep, load_spec, make_spec, save_spec, sweep_dir

    if args.max_concurrent is not None and args.max_concurrent <= 0:
        raise UserError("--max-concurrent must be positive")
    if args.resume is not None:
        if args.experiment is not None or args.overrides or args.grid or args.seeds is not None:
            raise UserError("--resume runs the sweep as it was saved; give no experiment, overrides, --grid or --seeds")
        folder = Path(args.resume)
        spec = load_spec(folder)
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
    if args.dry_run:
        for trial in spec.trials():
            console.print(f"  {trial.id}: {sweep.states[trial.id].state}", highlight=False)
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


def cmd_report(args: argparse.Namespace) -> int:
    from film_rl.sweep.report import report

    if args.out:
        writable_folder(Path(args.out), "--out")
    result = report(Path(args.sweep_dir), Path(args.out) if args.out else None, args.wandb)
    print(result.markdown, end="")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    import json

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

    warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
    from tqdm.rich import tqdm

    bars: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bars:  # made once the episodes to play are known; on stderr, so --json keeps stdout
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
    what = "games" if result.kind == "atari" else "distinct missions"
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
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {result.out}: summary.md, film_params.csv, analysis.json, {len(result.figures)} figures")
    if result.wandb is not None:
        print(f"logged to the run's wandb run ({result.wandb})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="film-rl", description=__doc__.split("\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train an experiment, or resume an interrupted run")
    p.add_argument("experiment", nargs="?", help="experiments/NAME.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. agent.conditioning=concat seed=3")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="roll out a saved policy and report success rates")
    p.add_argument("target", help="a run directory, or a model / checkpoint zip inside one")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--deterministic", dest="deterministic", action="store_true", default=None)
    group.add_argument("--stochastic", dest="deterministic", action="store_false")
    p.add_argument("--video", metavar="DIR", help="write mp4s of the first episodes, mission (or game) shown")
    p.add_argument(
        "--video-episodes", type=int, metavar="K", help="episodes to record (default 4; Atari: one per game)"
    )
    p.add_argument("--device", default="cpu", help="torch device for the policy (default cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--reward-model",
        action="store_true",
        help="AGILE runs: also report the reward model's precision / recall on the episodes' final states",
    )
    p.set_defaults(func=cmd_evaluate)

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
        help="sample missions from this BabyAI level instead of the run's own (repeat for several)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="torch device for the policy (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the policy acts on small batches)")
    p.add_argument("--json", action="store_true", help="print analysis.json")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("bench", help="measure throughput, sample efficiency and the conditioning ablation")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    t = kinds.add_parser(
        "throughput", help="steps/s of FiLM policies against a plain SB3 CNN, medians of alternated runs"
    )
    t.add_argument("--env", default="BabyAI-GoToLocal-v0")
    t.add_argument("--n-envs", type=int, default=8)
    t.add_argument("--timesteps", type=int, default=20_000)
    t.add_argument("--repeats", type=int, default=3)
    e = kinds.add_parser("efficiency", help="episodes until the rolling success first reaches 0.99 (BabyAI's metric)")
    e.add_argument("--level", required=True)
    e.add_argument("--seeds", type=int, default=1)
    e.add_argument("--budget", type=int, default=1_000_000, help="timesteps per seed at most")
    a = kinds.add_parser(
        "atari", help="steps/s of one FiLM policy over several Atari games against SB3's single-game Atari PPO"
    )
    a.add_argument("--suite", default="atari-4game", help="Atari env recipe (envs/NAME.yaml)")
    a.add_argument("--game", help="the reference's game (default: the suite's first)")
    a.add_argument("--n-envs", type=int, default=8)
    a.add_argument("--timesteps", type=int, default=20_000)
    a.add_argument("--repeats", type=int, default=3)
    c = kinds.add_parser("conditioning", help="film / concat / bias / scale / gate / none at the same budget")
    c.add_argument("--level", required=True)
    c.add_argument("--budget", type=int, default=200_000)
    c.add_argument("--seed", type=int, default=0)
    for q in (e, c):
        q.add_argument("--agent", default="film-cnn", help="agent recipe")
        q.add_argument("--runs-dir", default="runs/bench")
    for q in (t, e, c, a):
        q.add_argument("overrides", nargs="*", help="key=value overrides of the experiment")
        q.add_argument("--out", metavar="FILE", help="write the result as JSON")
        q.set_defaults(func=cmd_bench)

    p = sub.add_parser("sweep", help="train every grid setting x seed, locally or on a Ray cluster")
    p.add_argument("experiment", nargs="?", help="experiments/NAME.yaml (its sweep: section is the default grid)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every trial")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="sweep KEY over values (repeat)")
    p.add_argument("--seeds", type=int, metavar="K", help="seeds per setting: seed, seed+1, ... (default 1)")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (auto: the running one)")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once (local default: one per core)")
    p.add_argument("--retries", type=int, metavar="N", help="run a failed trial again up to N times (default 1)")
    p.add_argument("--gpus-per-trial", type=float, metavar="F", help="Ray: GPU share of each trial (default 0)")
    p.add_argument("--name", help="the sweep's name (default: experiment-date-time)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="run the trials of a sweep that are not finished")
    p.add_argument("--dry-run", action="store_true", help="list the trials and stop")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="a sweep's runs as a table (mean ± 95%% CI across seeds) and learning curves")
    p.add_argument("sweep_dir", help="runs/sweeps/NAME")
    p.add_argument("--out", metavar="DIR", help="where the files go (default SWEEP_DIR/report)")
    p.add_argument(
        "--wandb",
        choices=("auto", "online", "offline", "disabled"),
        help="also log the table and curves to wandb (default: the experiment's logging.wandb)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("goals", help="goal-state datasets for a reward model: states where BabyAI's bot succeeded")
    actions = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_libraries()
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


if __name__ == "__main__":
    sys.exit(main())
