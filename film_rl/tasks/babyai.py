"""The language family: BabyAI and MiniGrid levels, whose instruction is the level's mission.

Everything a run needs to know about these envs is here; the envs themselves (wrappers that
tokenize missions, mark success, end episodes at ``done``) are :mod:`film_rl.tasks.babyai_envs`.
"""

from __future__ import annotations

import functools
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.utils import explained_variance

from film_rl.config import BabyAIEnvConfig, ExperimentConfig, GridAgentConfig
from film_rl.errors import UserError
from film_rl.tasks.babyai_envs import (
    OBJECT_MEANT_STARTS,
    LocationInfo,
    PickupInfo,
    PutNextInfo,
    StartInfo,
    check_levels,
    make_babyai_env,
    policy_input,
)
from film_rl.tasks.babyai_metric import CentredSuccess
from film_rl.tasks.base import Task, TrainingStats
from film_rl.tasks.episodes import Episode, EvalResult
from film_rl.tasks.holdout import Holdout, Split
from film_rl.tasks.instructions import UNK, Vocabulary, description_traits, instruction_kind
from film_rl.tasks.splits import from_config
from film_rl.tasks.video import write_episode_videos

#: instruction kind -> a one-room BabyAI level whose missions of that kind vary colour and object
RELATED_LEVEL = {
    "go to": "BabyAI-GoToLocal-v0",
    "pick up": "BabyAI-PickupLoc-v0",
    "open": "BabyAI-Open-v0",
    "put next": "BabyAI-PutNextLocal-v0",
}


