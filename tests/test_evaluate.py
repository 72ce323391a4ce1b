"""Evaluation bookkeeping: instruction kinds, per-level success, and reproducible roll-outs."""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from minigrid.core.constants import COLOR_NAMES, COLOR_TO_IDX, DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.utils.baby_ai_bot import BabyAIBot
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl.config import BabyAIEnvConfig, ExperimentConfig
from film_rl.model.policies import FilmCnnPolicy, FilmLstmPolicy
from film_rl.run.evaluate import Episode, evaluate
from film_rl.tasks.babyai import first_pickups, put_next_parts, summarize
from film_rl.tasks.babyai_envs import make_vec_env
from film_rl.tasks.base import Task
from film_rl.tasks.instructions import Vocabulary, description_traits, instruction_kind
from film_rl.tasks.registry import task_for


@contextmanager
def untrained_policy(levels: list[str]) -> Iterator[tuple[PPO, Task]]:
    """An untrained FiLM CNN policy on ``levels``, and the task that plays and judges it."""
    vocab = Vocabulary.babyai()
    venv = make_vec_env(levels, vocab, 1, seed=0)
    try:
        model = PPO(FilmCnnPolicy, venv, n_steps=16, batch_size=16, seed=0, device="cpu")
        yield model, task_for(ExperimentConfig(env=BabyAIEnvConfig(levels=levels)), vocab)
    finally:
        venv.close()


def test_instruction_kinds_follow_the_babyai_grammar():
    assert instruction_kind("go to the red ball") == "go to"
    assert instruction_kind("pick up a blue key") == "pick up"
    assert instruction_kind("open the yellow door") == "open"
    assert instruction_kind("put the grey box next to the green ball") == "put next"
    assert instruction_kind("open a door, then go to the red ball") == "sequence"
    assert instruction_kind("pick up the key after you open the door") == "sequence"


def test_description_traits_name_location_colour_and_article():
    def traits(mission):
        return list(description_traits(mission).values())

    assert traits("pick up the ball on your left") == ["location", "no colour", "the ...", "ball"]
    assert traits("pick up a red key in front of you") == ["location", "colour", "a ...", "key", "red"]
    assert traits("go to the grey box behind you") == ["location", "colour", "the ...", "box", "grey"]
    assert traits("go to a box") == ["no location", "no colour", "a ...", "box"]
    # two objects: a trait if either description has it, the article of the first
    assert traits("put a key next to the blue ball") == ["no location", "colour", "a ...", "key"]
    assert traits("put the purple box next to a ball") == ["no location", "colour", "the ...", "box", "purple"]
    # PickupDist's "object" names no type: the object is any, its colour still counts
    assert traits("pick up the green object") == ["no location", "colour", "the ...", "object", "green"]
    assert traits("put the red object next to the blue ball") == ["no location", "colour", "the ...", "object", "red"]
    # nothing to say: a MiniGrid mission without BabyAI's objects, one without an article
    assert traits("get to the green goal square") == ["no location", "colour", "the ..."]
    assert traits("open door") == ["no location", "no colour"]


