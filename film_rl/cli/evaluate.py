"""`film-rl evaluate`: roll a saved policy out and report its figures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from film_rl.cli.common import print_games, writable_folder
from film_rl.errors import UserError

SPLIT_MEANING = {
    "train": "missions training saw",
    "heldout": "missions training never saw",
    "all": "every mission of the levels",
}


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
    if args.forget and config.agent.policy != "lstm":
        raise UserError(f"--forget: {model_path} is a {config.agent.policy} policy, which has no memory to forget")
    model = runs.load_model(config, model_path, device=args.device)
    deterministic = config.eval.deterministic if args.deterministic is None else args.deterministic
    reward_model = None
    if args.reward_model:
        from film_rl.agile.training import REWARD_MODEL, build_reward_model, load_reward_model
        from film_rl.config import reward_model_settings

        saved = runs.beside(model_path, REWARD_MODEL)
        if reward_model_settings(config.agent) is None or not saved.exists():
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
        progress=True,
        split=args.split,
        forget=args.forget,
    )
    if args.json:
        print(result.to_json())
        return 0
    forgetting = ", memory reset at every step" if args.forget else ""
    print(
        f"{model_path}: {result.episodes} episodes, "
        f"{'deterministic' if deterministic else 'stochastic'} actions{forgetting}"
    )
    if result.per_game is not None:
        print_games(result)
        if args.video:
            print(f"videos: {args.video}")
        return 0
    for name, figures in (result.splits or {"": result.headline()}).items():
        if name:
            print(f"{name} split ({figures['episodes']} episodes, {SPLIT_MEANING[name]}):")
        print(f"success_rate        {figures['success_rate']:.3f}")
        print(f"mean_return         {figures['mean_return']:.3f}")
        print(f"mean_episode_length {figures['mean_episode_length']:.1f}")
        labels = [*figures["per_kind"], *(result.per_description or {})]
        width = max([18, *(len(label) + 1 for label in labels)])  # one column for every figure
        for kind, rate in figures["per_kind"].items():
            print(f"  {kind:<{width}}{rate:.3f}")
        if not name or name == result.split:
            for trait, held in (result.per_description or {}).items():
                print(f"  {trait:<{width}}{held['success_rate']:.3f} ({held['episodes']:.0f} episodes)")
            blocks: list[tuple[str, dict[str, dict[str, float]] | None]] = [
                ("first object picked up:", result.first_pickup),
                ("put next, each part on its own:", result.put_next),
            ]
            column = max([22, *(len(what) + 1 for _, block in blocks for what in block or {})])  # one column
            for heading, block in blocks:
                if block is not None:
                    print(heading)
                for what, held in (block or {}).items():
                    odds = f"; {held['chance']:.3f} by chance, ignoring the location" if "chance" in held else ""
                    print(f"  {what:<{column}}{held['rate']:.3f} ({held['episodes']:.0f} episodes{odds})")
        if name == "heldout":
            for item, held in (result.per_heldout or {}).items():
                print(f"  {item:<18}{held['success_rate']:.3f} ({held['episodes']:.0f} episodes)")
    if result.memory is not None:
        figures = result.memory
        adds = f"adds {figures['adds']:.3f} of the features' norm; " if "adds" in figures else ""
        print(
            f"memory (the actor's LSTM, {figures['steps']:,.0f} steps): {adds}"
            f"gate pre-activations beyond |5|: {figures['saturated']:.3f}"
        )
    if result.reward_model is not None:
        judged = result.reward_model
        print(
            f"reward model on final states: precision {judged['precision']:.3f} recall {judged['recall']:.3f} "
            f"accuracy {judged['accuracy']:.3f} (threshold {judged['threshold']})"
        )
    if args.video:
        print(f"videos: {args.video}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="roll out a saved policy and report success rates")
    p.add_argument("target", help="a run directory, or a model / checkpoint zip inside one")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument(
        "--seed",
        type=int,
        default=1_000_000,
        help="first episode's seed (default 1,000,000: the run's final evaluation, so eval.json's figures come back)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--deterministic", dest="deterministic", action="store_true", default=None)
    group.add_argument("--stochastic", dest="deterministic", action="store_false")
    p.add_argument("--video", metavar="DIR", help="write mp4s of the first episodes, mission (or game) shown")
    p.add_argument(
        "--video-episodes", type=int, metavar="K", help="episodes to record (default 4, or one per game of a suite)"
    )
    p.add_argument(
        "--split",
        choices=["train", "heldout", "all"],
        help="a run with held-out instructions (env.holdout): play only these missions "
        "(default: the train and heldout splits, --episodes each)",
    )
    p.add_argument(
        "--forget",
        action="store_true",
        help="an LSTM policy: reset its memory at every step; the same episodes with and without "
        "say what the memory is worth",
    )
    p.add_argument("--device", default="cpu", help="torch device for the policy (default cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--reward-model",
        action="store_true",
        help="AGILE runs: also report the reward model's precision / recall on the episodes' final states",
    )
    p.set_defaults(func=cmd_evaluate)