class BabyAITask(Task):
    """BabyAI levels (several make a suite); the policy reads the mission, tokenized."""

    kind = "babyai"
    env: BabyAIEnvConfig
    agent: GridAgentConfig

    def __init__(self, config: ExperimentConfig, vocab: Vocabulary) -> None:
        super().__init__(config, vocab)
        assert isinstance(self.env, BabyAIEnvConfig) and isinstance(self.agent, GridAgentConfig)

    def validate(self) -> None:
        check_levels(self.env.levels)
        budget = self.config.budget
        if budget.stop_level is not None:
            if budget.stop_level not in self.env.levels:
                raise UserError(
                    f"budget.stop_level: {budget.stop_level} is not one of env.levels ({', '.join(self.env.levels)})"
                )
            if budget.stop_on != "rolling":
                raise UserError(
                    "budget.stop_level reads its level's rolling success; BabyAI's window counts every level's "
                    "episodes: use budget.stop_on=rolling"
                )
        if self.env.holdout:
            _ = self.holdout  # its errors (a split left empty) are the config's

    @functools.cached_property
    def holdout(self) -> Holdout:
        """The missions held out of training (none: an empty holdout)."""
        return from_config(self.env)

    def held_out_instructions(self) -> list[str]:
        return self.holdout.describe()

    def is_held_out(self, instruction: str) -> bool:
        return self.holdout.held_out(instruction)

    def held_out_by(self, instruction: str) -> list[str]:
        return self.holdout.matched(instruction)

    def worker(self, levels: list[str], *, done_action_ends: bool = False) -> Callable[[], gym.Env]:
        # AGILE (done_action_ends): the reward model pays at `done`; otherwise, with episode_end=done,
        # the level's own verdict pays a `done` said in a goal state
        return functools.partial(
            make_babyai_env,
            levels,
            self.vocab,
            max_length=self.env.max_instruction_length,
            reward_scale=self.env.reward_scale,
            done_action_ends=done_action_ends or self.env.episode_end == "done",
            reward_success_at_done=not done_action_ends,
            holdout=self.holdout,
            split="train",
            fast_view=self.env.fast_view,
            timeout_bootstrap=self.env.timeout_bootstrap,
            previous_action=self.env.previous_action,
        )

    def evaluation_env(self, render: bool = False, split: Split = "all") -> gym.Env:
        """The level's own episodes: success ends them, ``done`` does nothing (AGILE runs too);
        with a holdout, only the missions of ``split``; each pick-up named in ``info["picked_up"]``,
        whether a mission's location decides its object in ``info["location_decides"]``, the
        parts of a put-next mission carried out (:class:`film_rl.tasks.babyai_envs.PutNextInfo`),
        and where the object meant starts (:class:`film_rl.tasks.babyai_envs.StartInfo`)."""
        env = make_babyai_env(
            self.env.levels,
            self.vocab,
            max_length=self.env.max_instruction_length,
            render_mode="rgb_array" if render else None,
            holdout=self.holdout,
            split=split,
            fast_view=self.env.fast_view,
            previous_action=self.env.previous_action,
        )
        return StartInfo(PutNextInfo(LocationInfo(PickupInfo(env))))

    def policy_kwargs(self) -> dict[str, Any]:
        # FilmCnnPolicy / FilmLstmPolicy read the grid through InstructionFeatures by default
        return {"features_extractor_kwargs": {**self.agent.grid_network(), "features_dim": self.agent.features_dim}}

    def training_stats(self) -> InstructionStats:
        budget = self.config.budget
        return InstructionStats(
            self.vocab,
            budget.success_window,
            stop_at=budget.stop_at_success,
            babyai_window=budget.babyai_window,
            stop_on=budget.stop_on,
            several_levels=len(self.env.levels) > 1,
            stop_level=budget.stop_level,
        )

    def summarize(self, episodes: list[Episode]) -> EvalResult:
        return summarize(episodes, multi_level=len(self.env.levels) > 1)

    def write_videos(self, episodes: list[Episode], out_dir: Path) -> list[Path]:
        return write_episode_videos(episodes, out_dir)

    def encode_instruction(self, text: str) -> np.ndarray:
        return self.vocab.encode(text, self.env.max_instruction_length)[0]

    def related_levels(self, missions: list[str]) -> list[str] | None:
        """The one-room level of each verb the missions use: GoToRedBallGrey's single "go to the
        red ball" becomes GoToLocal's colour-object missions, the same verb over many objects."""
        related = [
            RELATED_LEVEL[kind] for kind in dict.fromkeys(map(instruction_kind, missions)) if kind in RELATED_LEVEL
        ]
        related = [level for level in related if level not in self.env.levels]
        return related or None

    def policy_input(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        """Minigrid's ``{image, direction, mission}``, the mission tokenized with the run's vocabulary."""
        tokens, length = self.vocab.encode(str(observation["mission"]), self.env.max_instruction_length)
        return policy_input(observation, tokens, length)


#: the evaluation's split of the missions naming a location (:class:`film_rl.tasks.babyai_envs.LocationInfo`)
LOCATION_USE = "location use"
#: the evaluation's split of the missions by where their object starts (:class:`film_rl.tasks.babyai_envs.StartInfo`)
OBJECT_START = "object meant starts"


def summarize(episodes: list[Episode], multi_level: bool) -> EvalResult:
    """Success overall, per instruction kind, per trait of the object descriptions (and of where
    the object meant starts) and, for a suite, per level."""
    groups: dict[str, list[bool]] = defaultdict(list)
    traits: dict[str, list[bool]] = defaultdict(list)
    values: dict[str, set[str]] = defaultdict(set)  # each dimension's traits seen
    for ep in episodes:
        groups[instruction_kind(ep.mission)].append(ep.success)
        if multi_level:
            groups[ep.level].append(ep.success)
        described = description_traits(ep.mission)
        if ep.location_decides is not None:  # of the missions naming a location: does it decide?
            described[LOCATION_USE] = "location decides" if ep.location_decides else "location redundant"
        if ep.object_meant_starts is not None:  # is the object meant in view, in the room, further?
            described[OBJECT_START] = f"object meant {ep.object_meant_starts}"
        for dimension, trait in described.items():
            traits[trait].append(ep.success)
            values[dimension].add(trait)
    # a dimension every mission shares (all name a colour) says nothing: only those that varied
    shown = set().union(*(seen for seen in values.values() if len(seen) > 1))
    # in the order of the dimensions (a location's use beside the location), then of the traits
    dimensions = [d for d in values if d != LOCATION_USE]
    if LOCATION_USE in values:
        dimensions.insert(dimensions.index("location") + 1, LOCATION_USE)
    nearest_first = {f"object meant {where}": i for i, where in enumerate(OBJECT_MEANT_STARTS)}
    order = [
        t
        for dimension in dimensions
        for t in sorted(values[dimension], key=lambda t: (nearest_first.get(t, 0), t))
        if t in shown
    ]
    per_description = {t: {"success_rate": float(np.mean(traits[t])), "episodes": len(traits[t])} for t in order}
    return EvalResult(
        success_rate=float(np.mean([e.success for e in episodes])),
        mean_return=float(np.mean([e.ret for e in episodes])),
        mean_episode_length=float(np.mean([e.length for e in episodes])),
        episodes=len(episodes),
        per_kind={k: float(np.mean(v)) for k, v in sorted(groups.items())},
        per_description=per_description or None,
        first_pickup=first_pickups(episodes),
        put_next=put_next_parts(episodes),
    )


#: the instruction kinds whose first object is the one to pick up
PICKUP_KINDS = ("pick up", "put next")


def first_pickups(episodes: list[Episode]) -> dict[str, dict[str, float]] | None:
    """What the agent picked up first on missions that ask it to pick an object up (``pick up``,
    ``put next``), against the description of that object: ``picked up anything`` (of every
    such episode), then, of the episodes with a pick-up whose mission names a type (a colour,
    both), how often the first object had the ``named type`` (``named colour``, ``named type
    and colour``). ``rate`` and ``episodes`` each; ``None`` without such missions.

    Success says whether the policy read the description; this says which words it read. A
    language-blind policy's rates are the room's chance level: a policy that reads the type but
    not the colour matches the type far above that chance and the colour at it. The type and colour
    are not the whole description (a location, ``the`` against ``a``), so ``named type and colour``
    may exceed success; and on levels where a key or a blocking object must be picked up first
    (UnlockPickup, KeyCorridor), the first object is that one, whatever the policy read.

    ``the object meant``: how often the first object was one the whole description fits, location
    included; ``the object meant where the location decides``: the same where the location alone
    tells it from another object (``Episode.location_odds``), with its ``chance`` for a policy
    that reads all but the location. That figure, not success, says whether the location was
    read: a wrong first pick-up is not a failure on PickupLoc (the object can be put down and
    another tried), so success there also rewards trying the candidates in turn. Sequences
    (BossLevel) are not counted: their first object may belong to either half.
    """
    picked: list[bool] = []
    matched: dict[str, list[bool]] = defaultdict(list)
    chance: dict[str, list[float]] = defaultdict(list)  # of picking the object meant, ignoring the location
    for ep in episodes:
        traits = description_traits(ep.mission)
        if instruction_kind(ep.mission) not in PICKUP_KINDS or "object" not in traits:
            continue
        picked.append(ep.first_pickup is not None)
        if ep.first_pickup is None:
            continue
        colour, _, kind = ep.first_pickup.partition(" ")
        named_type = traits["object"] if traits["object"] != "object" else None  # PickupDist's any type
        named_colour = traits.get("object colour")
        if named_type is not None:
            matched["named type"].append(kind == named_type)
        if named_colour is not None:
            matched["named colour"].append(colour == named_colour)
        if named_type is not None and named_colour is not None:
            matched["named type and colour"].append(kind == named_type and colour == named_colour)
        if ep.first_pickup_meant is not None:
            matched["the object meant"].append(ep.first_pickup_meant)
            if ep.location_odds is not None:
                matched["the object meant where the location decides"].append(ep.first_pickup_meant)
                chance["the object meant where the location decides"].append(ep.location_odds)
    if not picked:
        return None
    order = (
        "named type",
        "named colour",
        "named type and colour",
        "the object meant",
        "the object meant where the location decides",
    )
    figures = {"picked up anything": picked, **{name: matched[name] for name in order if name in matched}}
    out = {name: {"rate": float(np.mean(hits)), "episodes": len(hits)} for name, hits in figures.items()}
    for name, odds in chance.items():
        out[name]["chance"] = float(np.mean(odds))
    return out


def put_next_parts(episodes: list[Episode]) -> dict[str, dict[str, float]] | None:
    """The two parts of a put-next mission, each on its own, over the put-next episodes: ``held
    the object to move`` (at any step), ``dropped beside the target`` (anything, at any step).
    ``rate`` and ``episodes`` each; ``None`` without put-next missions.

    Success needs both at once. Set beside a language-blind policy's rates (the room's chance),
    they say which part a policy learnt while its success is still at a random policy's floor.
    """
    played = [ep for ep in episodes if instruction_kind(ep.mission) == "put next"]
    if not played:
        return None
    parts = {
        "held the object to move": [ep.carried_object_to_move for ep in played],
        "dropped beside the target": [ep.dropped_next_to_target for ep in played],
    }
    return {name: {"rate": float(np.mean(hits)), "episodes": len(hits)} for name, hits in parts.items()}


class InstructionStats(TrainingStats):
    """Per-level success rates, unknown-word counts and BabyAI's episodes-to-99% metric.

    SB3 already logs the overall ``rollout/success_rate`` from ``info["is_success"]``; this adds
    ``rollout/success_rate/<level>`` (window ``window``), ``instructions/unknown_words`` (words
    mapped to ``<unk>`` in the missions seen so far) and ``rollout/episodes``. The first episode
    count at which the rolling success reaches each of ``thresholds`` is kept in
    :attr:`episodes_to`; the same for BabyAI's centred window (the figure comparable with
    BabyAI's papers, :mod:`film_rl.tasks.babyai_metric`) in :attr:`babyai_episodes_to`.

    A run on several levels also logs each level's own count, ``rollout/episodes/<level>``, and
    the count of that level's episodes at which its rolling success first reached each threshold,
    ``rollout/episodes_to_<pct>/<level>``: what a level learnt beside others (a curriculum's
    second level) took, beside what the run took in all; and the critic's explained variance of
    each level's steps in the last rollout, ``train/explained_variance/<level>``, as SB3's
    ``train/explained_variance`` is of all of them: a critic that predicts one level's return
    and not another's shows there, where the mixed figure hides it.

    :param vocab: the run's vocabulary (to recognise ``<unk>``).
    :param window: episodes in the rolling success rates.
    :param thresholds: success rates whose first crossing is recorded.
    :param stop_at: end training once the success ``stop_on`` names reaches this rate.
    :param babyai_window: rows in BabyAI's centred window.
    :param stop_on: ``rolling`` (the last ``window`` episodes) or ``babyai`` (the centred window).
    :param several_levels: the run plays more than one level: only then are the per-level counts
        and critic figures kept (a one-level run's are the overall ones).
    :param stop_level: the level whose own rolling success ``stop_at`` reads (``stop_on``
        ``rolling``); ``None``: every level's episodes together.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        window: int = 100,
        thresholds: tuple[float, ...] = (0.9, 0.99),
        stop_at: float | None = None,
        babyai_window: int = 100,
        stop_on: str = "rolling",
        several_levels: bool = False,
        stop_level: str | None = None,
    ) -> None:
        super().__init__()
        self.several_levels = several_levels
        self.stop_level = stop_level
        self.stop_at = stop_at
        self.stop_on = stop_on
        self.unk = vocab.stoi[UNK]
        self.window = window
        # the stopping rate is a threshold too, so the episode count it stopped at is recorded
        self.thresholds = tuple(sorted({*thresholds, *([stop_at] if stop_at is not None else [])}))
        self.per_level: dict[str, deque[bool]] = defaultdict(lambda: deque(maxlen=window))
        self.level_episodes: dict[str, int] = defaultdict(int)
        self.level_episodes_to: dict[str, dict[float, int]] = defaultdict(dict)
        self.level_counts_unknown = False  # resumed from a checkpoint saved before they were counted
        self.recent: deque[bool] = deque(maxlen=window)
        self.episodes = 0
        self.unknown_words = 0
        self.heldout_redraws = 0
        self.episodes_to: dict[float, int] = {}
        self.centred = CentredSuccess(babyai_window, self.thresholds)
        self.curve: list[tuple[int, int, float]] = []  # (episodes, timesteps, rolling success)
        self.step_levels: list[list[str]] = []  # the level of each env at each step of this rollout

    @property
    def babyai_episodes_to(self) -> dict[float, int]:
        return self.centred.reached

    def _on_training_start(self) -> None:
        obs = self.model._last_obs
        if isinstance(obs, dict):
            self.unknown_words += int((obs["instruction"] == self.unk).sum())

    def _on_rollout_start(self) -> None:
        self.step_levels = []

    def _on_step(self) -> bool:
        if self.several_levels:
            self.step_levels.append([str(info.get("level", "?")) for info in self.locals["infos"]])
        dones = self.locals["dones"]
        if not dones.any():
            # a row may close on a step where no episode ends
            return not (self.centred.advance(self.num_timesteps) and self.reached_target)
        for info in (i for i, d in zip(self.locals["infos"], dones, strict=True) if d):
            if "is_success" not in info:
                continue
            success = bool(info["is_success"])
            self.episodes += 1
            self.heldout_redraws += int(info.get("heldout_redraws", 0))
            self.recent.append(success)
            self.centred.episode(success)
            level = str(info.get("level", "?"))
            outcomes = self.per_level[level]
            outcomes.append(success)
            self.level_episodes[level] += 1
            self._note_crossings(outcomes, self.level_episodes_to[level], self.level_episodes[level])
            self._note_crossings(self.recent, self.episodes_to, self.episodes)
        self.centred.advance(self.num_timesteps)
        new_obs = self.locals["new_obs"]
        if isinstance(new_obs, dict):  # the next episode's mission, already tokenized
            self.unknown_words += int((new_obs["instruction"][dones] == self.unk).sum())
        return not self.reached_target

    def _note_crossings(self, outcomes: deque[bool], reached: dict[float, int], count: int) -> None:
        """Once ``outcomes`` hold a full window: the episode ``count`` at which their success first
        reached each threshold not in ``reached`` yet."""
        if len(outcomes) == self.window:
            rate = float(np.mean(outcomes))
            for t in self.thresholds:
                if rate >= t and t not in reached:
                    reached[t] = count

    def level_counts(self) -> tuple[dict[str, int], dict[str, dict[float, int]]]:
        if not self.several_levels or self.level_counts_unknown:
            return {}, {}
        return dict(self.level_episodes), {level: dict(reached) for level, reached in self.level_episodes_to.items()}

    def state(self) -> dict[str, Any] | None:
        """What a resumed run needs to go on counting: BabyAI's metric counts every episode of the run."""
        return {
            "episodes": self.episodes,
            "unknown_words": self.unknown_words,
            "heldout_redraws": self.heldout_redraws,
            "episodes_to": {str(t): n for t, n in self.episodes_to.items()},
            "recent": list(self.recent),
            "per_level": {level: list(outcomes) for level, outcomes in self.per_level.items()},
            "centred": self.centred.state(),
            **(
                {}
                if self.level_counts_unknown
                else {
                    "level_episodes": dict(self.level_episodes),
                    "level_episodes_to": {
                        level: {str(t): n for t, n in reached.items()}
                        for level, reached in self.level_episodes_to.items()
                    },
                }
            ),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.episodes = int(state["episodes"])
        self.unknown_words = int(state["unknown_words"])
        self.heldout_redraws = int(state.get("heldout_redraws", 0))  # saved since holdouts exist
        self.episodes_to = {float(t): int(n) for t, n in state["episodes_to"].items()}
        self.recent.extend(bool(x) for x in state["recent"])
        for level, outcomes in state["per_level"].items():
            self.per_level[level].extend(bool(x) for x in outcomes)
        if "level_episodes" in state:  # saved since each level's episodes are counted
            self.level_episodes.update({level: int(n) for level, n in state["level_episodes"].items()})
            for level, reached in state.get("level_episodes_to", {}).items():
                self.level_episodes_to[level].update({float(t): int(n) for t, n in reached.items()})
        elif self.episodes:
            self.level_counts_unknown = True  # counting from 0 now would be wrong, so none is logged
        if "centred" in state:  # saved since BabyAI's centred window is counted
            self.centred.restore(state["centred"])
        elif self.episodes:
            self.centred.unknown = True

    def headline(self) -> str:
        return f"success {float(np.mean(self.recent)):.2f}" if self.recent else ""

    @property
    def reached_target(self) -> bool:
        if self.stop_at is None:
            return False
        if self.stop_on == "babyai":
            return self.stop_at in self.centred.reached
        # .get: the per-level table is a defaultdict, and a level not played yet has no figure to log
        recent = self.recent if self.stop_level is None else self.per_level.get(self.stop_level, ())
        return len(recent) == self.window and float(np.mean(recent)) >= self.stop_at

    def _on_rollout_end(self) -> None:
        self._record()
        self._record_critic()
        if self.recent:
            self.curve.append((self.episodes, self.num_timesteps, float(np.mean(self.recent))))

    def _on_training_end(self) -> None:
        # a run stopped at its target ends inside a rollout, where SB3 skips _on_rollout_end: the
        # figures it stopped on go into the log row of its final evaluation instead
        self._record()

    def _record_critic(self) -> None:
        """Each level's explained variance in the rollout just collected (its returns, already
        computed, against the values the critic gave them), where the run plays several levels."""
        buffer = self.model.rollout_buffer  # type: ignore[attr-defined]
        if not self.several_levels or len(self.step_levels) != buffer.buffer_size:
            return  # one level (the overall figure is its own), or a rollout not seen from its start
        levels = np.array(self.step_levels)
        for level in np.unique(levels):
            rows = levels == level
            returns, values = buffer.returns[rows], buffer.values[rows]
            if returns.var() > 0:  # a level whose every return was alike has nothing to explain
                self.logger.record(f"train/explained_variance/{level}", float(explained_variance(values, returns)))

    def _record(self) -> None:
        for level, outcomes in self.per_level.items():
            self.logger.record(f"rollout/success_rate/{level}", float(np.mean(outcomes)))
        self.logger.record("rollout/episodes", self.episodes)
        if self.several_levels and not self.level_counts_unknown:
            for level, count in self.level_episodes.items():
                self.logger.record(f"rollout/episodes/{level}", count)
            for level, reached in self.level_episodes_to.items():
                for t, n in reached.items():
                    self.logger.record(f"rollout/episodes_to_{round(t * 100)}/{level}", n)
        self.logger.record("instructions/unknown_words", self.unknown_words)
        if self.heldout_redraws:
            self.logger.record("instructions/heldout_redraws", self.heldout_redraws)
        for t, n in self.episodes_to.items():
            self.logger.record(f"rollout/episodes_to_{round(t * 100)}", n)
        for t, n in self.centred.reached.items():
            self.logger.record(f"rollout/babyai_episodes_to_{round(t * 100)}", n)
        window = self.centred.latest_window()
        if window is not None:
            self.logger.record("rollout/success_rate_babyai_window", window)