def test_success_per_description_trait_only_for_dimensions_that_varied():
    """PickupLoc's missions vary in every dimension; a level whose missions all name a colour
    reports no colour split (it would say nothing)."""
    episodes = [
        Episode("pick up the ball on your left", "BabyAI-PickupLoc-v0", False, 0.0, 64),
        Episode("pick up a red key", "BabyAI-PickupLoc-v0", True, 0.8, 9),
        Episode("pick up the red box", "BabyAI-PickupLoc-v0", True, 0.7, 12),
    ]
    traits = summarize(episodes, multi_level=False).per_description
    assert traits is not None
    assert traits["location"] == {"success_rate": 0.0, "episodes": 1}
    assert traits["no location"] == {"success_rate": 1.0, "episodes": 2}
    assert traits["the ..."]["success_rate"] == 0.5 and traits["a ..."]["success_rate"] == 1.0
    assert traits["colour"]["episodes"] == 2 and traits["no colour"]["episodes"] == 1
    assert traits["ball"]["success_rate"] == 0.0 and traits["key"]["success_rate"] == traits["box"]["success_rate"] == 1
    assert "red" not in traits  # the one colour named: nothing to compare it with
    assert list(traits) == ["location", "no location", "colour", "no colour", "a ...", "the ...", "ball", "box", "key"]
    same_words = [Episode("go to the red ball", "L", True, 0.9, 5), Episode("go to the red ball", "L", False, 0.0, 64)]
    assert summarize(same_words, multi_level=False).per_description is None
    # GoToLocal's missions all name a colour: which colour and which object are what vary
    gotolocal = [Episode("go to the red ball", "L", True, 0.9, 5), Episode("go to a grey key", "L", False, 0.0, 64)]
    assert list(summarize(gotolocal, multi_level=False).per_description or {}) == [
        "a ...",
        "the ...",
        "ball",
        "key",
        "grey",
        "red",
    ]


def test_the_env_names_what_the_agent_picks_up():
    """minigrid's BabyAI bot carries out pick-up missions; the step it picks the object up, and
    only that step, names the object, the very one the mission's description matches."""
    vocab = Vocabulary.babyai()
    for levels in (["BabyAI-PickupLoc-v0"], ["BabyAI-GoToLocal-v0", "BabyAI-PutNextLocal-v0"]):
        env = task_for(ExperimentConfig(env=BabyAIEnvConfig(levels=levels)), vocab).evaluation_env()
        named = 0
        for seed in range(6):
            _, info = env.reset(seed=seed)
            level = env.unwrapped
            current = level.envs[level.levels.index(level.current_level)].unwrapped if len(levels) > 1 else level
            bot = BabyAIBot(current)
            picked: list[str] = []
            while True:
                before = current.carrying
                _, _, terminated, truncated, info = env.step(bot.replan())
                if "picked_up" in info:
                    held = current.carrying
                    assert before is None and held is not None
                    assert info["picked_up"] == f"{held.color} {held.type}"
                    picked.append(info["picked_up"])
                else:
                    assert current.carrying is before or current.carrying is None  # nothing new held
                if terminated or truncated:
                    break
            assert info["is_success"]
            instr = current.instrs
            if instruction_kind(info.get("mission", current.mission)) in ("pick up", "put next"):
                desc = instr.desc if hasattr(instr, "desc") else instr.desc_move
                assert picked, current.mission
                colour, kind = picked[0].split(" ")
                assert any(o.color == colour and o.type == kind for o in desc.obj_set), current.mission
                named += 1
            else:
                assert not picked  # the bot goes to its object without picking anything up
        assert named > 0
        env.close()


def test_the_env_says_whether_a_location_decides_the_object():
    """At each reset of a mission naming a location, the evaluation env says whether some object
    fits the rest of the description but lies elsewhere: worked out here from the agent's starting
    pose, as minigrid's verifier words a location (left / right / in front / behind)."""
    vocab = Vocabulary.babyai()
    env = task_for(ExperimentConfig(env=BabyAIEnvConfig(levels=["BabyAI-PickupLoc-v0"])), vocab).evaluation_env()
    seen: list[bool] = []
    for seed in range(60):
        _, info = env.reset(seed=seed)
        level = env.unwrapped
        if description_traits(level.mission)["location"] == "no location":
            assert "location_decides" not in info
            continue
        desc = level.instrs.desc
        (x, y), (fx, fy) = level.agent_pos, DIR_TO_VEC[level.agent_dir]
        sides = {"front": (fx, fy), "behind": (-fx, -fy), "right": (-fy, fx), "left": (fy, -fx)}
        sx, sy = sides[desc.loc]
        fits = [
            (i, j)
            for i in range(level.width)
            for j in range(level.height)
            if (cell := level.grid.get(i, j)) is not None
            and desc.type in (None, cell.type)
            and desc.color in (None, cell.color)
        ]
        elsewhere = [(i, j) for i, j in fits if (i - x) * sx + (j - y) * sy <= 0]
        assert info["location_decides"] == bool(elsewhere), (seed, level.mission)
        # the chance of the object meant for a policy that picks any object fitting type and colour
        assert info.get("location_odds") == ((len(fits) - len(elsewhere)) / len(fits) if elsewhere else None)
        seen.append(info["location_decides"])
    assert True in seen and False in seen
    env.close()


