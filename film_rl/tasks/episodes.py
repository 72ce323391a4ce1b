"""Playing a policy for N episodes, and the figures an evaluation reports.

Shared by every task: a task supplies the env and turns the finished :class:`Episode` list into
its :class:`EvalResult` (success per instruction kind and level, or returns per game).

Episodes are assigned up front (episode ``i`` is reset with seed ``seed + i``) and run in a few
parallel slots with one batched forward pass per step, so the result does not depend on which
episodes happen to end first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO


@dataclass
class EvalResult:
    """An evaluation's figures; what does not apply to the env family (success on Atari, games on
    BabyAI) is ``None`` or empty and left out of the JSON."""

    #: BabyAI's verdict; ``None`` on Atari, where games have scores, not success
    success_rate: float | None
    #: raw (unclipped) returns; on Atari a mix of games' scales, see ``per_game`` instead
    mean_return: float
    #: in agent steps (on Atari, 4 emulator frames each)
    mean_episode_length: float
    episodes: int
    #: success rate per instruction kind, and per level for multi-level suites
    per_kind: dict[str, float] = field(default_factory=dict)
    #: success rate and episodes per trait of the missions' object descriptions (location, colour,
    #: article, the first object's type and colour)
    #: (:func:`film_rl.tasks.instructions.description_traits`) and of where the object meant starts,
    #: for the dimensions that varied
    per_description: dict[str, dict[str, float]] | None = None
    #: pick-up and put-next missions: how often the first object picked up had the type and the
    #: colour the mission named (:func:`film_rl.tasks.babyai.first_pickups`), ``rate`` and ``episodes``
    first_pickup: dict[str, dict[str, float]] | None = None
    #: put-next missions: how often the agent held the object to move, and dropped anything beside
    #: the target (:func:`film_rl.tasks.babyai.put_next_parts`), ``rate`` and ``episodes``
    put_next: dict[str, dict[str, float]] | None = None
    #: an AGILE run's reward model judged on the episodes' final states (``--reward-model``)
    reward_model: dict[str, float] | None = None
    #: Atari: per game ``episodes``, ``mean_return``, ``std_return``, ``mean_episode_length`` and
    #: ``human_normalized`` (of the mean return; left out for games without reference scores)
    per_game: dict[str, dict[str, float]] | None = None
    #: Atari: ``mean`` and ``median`` across games of the per-game human-normalized scores
    human_normalized: dict[str, float] | None = None
    #: a run with held-out instructions: which split the figures above are of (``train``,
    #: ``heldout`` or ``all``), and every split played, each with the figures above
    split: str | None = None
    splits: dict[str, dict[str, Any]] | None = None
    #: the held-out instructions (colour-object combinations, missions)
    heldout: list[str] | None = None
    #: the held-out split's figures per held-out instruction: ``success_rate`` and ``episodes``
    #: (which combination the policy fails on; an episode naming two counts for both)
    per_heldout: dict[str, dict[str, float]] | None = None
    #: an LSTM policy: what its memory did in these episodes (:class:`film_rl.run.memory.MemoryProbe`):
    #: ``steps``, ``saturated`` (the share of its gates' pre-activations beyond |5|) and, for a
    #: residual memory, ``adds`` (what it adds to the features, over their norm)
    memory: dict[str, float] | None = None

    def headline(self) -> dict[str, Any]:
        """The figures of one split: success rate, return, length, episodes, per kind."""
        keys = ("success_rate", "mean_return", "mean_episode_length", "episodes", "per_kind")
        return {key: getattr(self, key) for key in keys}

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None and v != {}}, indent=2)

    def scalars(self) -> dict[str, float]:
        """Flat numbers for a logger: ``success_rate/<kind>``, ``ep_return/<game>``,
        ``human_normalized/<game>``, ``human_normalized_mean`` ... beside the headline figures."""
        out: dict[str, float] = {"mean_return": self.mean_return, "mean_episode_length": self.mean_episode_length}
        out["episodes"] = float(self.episodes)
        if self.success_rate is not None:
            out["success_rate"] = self.success_rate
        out.update({f"success_rate/{kind}": rate for kind, rate in self.per_kind.items()})
        for game, figures in (self.per_game or {}).items():
            out[f"ep_return/{game}"] = figures["mean_return"]
            if "human_normalized" in figures:
                out[f"human_normalized/{game}"] = figures["human_normalized"]
        out.update({f"human_normalized_{k}": v for k, v in (self.human_normalized or {}).items()})
        out.update({f"reward_model/{k}": v for k, v in (self.reward_model or {}).items()})
        out.update({f"first_pickup/{k}": v["rate"] for k, v in (self.first_pickup or {}).items()})
        out.update({f"put_next/{k}": v["rate"] for k, v in (self.put_next or {}).items()})
        out.update({f"memory/{k}": v for k, v in (self.memory or {}).items() if k != "steps"})  # on the dashboard
        for item, figures in (self.per_heldout or {}).items():
            # a held-out mission's text may hold commas and quotes, which a CSV header cannot
            name = re.sub(r"[^\w ./-]", "_", item)
            out[f"heldout/success_rate/{name}"] = figures["success_rate"]
        for name, figures in (self.splits or {}).items():
            out[f"{name}/episodes"] = float(figures["episodes"])
            if figures.get("success_rate") is not None:
                out[f"{name}/success_rate"] = figures["success_rate"]
            out[f"{name}/mean_return"] = figures["mean_return"]
        return out


@dataclass
class Episode:
    mission: str
    level: str
    success: bool
    ret: float
    length: int
    frames: list[np.ndarray] = field(default_factory=list)
    #: the return so far at each recorded frame (0 at the reset), for a running score in videos
    returns: list[float] = field(default_factory=list)
    #: the observation the episode ended on: a goal state exactly when ``success``
    final_obs: dict[str, np.ndarray] | None = None
    #: the first object the agent picked up (``"red ball"``; BabyAI's ``info["picked_up"]``), if any
    first_pickup: str | None = None
    #: whether that object is one the mission means, location included (BabyAI's
    #: ``info["picked_up_meant"]``); ``None`` without a pick-up or on missions naming none to pick up
    first_pickup_meant: bool | None = None
    #: a mission naming a location: whether the location picks its object out (BabyAI's
    #: ``info["location_decides"]`` at the reset); ``None`` on the other missions
    location_decides: bool | None = None
    #: where a location decides the object to pick up: the chance a policy ignoring it picks the
    #: one meant (BabyAI's ``info["location_odds"]`` at the reset); ``None`` elsewhere
    location_odds: float | None = None
    #: where the object the mission sends the agent to first lies at the reset: ``in view``, ``in the
    #: agent's room`` or ``in another room`` (BabyAI's ``info["object_meant_starts"]``); ``None`` on
    #: sequences and on other families
    object_meant_starts: str | None = None
    #: a put-next mission: whether the agent ever held an object the mission says to move, and
    #: ever dropped anything beside the one to put it next to (BabyAI's ``info["carrying_object_to_move"]``
    #: and ``info["dropped_next_to_target"]``)
    carried_object_to_move: bool = False
    dropped_next_to_target: bool = False


def stack(observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([o[key] for o in observations]) for key in observations[0]}


def rollout(
    model: PPO | RecurrentPPO,
    make_env: Any,
    episodes: int,
    seed: int = 0,
    deterministic: bool = True,
    slots: int = 16,
    record: int = 0,
    options: Callable[[int], dict[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    forget: bool = False,
) -> list[Episode]:
    """Run ``episodes`` episodes; the first ``record`` keep their rendered frames.

    :param make_env: zero-argument callable returning one wrapped env (``render_mode="rgb_array"``
        when recording).
    :param options: episode index -> its reset options, e.g. which Atari game it plays.
    :param progress: called with (episodes finished, episodes) after every finished episode.
    :param forget: a recurrent policy's memory starts afresh at every step, as at an episode's
        first: what its memory is worth is the success this costs.
    """
    n = max(1, min(slots, episodes))
    envs: list[gym.Env] = [make_env() for _ in range(n)]
    queue = list(range(episodes))
    current: list[int | None] = [None] * n
    obs: list[dict[str, np.ndarray] | None] = [None] * n
    running: list[Episode | None] = [None] * n
    finished: dict[int, Episode] = {}
    recurrent = isinstance(model, RecurrentPPO)
    state: tuple[np.ndarray, ...] | None = None
    starts = np.ones(n, dtype=bool)

    def start(slot: int) -> None:
        episode = queue.pop(0)
        o, info = envs[slot].reset(seed=seed + episode, options=options(episode) if options else None)
        current[slot], obs[slot], starts[slot] = episode, o, True
        running[slot] = Episode(
            info.get("mission", ""),
            "",
            False,
            0.0,
            0,
            location_decides=info.get("location_decides"),
            location_odds=info.get("location_odds"),
            object_meant_starts=info.get("object_meant_starts"),
        )
        if episode < record:
            running[slot].frames.append(envs[slot].render())  # type: ignore[union-attr, arg-type]
            running[slot].returns.append(0.0)  # type: ignore[union-attr]

    for slot in range(n):
        start(slot)
    if recurrent:
        layers, _, hidden = (int(v) for v in model.policy.lstm_hidden_state_shape)  # type: ignore[union-attr]
        state = (np.zeros((layers, n, hidden), np.float32), np.zeros((layers, n, hidden), np.float32))

    try:
        while any(c is not None for c in current):
            active = [i for i in range(n) if current[i] is not None]
            batch = stack([obs[i] for i in active])  # type: ignore[misc]
            if recurrent:
                assert state is not None
                sub = tuple(s[:, active] for s in state)
                actions, new = model.predict(
                    batch, state=sub, episode_start=starts[active], deterministic=deterministic
                )
                for s, ns in zip(state, new, strict=True):  # type: ignore[arg-type]
                    s[:, active] = ns
            else:
                actions, _ = model.predict(batch, deterministic=deterministic)
            starts[:] = forget
            for slot, action in zip(active, actions, strict=True):
                o, reward, terminated, truncated, info = envs[slot].step(int(action))
                ep = running[slot]
                assert ep is not None
                ep.ret += float(reward)
                ep.length += 1
                if ep.first_pickup is None and "picked_up" in info:
                    ep.first_pickup = str(info["picked_up"])
                    ep.first_pickup_meant = info.get("picked_up_meant")
                ep.carried_object_to_move |= bool(info.get("carrying_object_to_move", False))
                ep.dropped_next_to_target |= bool(info.get("dropped_next_to_target", False))
                if current[slot] is not None and current[slot] < record:  # type: ignore[operator]
                    ep.frames.append(envs[slot].render())  # type: ignore[arg-type]
                    ep.returns.append(ep.ret)
                obs[slot] = o
                if terminated or truncated:
                    ep.final_obs = o
                    ep.success = bool(info.get("is_success", terminated and float(reward) > 0))
                    ep.level = str(info.get("level", ep.level))
                    finished[current[slot]] = ep  # type: ignore[index]
                    current[slot] = None
                    if progress is not None:
                        progress(len(finished), episodes)
                    if queue:
                        start(slot)
    finally:
        for env in envs:
            env.close()
    return [finished[i] for i in range(episodes)]
