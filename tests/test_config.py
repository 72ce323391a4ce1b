"""Composing recipes and overrides into a typed config; every mistake named precisely."""

import re
from pathlib import Path

import pytest

from film_rl.config import (
    INIT_REQUIRED,
    AtariAgentConfig,
    ExperimentConfig,
    GridAgentConfig,
    compose,
    load_experiment,
    parse_override,
    save_config,
)
from film_rl.errors import UserError
from film_rl.sweep.runner import make_spec

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"


def test_quickstart_composes_its_recipes():
    config = load_experiment(QUICKSTART)
    assert config.name == "quickstart"
    assert config.env.levels == ["BabyAI-GoToRedBallGrey-v0"]
    assert config.agent.policy == "cnn" and config.agent.conditioning == "film"
    assert config.env_recipe == "babyai-gotoredballgrey" and config.agent_recipe == "film-cnn"


def test_dotted_overrides_reach_nested_keys_with_their_types():
    config = load_experiment(
        QUICKSTART,
        ["agent.conditioning=concat", "seed=3", "budget.timesteps=2e5", "agent.algorithm.learning_rate=1e-4"],
    )
    assert config.agent.conditioning == "concat"
    assert config.seed == 3
    assert config.budget.timesteps == 200_000 and isinstance(config.budget.timesteps, int)
    assert config.agent.algorithm.learning_rate == pytest.approx(1e-4)


def test_a_recipe_can_be_swapped_from_the_command_line():
    config = load_experiment(QUICKSTART, ["agent=film-lstm", "env=babyai-local-suite"])
    assert config.agent.policy == "lstm" and len(config.env.levels) == 3


@pytest.mark.parametrize(
    "override,message",
    [
        ("agent.condtioning=film", "unknown config key 'agent.condtioning' (did you mean: conditioning?)"),
        ("agent.conditioning=films", "agent.conditioning: 'films' is not one of"),
        ("budget.timesteps=lots", "budget.timesteps: expected an integer, got 'lots'"),
        ("budget.timesteps=1.5", "expected an integer"),
        ("logging.tensorboard=maybe", "expected true or false"),
        ("agent=film-cnnn", "unknown agent recipe 'film-cnnn' (did you mean: film-cnn"),
        ("seed", "is not of the form key=value"),
    ],
)
def test_mistakes_are_named(override, message):
    with pytest.raises(UserError) as err:
        load_experiment(QUICKSTART, [override])
    assert message in str(err.value)