def test_the_env_says_where_the_object_meant_starts():
    """At each reset the evaluation env says where the object meant lies: in view exactly when the
    agent's first observation shows an object of the type and colour named, else in the agent's
    room or in another, judged here from the room grid's coordinates (rooms of 7 cells and a
    shared wall). GoTo's missions have all three; GoToLocal's one room never another; a
    sequence's two objects, neither."""
    vocab = Vocabulary.babyai()

    def evaluation_env(level: str):
        return task_for(ExperimentConfig(env=BabyAIEnvConfig(levels=[level])), vocab).evaluation_env()

    env = evaluation_env("BabyAI-GoTo-v0")
    seen: list[str] = []
    for seed in range(60):
        _, info = env.reset(seed=seed)
        level = env.unwrapped
        desc = level.instrs.desc
        image = level.gen_obs()["image"]
        shown = (image[..., 0] == OBJECT_TO_IDX[desc.type]) & (
            True if desc.color is None else image[..., 1] == COLOR_TO_IDX[desc.color]
        )
        where = info["object_meant_starts"]
        assert (where == "in view") == bool(shown.any()), (seed, level.mission)
        ax, ay = (int(v) // 7 * 7 for v in level.agent_pos)  # the agent's room's top-left corner
        in_room = [ax <= x <= ax + 7 and ay <= y <= ay + 7 for x, y in desc.obj_poss]
        if where != "in view":
            assert (where == "in the agent's room") == any(in_room), (seed, level.mission)
        seen.append(where)
    assert set(seen) == {"in view", "in the agent's room", "in another room"}
    env.close()
    env = evaluation_env("BabyAI-GoToLocal-v0")
    local = {env.reset(seed=seed)[1]["object_meant_starts"] for seed in range(30)}
    assert local == {"in view", "in the agent's room"}
    env.close()
    env = evaluation_env("BabyAI-GoToSeq-v0")  # "go to the red ball, then go to a key": two objects
    for seed in range(10):
        _, info = env.reset(seed=seed)
        assert ("object_meant_starts" in info) == (instruction_kind(env.unwrapped.mission) != "sequence")
    env.close()


def test_an_evaluation_splits_success_by_where_the_object_meant_starts():
    """Nearest first, beside the description's traits: judged on made-up episodes, then played for
    real (GoToLocal's one room: in view or not)."""

    def ep(success: bool, where: str | None) -> Episode:
        return Episode("go to the red ball", "L", success, 0.0, 64, object_meant_starts=where)

    episodes = [ep(True, "in view"), ep(True, "in another room"), ep(False, "in another room")]
    episodes += [ep(True, "in the agent's room"), ep(False, None)]  # a sequence: left out of the split
    traits = summarize(episodes, multi_level=False).per_description
    assert traits == {
        "object meant in view": {"success_rate": 1.0, "episodes": 1},
        "object meant in the agent's room": {"success_rate": 1.0, "episodes": 1},
        "object meant in another room": {"success_rate": 0.5, "episodes": 2},
    }
    assert summarize([ep(True, "in view"), ep(False, "in view")], multi_level=False).per_description is None
    with untrained_policy(["BabyAI-GoToLocal-v0"]) as (model, task):
        played = task.play(model, 16, seed=5, deterministic=False)
    result = task.summarize(played)
    assert all(e.object_meant_starts is not None for e in played)
    split = {t: v for t, v in (result.per_description or {}).items() if t.startswith("object meant")}
    assert sum(v["episodes"] for v in split.values()) == 16 and len(split) == 2
    for trait, figures in split.items():
        assert figures["success_rate"] == np.mean([e.success for e in played if trait.endswith(e.object_meant_starts)])


def test_the_parts_of_a_put_next_mission_make_minigrids_success():
    """On PutNextLocal the evaluation env flags holding the object to move and dropping anything
    beside the target; minigrid's verifier calls a step a success exactly when it drops, beside the
    target, what the step before held as the object to move. Played by the bot (every episode a
    success) and by a random policy leaning on pick-up and drop (each part alone, now and then)."""
    vocab = Vocabulary.babyai()
    env = task_for(ExperimentConfig(env=BabyAIEnvConfig(levels=["BabyAI-PutNextLocal-v0"])), vocab).evaluation_env()
    rng = np.random.default_rng(0)
    actions = env.unwrapped.actions
    random_actions = [actions.left, actions.right, actions.forward, actions.forward, actions.pickup, actions.drop]
    seen = {"held only": 0, "dropped beside the target only": 0, "success": 0}
    for seed in range(40):
        env.reset(seed=seed)
        bot = BabyAIBot(env.unwrapped) if seed < 4 else None
        held_before, held_ever, dropped_ever = False, False, False
        while True:
            action = bot.replan() if bot is not None else rng.choice(random_actions)
            _, reward, terminated, truncated, info = env.step(action)
            held = info.get("carrying_object_to_move", False)
            dropped = info.get("dropped_next_to_target", False)
            success = terminated and float(reward) > 0
            assert success == (dropped and held_before), (seed, env.unwrapped.mission)
            held_before, held_ever, dropped_ever = held, held_ever or held, dropped_ever or dropped
            if terminated or truncated:
                break
        if success:
            assert held_ever and dropped_ever
            seen["success"] += 1
        else:
            seen["held only"] += held_ever
            seen["dropped beside the target only"] += dropped_ever
    assert all(count > 0 for count in seen.values()), seen
    env.close()


def test_put_next_parts_count_each_part_over_the_put_next_episodes():
    def ep(mission: str, held: bool, dropped: bool, success: bool = False) -> Episode:
        return Episode(mission, "L", success, 0.0, 64, carried_object_to_move=held, dropped_next_to_target=dropped)

    episodes = [
        ep("put the red ball next to the blue key", True, True, success=True),
        ep("put the red ball next to the blue key", True, False),
        ep("put a box next to the grey ball", False, True),  # something else dropped beside the ball
        ep("put the green key next to a ball", False, False),
        ep("pick up the red ball", True, False),  # not a put-next mission: left out
    ]
    figures = put_next_parts(episodes)
    assert figures == {
        "held the object to move": {"rate": 2 / 4, "episodes": 4},
        "dropped beside the target": {"rate": 2 / 4, "episodes": 4},
    }
    result = summarize(episodes, multi_level=False)
    assert result.put_next == figures
    assert result.scalars()["put_next/dropped beside the target"] == 0.5
    assert put_next_parts([ep("pick up the red ball", True, False)]) is None


def test_a_pick_up_of_the_object_meant_is_minigrids_success():
    """On PickupLoc a wrong pick-up is not a failure: the verifier calls a step a success exactly
    when it picks up an object the mission means, location included, which is when the evaluation
    env says ``picked_up_meant``. A random policy leaning on pick-up and drop tries several."""
    vocab = Vocabulary.babyai()
    env = task_for(ExperimentConfig(env=BabyAIEnvConfig(levels=["BabyAI-PickupLoc-v0"])), vocab).evaluation_env()
    rng = np.random.default_rng(1)
    actions = env.unwrapped.actions
    random_actions = [actions.left, actions.right, actions.forward, actions.forward, actions.pickup, actions.drop]
    meant = {True: 0, False: 0}
    for seed in range(40):
        env.reset(seed=seed)
        while True:
            _, reward, terminated, truncated, info = env.step(rng.choice(random_actions))
            assert ("picked_up_meant" in info) == ("picked_up" in info)
            assert (terminated and float(reward) > 0) == info.get("picked_up_meant", False)
            if "picked_up_meant" in info:
                meant[info["picked_up_meant"]] += 1
            if terminated or truncated:
                break
    assert meant[True] > 0 and meant[False] > 0, meant
    env.close()


def test_first_pickup_counts_the_named_type_and_colour():
    def ep(mission: str, first: str | None) -> Episode:
        return Episode(mission, "L", False, 0.0, 64, first_pickup=first)

    episodes = [
        ep("pick up the red ball", "red ball"),  # type and colour
        ep("pick up the red ball", "blue ball"),  # type only
        ep("pick up a key on your left", "green box"),  # no colour named: counts for the type only
        ep("pick up the green object", "green key"),  # PickupDist: no type named, the colour counts
        ep("put the purple box next to a ball", "purple box"),  # the object to move is the first
        ep("pick up a ball", None),  # picked nothing up
        ep("go to the red ball", "red ball"),  # not a pick-up mission: left out
    ]
    for meant, episode in zip((True, False, False, True), episodes, strict=False):
        episode.first_pickup_meant = meant
    episodes[2].location_decides, episodes[2].location_odds = True, 0.5
    episodes.append(ep("pick up the ball on your left", "blue ball"))
    episodes[-1].first_pickup_meant, episodes[-1].location_decides, episodes[-1].location_odds = True, True, 0.25
    figures = first_pickups(episodes)
    assert figures == {
        "picked up anything": {"rate": 6 / 7, "episodes": 7},
        "named type": {"rate": 4 / 5, "episodes": 5},
        "named colour": {"rate": 3 / 4, "episodes": 4},
        "named type and colour": {"rate": 2 / 3, "episodes": 3},
        "the object meant": {"rate": 3 / 5, "episodes": 5},
        "the object meant where the location decides": {"rate": 1 / 2, "episodes": 2, "chance": 0.375},
    }
    result = summarize(episodes, multi_level=False)
    assert result.first_pickup == figures
    # every figure reaches the progress CSV, whose header SB3 writes unquoted
    assert not [key for key in result.scalars() if set(key) & set(',"\n')]
    assert first_pickups([ep("go to the red ball", None)]) is None  # GoToLocal: nothing to pick up


def test_an_evaluation_reports_what_the_policy_picked_up_first():
    with untrained_policy(["BabyAI-PickupLoc-v0"]) as (model, task):
        played = task.play(model, 20, seed=3, deterministic=False)
    firsts = [e.first_pickup for e in played if e.first_pickup is not None]
    assert firsts  # an untrained policy picks something up within 64 steps now and then
    for first in firsts:
        colour, kind = first.split(" ")
        assert colour in COLOR_NAMES and kind in ("ball", "box", "key")
    result = task.summarize(played)
    assert result.first_pickup is not None
    assert result.first_pickup["picked up anything"] == {"rate": len(firsts) / 20, "episodes": 20}
    assert result.scalars()["first_pickup/picked up anything"] == len(firsts) / 20
    assert result.first_pickup["the object meant"]["episodes"] == len(firsts)  # every PickupLoc mission names one
    assert all(e.first_pickup_meant is not None for e in played if e.first_pickup is not None)
    # the missions naming a location, split by whether it decides the object
    assert result.per_description is not None
    traits = list(result.per_description)
    assert traits[traits.index("no location") + 1 : traits.index("no location") + 3] == [
        "location decides",
        "location redundant",
    ]
    located = [e for e in played if e.location_decides is not None]
    assert (
        result.per_description["location decides"]["episodes"]
        + result.per_description["location redundant"]["episodes"]
        == len(located)
        == result.per_description["location"]["episodes"]
    )


def test_an_evaluation_of_a_suite_reports_the_put_next_parts_of_its_put_next_episodes():
    with untrained_policy(["BabyAI-GoToLocal-v0", "BabyAI-PutNextLocal-v0"]) as (model, task):
        played = task.play(model, 16, seed=3, deterministic=False)
    put_next = [e for e in played if e.level == "BabyAI-PutNextLocal-v0"]
    assert put_next and len(put_next) < len(played)
    # the object picked up first is judged against the level being played
    assert all(e.first_pickup_meant is not None for e in put_next if e.first_pickup is not None)
    others = [e for e in played if e.level != "BabyAI-PutNextLocal-v0"]
    assert not any(e.carried_object_to_move or e.dropped_next_to_target for e in others)
    result = task.summarize(played)
    assert result.put_next is not None
    held = result.put_next["held the object to move"]
    assert held == {"rate": float(np.mean([e.carried_object_to_move for e in put_next])), "episodes": len(put_next)}


def test_multi_level_summary_reports_every_level_and_kind():
    episodes = [
        Episode("go to the red ball", "BabyAI-GoToLocal-v0", True, 0.9, 5),
        Episode("go to a key", "BabyAI-GoToLocal-v0", False, 0.0, 64),
        Episode("pick up the blue box", "BabyAI-PickupLoc-v0", True, 0.5, 11),
    ]
    result = summarize(episodes, multi_level=True)
    assert result.episodes == 3 and abs(result.success_rate - 2 / 3) < 1e-9
    assert result.per_kind == {
        "BabyAI-GoToLocal-v0": 0.5,
        "BabyAI-PickupLoc-v0": 1.0,
        "go to": 0.5,
        "pick up": 1.0,
    }
    assert abs(result.mean_episode_length - 80 / 3) < 1e-9


def test_evaluation_is_reproducible_for_a_seed_and_covers_each_level():
    levels = ["BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0"]
    with untrained_policy(levels) as (model, task):
        a = evaluate(model, task, episodes=12, seed=5, deterministic=False)
        b = evaluate(model, task, episodes=12, seed=5, deterministic=False)
    assert a == b
    assert set(levels) <= set(a.per_kind) and a.episodes == 12


@pytest.mark.parametrize("memory", ["stack", "residual"])
def test_forget_resets_an_lstm_policys_memory_at_every_step(memory):
    """``evaluate(forget=True)`` (``film-rl evaluate --forget``): sb3-contrib hears an episode
    start at every step, so the LSTM's state never carries over. A drawn LSTM whose state reaches
    its actions then plays other episodes from the same seed; a residual one whose memory still
    adds zero plays the very same ones."""
    levels = ["BabyAI-GoToLocal-v0"]
    vocab = Vocabulary.babyai()
    venv = make_vec_env(levels, vocab, 1, seed=0)
    kwargs = {"lstm_hidden_size": 16, "memory": memory}
    model = RecurrentPPO(FilmLstmPolicy, venv, n_steps=16, batch_size=16, seed=0, device="cpu", policy_kwargs=kwargs)
    torch.nn.init.normal_(model.policy.action_net.weight)  # SB3 draws it near zero: actions near uniform
    task = task_for(ExperimentConfig(env=BabyAIEnvConfig(levels=levels)), vocab)
    heard: list[np.ndarray] = []  # the episode starts sb3-contrib is told of, step by step
    predict = model.predict

    def listening(obs: dict[str, np.ndarray], **kwargs: object) -> object:
        heard.append(np.array(kwargs["episode_start"]))
        return predict(obs, **kwargs)  # type: ignore[arg-type]

    model.predict = listening  # type: ignore[method-assign,assignment]
    kept = task.play(model, 8, seed=3, deterministic=False)
    assert not all(bool(starts.all()) for starts in heard)  # the memory carries over between steps
    heard.clear()
    forgot = task.play(model, 8, seed=3, deterministic=False, forget=True)
    assert heard and all(bool(starts.all()) for starts in heard)
    lengths = [[e.length for e in played] for played in (kept, forgot)]
    if memory == "stack":
        assert lengths[0] != lengths[1]
    else:
        assert lengths[0] == lengths[1] and [e.success for e in kept] == [e.success for e in forgot]
    venv.close()


def _lstm_policy(**kwargs: object) -> tuple[RecurrentPPO, Task]:
    levels = ["BabyAI-GoToLocal-v0"]
    vocab = Vocabulary.babyai()
    venv = make_vec_env(levels, vocab, 1, seed=0)
    policy_kwargs = {"lstm_hidden_size": 16, **kwargs}
    model = RecurrentPPO(
        FilmLstmPolicy, venv, n_steps=16, batch_size=16, seed=0, device="cpu", policy_kwargs=policy_kwargs
    )
    return model, task_for(ExperimentConfig(env=BabyAIEnvConfig(levels=levels)), vocab)


@pytest.mark.parametrize("memory_norm", [False, True])
def test_evaluation_says_how_saturated_the_memorys_gates_are(memory_norm):
    """A FiLM network's features grow as it trains. Features 1,000 times larger saturate nearly
    every gate of an LSTM that reads them raw, and the evaluation says so; through the LayerNorm
    the memory reads them as before: the same episodes, the same figure."""
    model, task = _lstm_policy(memory_norm=memory_norm)
    drawn = evaluate(model, task, episodes=3, seed=3, deterministic=False)
    with torch.no_grad():  # ReLU(1000 (Wx + b)) = 1000 ReLU(Wx + b): the features, 1,000 times larger
        for parameter in model.policy.features_extractor.linear.parameters():
            parameter.mul_(1000)
    grown = evaluate(model, task, episodes=3, seed=3, deterministic=False)
    assert drawn.memory is not None and grown.memory is not None
    assert drawn.memory["steps"] == sum(drawn.mean_episode_length for _ in range(3))
    assert "adds" not in drawn.memory  # a stacked memory replaces the features: nothing added to them
    assert drawn.memory["saturated"] < 0.05
    if memory_norm:
        assert grown.memory == pytest.approx(drawn.memory, abs=1e-3)
    else:
        assert grown.memory["saturated"] > 0.9
    model.env.close()


@pytest.mark.parametrize("memory_scale", [False, True])
def test_evaluation_says_what_a_residual_memory_adds_to_the_features(memory_scale):
    """At its zero start a residual memory adds nothing; once its projection moves it does. With
    features 1,000 times larger, what an unscaled memory adds weighs 1,000 times less beside them,
    and what a scaled one (``memory_scale``) adds weighs the same."""
    model, task = _lstm_policy(memory="residual", memory_norm=True, memory_scale=memory_scale)
    result = evaluate(model, task, episodes=2, seed=3, deterministic=False)
    assert result.memory is not None and result.memory["adds"] == 0.0
    torch.manual_seed(0)
    torch.nn.init.normal_(model.policy.lstm_actor.out.weight, std=0.1)
    evaluated = evaluate(model, task, episodes=2, seed=3, deterministic=False)
    moved = evaluated.memory
    assert moved is not None and moved["adds"] > 0.01
    scalars = evaluated.scalars()  # to the logger and wandb: memory/adds and memory/saturated
    assert scalars["memory/adds"] == moved["adds"] and scalars["memory/saturated"] == moved["saturated"]
    with torch.no_grad():
        for parameter in model.policy.features_extractor.linear.parameters():
            parameter.mul_(1000)
    grown = evaluate(model, task, episodes=2, seed=3, deterministic=False).memory
    assert grown is not None
    expected = moved["adds"] if memory_scale else moved["adds"] / 1000
    assert grown["adds"] == pytest.approx(expected, rel=0.01)
    model.env.close()
