"""Composing recipes and overrides into a typed config; every mistake named precisely."""

from pathlib import Path

import pytest

from film_rl.config import ExperimentConfig, compose, load_experiment, parse_override, save_config
from film_rl.errors import UserError

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


def test_every_shipped_experiment_composes():
    experiments = sorted((ROOT / "experiments").glob("*.yaml"))
    assert len(experiments) >= 3
    for path in experiments:
        config = load_experiment(path)
        assert config.env.levels and config.agent_recipe and config.env_recipe, path
