"""Starting a run from another run's policy (``init_from``): a curriculum's next leg."""

import json
import re

import pytest
import torch
import yaml
from conftest import TINY, only_run_dir, run_cli
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3 import PPO
from test_cli import _error

from film_rl.config import load_experiment
from film_rl.model.policies import ResidualLSTM
from film_rl.run.train import FEATURES_PREFIXES, build_env, build_model, saved_policy, start_from
from film_rl.tasks.registry import task_for


def test_a_new_run_begins_with_the_saved_policy_and_a_fresh_optimizer(tiny_run):
    config = load_experiment("experiments/quickstart.yaml", [*TINY, f"init_from={tiny_run}"])
    task = task_for(config)
    env = build_env(config, task, config.seed, None)
    model = build_model(config, task, env, "cpu")
    initial = saved_policy(str(config.init_from), "cpu")
    assert initial.path == (tiny_run / "model.zip").resolve()  # a run directory means its model
    source = PPO.load(initial.path, device="cpu")
    assert initial.timesteps == source.num_timesteps > 0
    saved = source.policy.state_dict()
    assert any(not torch.equal(v, saved[k]) for k, v in model.policy.state_dict().items())  # a fresh draw
    start_from(model, initial)
    assert all(torch.equal(v, saved[k]) for k, v in model.policy.state_dict().items())
    assert model.num_timesteps == 0
    env.close()


def test_a_critic_of_its_own_starts_from_the_shared_network_of_the_saved_policy(tiny_run):
    """``agent.critic_features=own`` from a policy whose actor and critic shared one FiLM network:
    both networks begin with its weights (SB3 saves the shared one under all three names)."""
    overrides = [*TINY, f"init_from={tiny_run}", "agent.critic_features=own"]
    config = load_experiment("experiments/quickstart.yaml", overrides)
    task = task_for(config)
    env = build_env(config, task, config.seed, None)
    model = build_model(config, task, env, "cpu")
    start_from(model, saved_policy(str(config.init_from), "cpu"))
    policy = model.policy
    assert policy.vf_features_extractor is not policy.pi_features_extractor
    shared = PPO.load(tiny_run / "model.zip", device="cpu").policy.features_extractor.state_dict()
    for extractor in (policy.pi_features_extractor, policy.vf_features_extractor):
        assert all(torch.equal(v, shared[k]) for k, v in extractor.state_dict().items())
    env.close()


def test_features_alone_start_an_lstm_from_a_cnns_film_network(tiny_run):
    """``init_parts=features``: the LSTM policy takes the CNN policy's FiLM network (grid CNN,
    instruction encoder, FiLM generator) under every name SB3 gives it; its memory and heads keep
    their fresh draw."""
    overrides = [*TINY, "agent=film-lstm", f"init_from={tiny_run}", "init_parts=features"]
    config = load_experiment("experiments/quickstart.yaml", overrides)
    task = task_for(config)
    env = build_env(config, task, config.seed, None)
    model = build_model(config, task, env, "cpu")
    drawn = {k: v.clone() for k, v in model.policy.state_dict().items()}
    start_from(model, saved_policy(str(config.init_from), "cpu"), config.init_parts)
    saved = PPO.load(tiny_run / "model.zip", device="cpu").policy.state_dict()
    now = model.policy.state_dict()
    features = [k for k in now if k.startswith(FEATURES_PREFIXES)]
    assert {k.split(".")[0] for k in features} == {
        "features_extractor",
        "pi_features_extractor",
        "vf_features_extractor",
    }
    assert all(torch.equal(now[k], saved[k]) and not torch.equal(drawn[k], saved[k]) for k in features)
    rest = [k for k in now if k not in features]
    assert any(k.startswith("lstm_actor.") for k in rest) and "action_net.weight" in rest
    assert all(torch.equal(now[k], drawn[k]) for k in rest)
    env.close()


def test_an_lstm_started_from_a_cnns_film_network_trains(tiny_run, tmp_path):
    done = run_cli(
        "train",
        "experiments/quickstart.yaml",
        f"runs_dir={tmp_path / 'runs'}",
        *TINY,
        "agent=film-lstm",
        f"init_from={tiny_run}",
        "init_parts=features",
    )
    assert done.returncode == 0, done.stderr
    assert f"FiLM network started from {(tiny_run / 'model.zip').resolve()}" in done.stdout
    config = yaml.safe_load((only_run_dir(tmp_path / "runs") / "config.yaml").read_text())
    assert config["init_parts"] == "features" and config["agent"]["policy"] == "lstm"