def test_unreadable_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such experiment file"):
        load_experiment(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_experiment(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match="mapping"):
        load_experiment(tmp_path / "list.yaml")


def test_resolved_config_round_trips_without_recipes(tmp_path):
    config = load_experiment(QUICKSTART, ["agent.channels=[8, 16]"])
    save_config(config, tmp_path / "config.yaml")
    assert load_experiment(tmp_path / "config.yaml") == config


def test_defaults_alone_make_a_valid_config():
    assert compose({}, []) == ExperimentConfig()


def test_override_values_are_yaml():
    assert parse_override("agent.channels=[8,16]") == ("agent.channels", [8, 16])
    assert parse_override("logging.entity=null") == ("logging.entity", None)
    assert parse_override("name=my run") == ("name", "my run")


def test_every_shipped_experiment_composes_and_every_trial_of_its_sweep_is_valid():
    """Each recipe, and each setting of a lever screen's sweep, passes the checks a run makes
    before it writes anything; a curriculum's later leg is refused without the run it starts from."""
    experiments = sorted((ROOT / "experiments").glob("*.yaml"))
    assert len(experiments) >= 3
    later_legs = []
    for path in experiments:
        config = load_experiment(path)
        assert config.env.levels and config.agent_recipe and config.env_recipe, path
        if config.init_from == INIT_REQUIRED:
            later_legs.append(path.stem)
            refused = r"^trial \S+: init_from: required: this recipe starts from another run's policy; pass init_from="
            with pytest.raises(UserError, match=refused):
                make_spec(str(path), [])
        spec = make_spec(str(path), ["init_from=runs/first-leg"] if config.init_from == INIT_REQUIRED else [])
        assert len(spec.trials()) >= 1, path
    assert {"putnextlocal-after-pickuploc", "putnextlocal-levers", "goto-lstm-from-cnn"} <= set(later_legs)


def _project(tmp_path: Path) -> Path:
    """A project folder of its own: experiments/, agents/ and envs/ beside each other."""
    for folder in ("experiments", "agents", "envs"):
        (tmp_path / folder).mkdir()
    (tmp_path / "envs" / "room.yaml").write_text("levels: [BabyAI-GoToLocal-v0]\nn_envs: 4\n")
    (tmp_path / "agents" / "plain.yaml").write_text("channels: [8, 8]\nalgorithm:\n  n_steps: 64\n  gamma: 0.9\n")
    return tmp_path


def test_a_recipe_states_only_what_differs_from_its_base(tmp_path):
    root = _project(tmp_path)
    (root / "agents" / "memory.yaml").write_text("base: plain\npolicy: lstm\nalgorithm:\n  n_steps: 32\n")
    (root / "experiments" / "e.yaml").write_text("env: room\nagent: memory\n")
    agent = load_experiment(root / "experiments" / "e.yaml").agent
    assert agent.policy == "lstm" and agent.channels == [8, 8]  # the base's, where the recipe is silent
    assert agent.algorithm.n_steps == 32 and agent.algorithm.gamma == 0.9  # sections merge key by key


def test_shipped_recipes_inherit_what_they_say(tmp_path):
    film, lstm = (load_experiment(QUICKSTART, [f"agent={a}"]).agent for a in ("film-cnn", "agile-film-lstm"))
    assert lstm.policy == "lstm" and lstm.reward_model.enabled and not lstm.algorithm.normalize_advantage
    assert (lstm.channels, lstm.encoder, lstm.algorithm.learning_rate) == (
        film.channels,
        film.encoder,
        film.algorithm.learning_rate,
    )


def test_an_experiment_inherits_from_another_but_not_its_name_or_sweep(tmp_path):
    root = _project(tmp_path)
    (root / "experiments" / "parent.yaml").write_text(
        "env: room\nagent: plain\nseed: 7\nbudget:\n  timesteps: 5000\nsweep:\n  seeds: 3\n"
    )
    (root / "experiments" / "child.yaml").write_text("base: parent\nbudget:\n  timesteps: 900\n")
    config = load_experiment(root / "experiments" / "child.yaml")
    assert config.name == "child" and config.seed == 7 and config.budget.timesteps == 900
    from film_rl.sweep.runner import declared_sweep

    assert declared_sweep(root / "experiments" / "child.yaml") == {}


def test_an_experiment_changes_keys_of_its_bases_recipes_without_losing_them(tmp_path):
    root = _project(tmp_path)
    (root / "experiments" / "parent.yaml").write_text("env: room\nagent: plain\n")
    (root / "experiments" / "child.yaml").write_text(
        "base: parent\nenv:\n  n_envs: 2\nagent:\n  algorithm:\n    gamma: 0.5\n"
    )
    config = load_experiment(root / "experiments" / "child.yaml")
    assert (config.env_recipe, config.agent_recipe) == ("room", "plain")
    assert config.env.levels == ["BabyAI-GoToLocal-v0"] and config.env.n_envs == 2
    assert config.agent.channels == [8, 8] and config.agent.algorithm.n_steps == 64
    assert config.agent.algorithm.gamma == 0.5
    # a mapping may name its recipe itself
    (root / "experiments" / "own.yaml").write_text("env: room\nagent:\n  base: plain\n  policy: lstm\n")
    config = load_experiment(root / "experiments" / "own.yaml")
    assert config.agent_recipe == "plain" and config.agent.policy == "lstm" and config.agent.channels == [8, 8]


def test_swapping_the_recipe_on_the_command_line_keeps_the_experiments_changes_to_it(tmp_path):
    root = _project(tmp_path)
    (root / "agents" / "memory.yaml").write_text("base: plain\npolicy: lstm\nalgorithm:\n  n_steps: 32\n")
    (root / "experiments" / "e.yaml").write_text("env: room\nagent:\n  base: plain\n  algorithm:\n    gamma: 0.5\n")
    config = load_experiment(root / "experiments" / "e.yaml", ["agent=memory"])
    assert config.agent_recipe == "memory" and config.agent.policy == "lstm"
    assert config.agent.algorithm.gamma == 0.5 and config.agent.algorithm.n_steps == 32
    # the same through a base experiment, as the shipped PickupLoc recipe has it
    shipped = load_experiment(ROOT / "experiments" / "pickuploc.yaml", ["agent=film-lstm"])
    assert shipped.agent.policy == "lstm" and shipped.agent.algorithm.ent_coef == 0.1
    assert shipped.agent.algorithm.schedule_timesteps == 4_000_000
    # an env recipe is replaced whole: the experiment's own env keys (its levels) do not stay
    (root / "envs" / "other.yaml").write_text("levels: [BabyAI-GoToRedBallGrey-v0]\nn_envs: 3\n")
    (root / "experiments" / "levels.yaml").write_text(
        "env:\n  base: room\n  levels: [BabyAI-PickupLoc-v0]\nagent: plain\n"
    )
    swapped = load_experiment(root / "experiments" / "levels.yaml", ["env=other"])
    assert swapped.env_recipe == "other" and swapped.env.levels == ["BabyAI-GoToRedBallGrey-v0"]
    assert swapped.env.n_envs == 3
    # a recipe named outright still replaces a plain one
    (root / "experiments" / "plain.yaml").write_text("env: room\nagent: plain\n")
    assert load_experiment(root / "experiments" / "plain.yaml", ["agent=memory"]).agent.algorithm.gamma == 0.9


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"agents/a.yaml": "base: b\n", "agents/b.yaml": "base: a\n"}, "inherits from itself: a -> b -> a"),
        ({"agents/a.yaml": "base: nothing\n"}, "unknown agent recipe 'nothing'"),
        ({"agents/a.yaml": "base: [plain]\n"}, "base must be a recipe name"),
    ],
)
def test_a_broken_base_is_named(tmp_path, files, message):
    root = _project(tmp_path)
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "experiments" / "e.yaml").write_text("env: room\nagent: a\n")
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        load_experiment(root / "experiments" / "e.yaml")


