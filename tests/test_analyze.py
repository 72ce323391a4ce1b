"""`film-rl analyze` on tiny real runs: figures, the parameter CSV, interpolation that reproduces
each instruction's own policy at its ends, single-parameter mechanisms, and what cannot be analysed."""

import csv
import json
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, run_cli

from film_rl import cli
from film_rl.analysis.analyze import analyze, film_generator, film_of, mix, substituted_film
from film_rl.config import load_experiment
from film_rl.errors import UserError
from film_rl.run import run_dir as runs
from film_rl.run.train import train
from film_rl.tasks.babyai_envs import make_babyai_env

PNG = b"\x89PNG\r\n\x1a\n"
PARAM_COLUMN = re.compile(r"l\d+_(gamma|beta|g)_\d+$")
#: cheaper still than TINY: one 32-step rollout per env, no periodic evaluation, one final episode
SHORTEST = [*TINY, "budget.timesteps=64", "agent.algorithm.n_steps=32", "agent.algorithm.batch_size=32",
            "eval.freq=0", "eval.episodes=1", "threads=1", "logging.wandb=disabled",
            "logging.tensorboard=false"]  # fmt: skip


def _error(done):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def _png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 5000


def _param_columns(csv_path):
    with csv_path.open() as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    columns = [i for i, name in enumerate(header) if PARAM_COLUMN.match(name)]
    return header, body, columns