def test_a_run_started_from_another_level_trains_and_says_where_it_began(tiny_run, tmp_path):
    checkpoint = tmp_path / "first-leg.zip"  # a saved model anywhere, not only in its run directory
    checkpoint.write_bytes((tiny_run / "model.zip").read_bytes())
    done = run_cli(
        "train",
        "experiments/quickstart.yaml",
        f"runs_dir={tmp_path / 'runs'}",
        *TINY,
        "env.levels=[BabyAI-GoToLocal-v0]",
        f"init_from={checkpoint}",
    )
    assert done.returncode == 0, done.stderr
    assert f"policy started from {checkpoint.resolve()}" in done.stdout
    run_dir = only_run_dir(tmp_path / "runs")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["init_from"] == str(checkpoint.resolve())
    assert json.loads((run_dir / "eval.json").read_text())["episodes"] == 4


def test_a_bad_init_from_is_one_line_and_exit_status_2(tiny_run, tmp_path, capsys):
    quick = ["train", "experiments/quickstart.yaml", f"runs_dir={tmp_path / 'runs'}", *TINY]
    assert "no such saved model" in _error(capsys, *quick, f"init_from={tmp_path / 'none.zip'}")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    assert "has no model.zip" in _error(capsys, *quick, f"init_from={unfinished}")
    (tmp_path / "notes.zip").write_text("not a zip")
    assert "not a saved model" in _error(capsys, *quick, f"init_from={tmp_path / 'notes.zip'}")
    assert not (tmp_path / "runs").exists()  # refused before the run wrote anything
    line = _error(capsys, *quick, "agent=film-lstm", f"init_from={tiny_run}")  # a CNN's weights for an LSTM
    assert "another shape" in line and str((tiny_run / "model.zip").resolve()) in line
    assert line.endswith("init_parts=features takes its FiLM network alone")  # which would fit
    assert not list((tmp_path / "runs").glob("*/*"))  # the run it refused left no directory behind
    line = _error(capsys, *quick, "init_parts=features")  # nothing to take the features from
    assert "init_parts=features" in line and "init_from" in line
    narrower = _error(capsys, *quick, "agent.channels=[8,16]", f"init_from={tiny_run}", "init_parts=features")
    assert "holds a FiLM network of another shape" in narrower and "is (16,) there, (8,) here" in narrower
    stacked = _error(capsys, *quick, "agent=film-lstm", f"init_from={tiny_run}", "init_parts=memoryless")
    assert "needs agent.memory=residual" in stacked  # a stacked LSTM's heads read the LSTM, not the features
    residual = _error(capsys, *quick, "agent=film-lstm", "agent.memory=residual", f"init_from={tiny_run}")
    assert residual.endswith("init_parts=memoryless takes all of it but the memory")
    assert "is for policy: lstm" in _error(capsys, *quick, "agent.memory=residual")
    assert "agent.memory_norm is for policy: lstm" in _error(capsys, *quick, "agent.memory_norm=true")
    unscalable = _error(capsys, *quick, "agent=film-lstm", "agent.memory_scale=true")
    assert unscalable.endswith("(this agent: policy lstm, memory stack)")  # a stacked memory adds nothing
    assert not list((tmp_path / "runs").glob("*/*"))


def test_the_putnextlocal_curriculum_runs_its_two_legs(tmp_path):
    """PickupLoc's recipe, then PutNextLocal's curriculum recipe from its run directory; the second
    leg alone is one line and exit status 2, not a run from scratch under the curriculum's name."""
    alone = run_cli("train", "experiments/putnextlocal-after-pickuploc.yaml", f"runs_dir={tmp_path / 'alone'}", *TINY)
    assert alone.returncode == 2 and len(alone.stderr.strip().splitlines()) == 1, alone.stderr
    assert (
        "error: init_from: required: this recipe starts from another run's policy; pass init_from=RUN_DIR"
        in alone.stderr
    )
    assert not (tmp_path / "alone").exists()
    first = run_cli("train", "experiments/pickuploc.yaml", f"runs_dir={tmp_path / 'first'}", *TINY)
    assert first.returncode == 0, first.stderr
    first_leg = only_run_dir(tmp_path / "first")
    second = run_cli(
        "train",
        "experiments/putnextlocal-after-pickuploc.yaml",
        f"runs_dir={tmp_path / 'second'}",
        *TINY,
        f"init_from={first_leg}",
    )
    assert second.returncode == 0, second.stderr
    assert f"policy started from {(first_leg / 'model.zip').resolve()}" in second.stdout
    config = yaml.safe_load((only_run_dir(tmp_path / "second") / "config.yaml").read_text())
    assert config["env"]["levels"] == ["BabyAI-PutNextLocal-v0", "BabyAI-PickupLoc-v0"]
    assert config["agent"]["algorithm"]["learning_rate"] == 2e-4 and config["agent"]["algorithm"]["ent_coef"] == 0.0
    # its evaluation reports both levels' pick-ups and the put-next parts, every figure in one column
    shown = run_cli("evaluate", str(only_run_dir(tmp_path / "second")), "--episodes", "12", "--stochastic")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    start = lines.index("first object picked up:")
    assert "put next, each part on its own:" in lines[start:]
    figures = [re.match(r"  \S.*? (\d\.\d{3}) \(\d+ episodes", line) for line in lines[start:] if line.startswith("  ")]
    assert len(figures) >= 3 and all(figures), lines[start:]
    assert len({match.start(1) for match in figures if match}) == 1  # labels of any length: one column