@pytest.mark.parametrize(
    ("experiment", "override", "message"),
    [
        ("atari-4game", "agent.encoder=bow", "unknown config key 'agent.encoder'"),
        ("atari-4game", "env.reward_scale=20", "unknown config key 'env.reward_scale'"),
        ("atari-4game", "agent.reward_model.enabled=true", "unknown config key 'agent.reward_model'"),
        ("quickstart", "env.atari.frame_skip=2", "unknown config key 'env.atari'"),
        ("quickstart", "env.kind=minigrd", "env.kind: 'minigrd' is not one of babyai, atari"),
    ],
)
def test_a_setting_of_another_family_is_an_unknown_key(experiment, override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_experiment(ROOT / "experiments" / f"{experiment}.yaml", [override])


def test_each_family_has_its_own_sections_and_defaults():
    babyai = load_experiment(QUICKSTART).agent
    atari = load_experiment(ROOT / "experiments" / "atari-4game.yaml").agent
    assert isinstance(babyai, GridAgentConfig) and babyai.channels == [16, 32]
    assert isinstance(atari, AtariAgentConfig) and atari.channels == [32, 64, 64]
    assert not hasattr(atari, "encoder") and not hasattr(atari, "reward_model")


def test_the_config_reference_is_generated_from_the_dataclasses_and_in_sync():
    from film_rl.config.reference import reference_markdown

    text = reference_markdown()
    assert (ROOT / "docs" / "config.md").read_text() == text, "regenerate: film-rl config --write docs/config.md"
    for key in ("`threads`", "`env.max_instruction_length`", "`env.atari.frame_skip`", "`agent.encoder`"):
        assert key in text
    undocumented = [line for line in text.splitlines() if line.startswith("| `") and line.endswith("|  |")]
    assert not undocumented, undocumented  # every key says what it means