@pytest.fixture(scope="module")
def analysis(tiny_run, tmp_path_factory):
    """The tiny GoToRedBallGrey run analysed on GoToLocal's 36 missions (its own level has one)."""
    out = tmp_path_factory.mktemp("analysis")
    done = run_cli("analyze", str(tiny_run), "--level", "BabyAI-GoToLocal-v0", "--instructions", "36",
                   "--episodes", "3", "--out", str(out), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


def test_every_figure_is_written_as_a_non_empty_png(analysis):
    out, result = analysis
    expected = {"scatter_layer1", "scatter_layer1_attributes", "projection_pca", "projection_tsne",
                "interpolation", "arithmetic"}  # fmt: skip
    assert set(result["figures"]) == expected
    for name in expected:
        assert _png(out / f"{name}.png"), name
    summary = (out / "summary.md").read_text()
    assert all(f"{name}.png" in summary for name in expected)
    assert json.loads((out / "analysis.json").read_text()) == result
    # every GoToLocal mission says "go to": only the words that vary can explain anything
    assert set(result["attribute_shares"]) == {"colour", "object", "article"}
    assert all(0.0 <= share <= 1.0 for share in result["attribute_shares"].values())


def test_csv_is_instructions_by_generator_outputs_as_the_layers_use_them(analysis, tiny_run):
    out, result = analysis
    header, body, columns = _param_columns(out / "film_params.csv")
    config = runs.read_config(tiny_run)
    model = runs.load_model(config, tiny_run / "model.zip", device="cpu")
    generator = film_generator(model)
    assert len(body) == result["instructions"] == 36
    assert len(columns) == generator.head.out_features == sum(result["layer_sizes"]) == 2 * (16 + 32)
    vocab = runs.read_vocab(tiny_run)
    for row in body[:3]:  # γ = 1 + Δγ, β as generated, in the generator's order
        raw = film_of(generator, vocab.encode(row[0], config.env.max_instruction_length)[0]).numpy()
        offsets = np.array([1.0 if "_gamma_" in header[i] else 0.0 for i in columns])
        np.testing.assert_allclose([float(row[i]) for i in columns], raw + offsets, rtol=1e-6, atol=1e-7)


def test_interpolation_ends_reproduce_each_instructions_own_episodes(analysis):
    _, result = analysis
    i = result["interpolation"]
    assert i["alphas"][0] == 0.0 and i["alphas"][-1] == 1.0 and len(i["success_a"]) == len(i["alphas"])
    assert i["episodes_a"] == i["episodes_b"] == 3
    assert i["success_a"][0] == i["own_a"] and i["success_b"][-1] == i["own_b"]
    for analogy in result["analogies"]:
        assert analogy["episodes"] == 3 and 0.0 <= analogy["arithmetic"] <= 1.0
        assert analogy["rank"] is not None  # the expected mission was among the 36 analysed


def test_alpha_0_and_1_act_exactly_as_the_policy_given_a_or_b(tiny_run):
    config, vocab = runs.read_config(tiny_run), runs.read_vocab(tiny_run)
    model = runs.load_model(config, tiny_run / "model.zip", device="cpu")
    generator = film_generator(model)
    env = make_babyai_env(["BabyAI-GoToLocal-v0"], vocab)
    views = [env.reset(seed=s)[0] for s in range(32)]
    obs = {k: np.stack([v[k] for v in views]) for k in views[0]}

    def reading(text):
        tokens, length = vocab.encode(text, config.env.max_instruction_length)
        return {**obs, "instruction": np.tile(tokens, (32, 1)), "instruction_length": np.full((32, 1), length)}

    def act(observation):
        actions, _ = model.predict(observation, deterministic=True)
        with torch.no_grad():
            logits = model.policy.get_distribution(model.policy.obs_to_tensor(observation)[0]).distribution.logits
        return actions, logits

    a, b, other = "go to the red ball", "go to the blue key", "pick up the green box"
    fa, fb = (film_of(generator, vocab.encode(t, config.env.max_instruction_length)[0]) for t in (a, b))
    for alpha, own in ((0.0, a), (1.0, b)):
        own_actions, own_logits = act(reading(own))
        with substituted_film(generator, mix(fa, fb, alpha)):  # the words read are ignored meanwhile
            actions, logits = act(reading(other))
        assert np.array_equal(actions, own_actions) and torch.equal(logits, own_logits)
    with substituted_film(generator, mix(fa, fb, 0.5)):
        _, halfway = act(reading(a))
    assert not torch.equal(halfway, act(reading(a))[1])  # in between, the parameters do move the policy
    assert torch.equal(act(reading(b))[1], own_logits)  # and afterwards the policy reads its instruction again


def test_a_single_mission_level_and_wandb_offline_get_what_applies(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    level = ["--level", "BabyAI-GoToRedBallGrey-v0"]  # named: analysed as it is, one mission and all
    done = run_cli("analyze", str(run), "--episodes", "0", "--json", *level, WANDB_MODE="offline")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["instructions"] == 1 and result["own_levels"] and result["wandb"] == "offline"
    assert set(result["figures"]) == {"scatter_layer1", "scatter_layer1_attributes"}
    assert any("two instructions or more" in note for note in result["notes"])
    assert all(_png(run / "analysis" / f"{name}.png") for name in result["figures"])
    (logged,) = (run / "wandb").glob("offline-run-*")  # the run's own wandb run, resumed
    assert logged.name.endswith((run / "wandb_id.txt").read_text().strip())
    images = list((logged / "files" / "media" / "images").rglob("*.png"))
    tables = list((logged / "files" / "media" / "table").rglob("*.table.json"))
    assert len(images) == 2 and len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert len(table["data"]) == 1 and sum(bool(PARAM_COLUMN.match(c)) for c in table["columns"]) == 96


def _train(tmp_path, *overrides):
    """A real run in this process (no interpreter to start): a few PPO steps are all analyze needs."""
    config = load_experiment(ROOT / "experiments/quickstart.yaml", [f"runs_dir={tmp_path}", *SHORTEST, *overrides])
    return train(config).run_dir


def test_a_scale_run_reports_gamma_only(tmp_path):
    run = _train(tmp_path, "env=babyai-gotolocal", "agent.conditioning=scale")
    done = run_cli("analyze", str(run), "--instructions", "12", "--episodes", "0")
    assert done.returncode == 0, done.stderr
    assert "scale (γ)" in done.stdout and "16 + 32 = 48 parameters" in done.stdout
    header, body, columns = _param_columns(run / "analysis" / "film_params.csv")
    assert len(body) == 12 and len(columns) == 48 and all("_gamma_" in header[i] for i in columns)
    summary = (run / "analysis" / "summary.md").read_text()
    assert "| gamma |" in summary and "beta" not in summary and "β" not in summary
    assert _png(run / "analysis" / "scatter_layer1.png") and _png(run / "analysis" / "projection_tsne.png")


@pytest.mark.parametrize("conditioning", ["concat", "none"])
def test_concat_and_none_have_nothing_to_analyse(tmp_path, conditioning):
    run = _train(tmp_path, f"agent.conditioning={conditioning}")
    line = _error(run_cli("analyze", str(run)))
    assert "nothing to analyse" in line and f"'{conditioning}'" in line


def test_bad_requests_are_one_line(tiny_run, tmp_path):
    line = _error(run_cli("analyze", str(tiny_run), "--analogy", "go to the red ball", "red", "pink", "x"))
    assert "unknown word 'pink'" in line
    assert "--episodes" in _error(run_cli("analyze", str(tiny_run), "--episodes", "-1"))
    with pytest.raises(UserError, match="--layer 2: this policy has 2 conditioned layers"):
        analyze(tiny_run, out=tmp_path, layer=2, episodes=0)


def test_a_level_with_too_few_missions_is_analysed_through_a_related_level(tiny_run, tmp_path, capsys):
    """The quickstart's level has one mission: by default analyze says so and studies the missions
    of the one-room level of the same verb, where colours and objects vary."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    args = ["analyze", str(run), "--episodes", "0", "--instructions", "12", "--json"]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["levels"] == ["BabyAI-GoToLocal-v0"] and not result["own_levels"]
    assert result["instructions"] == 12
    assert any("gives 1 distinct mission" in note and "GoToLocal" in note for note in result["notes"])
    assert "pca" in "".join(result["figures"]) and result["pca_explained"] is not None