@pytest.mark.parametrize("previous_action,memory_norm", [(False, False), (True, True)])
def test_a_residual_lstm_from_a_memoryless_policy_starts_as_that_policy(tiny_run, previous_action, memory_norm):
    """``agent.memory=residual`` with ``init_parts=memoryless``: the LSTM policy takes every weight
    of the CNN policy (FiLM network, heads), its memory keeps its fresh draw, and on the level's
    own observations it acts and values as the CNN does, step after step, until it learns. With
    ``env.previous_action``, the previous action's vectors are part of the memory: drawn at zero;
    with ``agent.memory_norm``, so is the LayerNorm the LSTMs read the features through (and, with
    ``agent.memory_scale`` beside it, memory writes at the features' scale: still zero at first)."""
    overrides = [*TINY, "agent=film-lstm", "agent.memory=residual", f"init_from={tiny_run}", "init_parts=memoryless"]
    overrides += [
        f"env.previous_action={str(previous_action).lower()}",
        f"agent.memory_norm={str(memory_norm).lower()}",
        f"agent.memory_scale={str(memory_norm).lower()}",
    ]
    config = load_experiment("experiments/quickstart.yaml", overrides)
    task = task_for(config)
    env = build_env(config, task, config.seed, None)
    model = build_model(config, task, env, "cpu")
    assert isinstance(model.policy.lstm_actor, ResidualLSTM) and isinstance(model.policy.lstm_critic, ResidualLSTM)
    drawn = {k: v.clone() for k, v in model.policy.state_dict().items()}
    start_from(model, saved_policy(str(config.init_from), "cpu"), config.init_parts)
    source = PPO.load(tiny_run / "model.zip", device="cpu").policy
    saved, now = source.state_dict(), model.policy.state_dict()
    assert all(torch.equal(now[k], saved[k]) for k in saved)  # every weight the CNN has
    memory = [k for k in now if k not in saved]
    lstms = [k for k in memory if k.startswith(("lstm_actor.", "lstm_critic."))]
    previous = [k for k in memory if k.endswith("previous_action.weight")]
    assert lstms and sorted(memory) == sorted(lstms + previous) and bool(previous) == previous_action
    assert all(torch.equal(now[k], drawn[k]) for k in memory)
    assert all(not now[k].any() for k in previous)
    assert any(".norm." in k for k in lstms) == memory_norm
    assert model.policy.lstm_actor.scale == memory_norm and model.policy.lstm_critic.scale == memory_norm
    obs = env.reset()
    zeros = torch.zeros(1, env.num_envs, config.agent.lstm_hidden)
    states = RNNStates((zeros, zeros), (zeros, zeros))
    starts = torch.ones(env.num_envs)
    with torch.no_grad():
        for _ in range(12):  # the memory carries its state from step to step; it adds nothing yet
            tensors, _ = model.policy.obs_to_tensor(obs)
            actions, values, log_prob, states = model.policy(tensors, states, starts, deterministic=True)
            expected = source({k: v for k, v in tensors.items() if k != "previous_action"}, deterministic=True)
            assert torch.equal(actions, expected[0])
            assert torch.allclose(values, expected[1], atol=1e-6) and torch.allclose(log_prob, expected[2], atol=1e-6)
            obs, _, dones, _ = env.step(actions.numpy())
            starts = torch.as_tensor(dones, dtype=torch.float32)
    assert states.pi[0].abs().sum() > 0  # the memory did run
    env.close()
