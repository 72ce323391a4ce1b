"""The FiLM policies as SB3 sees them: build, save, and load back with plain PPO / RecurrentPPO.load."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from film_rl.bench import bench_config, film_model
from film_rl.model.policies import FilmCnnPolicy, FilmLstmPolicy, InstructionFeatures, NormedLSTM, ResidualLSTM
from film_rl.tasks.babyai_envs import make_vec_env
from film_rl.tasks.instructions import Vocabulary

LEVELS = ["BabyAI-GoToLocal-v0"]

LOAD_AND_ACT = """
import sys, numpy as np
import film_rl
from {module} import {cls}
model = {cls}.load(sys.argv[1], device="cpu")
obs = dict(np.load(sys.argv[2]))
kwargs = {{}}
if {recurrent}:
    kwargs = dict(state=None, episode_start=np.ones(len(obs["image"]), dtype=bool))
actions, _ = model.predict(obs, deterministic=True, **kwargs)
print(" ".join(map(str, actions.tolist())))
"""


def _observations(venv, n=32):
    rng = np.random.default_rng(0)
    batches = []
    obs = venv.reset()
    for _ in range(n // venv.num_envs):
        batches.append(obs)
        obs, *_ = venv.step(rng.integers(0, 7, venv.num_envs))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@pytest.mark.parametrize("recurrent", [False, True])
def test_saved_model_acts_the_same_in_a_fresh_process(tmp_path, recurrent):
    venv = make_vec_env(LEVELS, Vocabulary.babyai(), 2, seed=0)
    algo, policy = (RecurrentPPO, FilmLstmPolicy) if recurrent else (PPO, FilmCnnPolicy)
    extra = (
        {"policy_kwargs": {"lstm_hidden_size": 16, "shared_lstm": True, "enable_critic_lstm": False}}
        if recurrent
        else {}
    )
    model = algo(policy, venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu", **extra)
    model.learn(64)  # move the weights away from their initial values
    obs = _observations(venv)
    kwargs = {"state": None, "episode_start": np.ones(len(obs["image"]), dtype=bool)} if recurrent else {}
    before, _ = model.predict(obs, deterministic=True, **kwargs)
    model.save(tmp_path / "model.zip")
    np.savez(tmp_path / "obs.npz", **obs)
    module = "sb3_contrib" if recurrent else "stable_baselines3"
    script = LOAD_AND_ACT.format(module=module, cls=algo.__name__, recurrent=recurrent)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model.zip"), str(tmp_path / "obs.npz")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(a) for a in before.tolist()]
    venv.close()


def test_policy_defaults_suit_symbolic_grids():
    venv = make_vec_env(LEVELS, Vocabulary.babyai(), 1, seed=0)
    model = PPO(FilmCnnPolicy, venv, n_steps=16, batch_size=16, device="cpu")
    assert isinstance(model.policy.features_extractor, InstructionFeatures)
    assert model.policy.normalize_images is False
    # SB3's orthogonal init must not have touched the FiLM head: fresh layers are identities
    head = model.policy.features_extractor.generator.head
    assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0
    venv.close()


@pytest.mark.parametrize("kind", ["lstm", "residual", "normed", "residual normed", "residual normed scaled"])
@pytest.mark.parametrize("starts_inside", [False, True])
def test_fused_sequence_pass_equals_sb3_contribs_loop(starts_inside, kind):
    """Same outputs, states and gradients as RecurrentActorCriticPolicy's step-by-step pass, for
    sb3-contrib's LSTM, the residual one (its projection drawn, not at its zero start), either
    reading its input through a LayerNorm, and the residual one writing at its input's scale."""
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

    torch.manual_seed(0)
    normed = "normed" in kind
    lstm = (
        ResidualLSTM(6, 5, norm=normed, scale="scaled" in kind)
        if "residual" in kind
        else NormedLSTM(6, 5)
        if normed
        else torch.nn.LSTM(6, 5)
    )
    if isinstance(lstm, ResidualLSTM):
        torch.nn.init.normal_(lstm.out.weight)
    n_seq, length = 4, 7
    features = torch.randn(n_seq * length, 6, requires_grad=True)
    states = (torch.randn(1, n_seq, 5), torch.randn(1, n_seq, 5))
    starts = torch.zeros(n_seq, length)
    starts[[0, 2], 0] = 1.0  # some sequences begin a new episode
    if starts_inside:
        starts[1, 3] = 1.0  # a pattern RecurrentPPO's buffer never produces: the loop handles it
    flat = starts.reshape(-1)
    ours, ours_states = FilmLstmPolicy._process_sequence(features, states, flat, lstm)
    (grad_ours,) = torch.autograd.grad(ours.sum(), features)
    theirs, their_states = RecurrentActorCriticPolicy._process_sequence(features, states, flat, lstm)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), features)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours_states, their_states, strict=True))
    assert torch.allclose(grad_ours, grad_theirs, atol=1e-6)


def test_padding_rows_are_skipped_without_changing_the_loss():
    """RecurrentPPO's padded minibatches: features of the real rows only, same outputs and gradients."""
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

    venv = make_vec_env(LEVELS, Vocabulary.babyai(), 4, seed=0)
    kwargs = {"lstm_hidden_size": 16, "shared_lstm": True, "enable_critic_lstm": False}
    model = RecurrentPPO(FilmLstmPolicy, venv, n_steps=64, batch_size=64, seed=0, device="cpu", policy_kwargs=kwargs)
    model.learn(256)  # a full rollout buffer; GoToLocal episodes end inside it, so sequences are padded
    torch.nn.init.normal_(model.policy.features_extractor.generator.head.weight, std=0.1)
    policy = model.policy
    checked = 0
    for batch in model.rollout_buffer.get(64):
        real = batch.mask > 0
        if bool(real.all()):
            continue
        checked += 1
        args = (batch.observations, batch.actions.long().flatten(), batch.lstm_states, batch.episode_starts)
        ours = policy.evaluate_actions(*args)
        (grads_ours,) = torch.autograd.grad(
            ours[1][real].sum() + ours[0].flatten()[real].sum(), [policy.lstm_actor.weight_ih_l0]
        )
        # the stock path: features of every row, padding included
        policy.extract_features = lambda obs, fe=None: RecurrentActorCriticPolicy.extract_features(policy, obs, fe)
        theirs = policy.evaluate_actions(*args)
        del policy.extract_features
        (grads_theirs,) = torch.autograd.grad(
            theirs[1][real].sum() + theirs[0].flatten()[real].sum(), [policy.lstm_actor.weight_ih_l0]
        )
        assert torch.allclose(ours[0].flatten()[real], theirs[0].flatten()[real], atol=1e-5)
        assert torch.allclose(ours[1][real], theirs[1][real], atol=1e-5)
        assert torch.allclose(grads_ours, grads_theirs, atol=1e-5)
    assert checked > 0
    venv.close()


def test_training_takes_adams_fused_kernel_with_the_same_updates():
    """training asks for Adam's fused kernel (a CPU minibatch's optimizer step, ~1.3 of 9.4 ms);
    it must be the same algorithm: parameters match the per-tensor loop's after a few updates."""
    config = bench_config("BabyAI-GoToLocal-v0", "film-cnn", ["env.n_envs=2"])
    model = film_model(config, "cpu")
    optimizer = model.policy.optimizer
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["fused"] is True
    assert optimizer.defaults["eps"] == config.agent.algorithm.adam_eps

    params = list(model.policy.parameters())
    twin = [p.detach().clone().requires_grad_() for p in params]
    loop = torch.optim.Adam(twin, lr=1e-2, eps=optimizer.defaults["eps"], foreach=False)
    fused = torch.optim.Adam(params, lr=1e-2, eps=optimizer.defaults["eps"], fused=True)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        for group, opt in ((params, fused), (twin, loop)):
            for p, g in zip(group, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for p, q in zip(params, twin, strict=True):
        torch.testing.assert_close(p, q)
    model.get_env().close()


@pytest.mark.parametrize("normalize", [True, False])
def test_advantage_normalisation_reaches_sb3(normalize):
    """AGILE's recipes turn it off (a rare reward at `done`); the setting must reach PPO itself."""
    config = bench_config(
        "BabyAI-GoToLocal-v0", "film-cnn", ["env.n_envs=2", f"agent.algorithm.normalize_advantage={normalize}"]
    )
    model = film_model(config, "cpu")
    assert model.normalize_advantage is normalize
    model.get_env().close()


@pytest.mark.parametrize("memory", ["own", "shared"])
def test_an_lstm_critic_trains_the_film_network_only_with_a_memory_of_its_own(memory):
    """``agent.critic_memory=own`` gives the critic sb3-contrib's own LSTM over the shared FiLM
    features, so the value loss reaches the FiLM network; ``shared`` reads the actor's LSTM with
    sb3-contrib's stopped gradient, so it reaches only the value head."""
    config = bench_config(LEVELS[0], "film-lstm", [f"agent.critic_memory={memory}", "env.n_envs=2"])
    model = film_model(config, "cpu")
    policy = model.policy
    assert (policy.lstm_critic is not None) == (memory == "own")
    obs, _ = policy.obs_to_tensor(_observations(model.get_env(), 8))
    n = len(obs["image"])
    zeros = torch.zeros(policy.lstm_hidden_state_shape[0], n, policy.lstm_hidden_state_shape[2])
    values = policy.predict_values(obs, (zeros, zeros), torch.ones(n))
    policy.zero_grad()
    values.sum().backward()
    film = [p.grad for p in policy.features_extractor.parameters() if p.requires_grad]
    reached = any(g is not None and bool(g.abs().sum() > 0) for g in film)
    assert reached == (memory == "own")
    assert policy.value_net.weight.grad is not None and bool(policy.value_net.weight.grad.abs().sum() > 0)
    model.get_env().close()


@pytest.mark.parametrize("features", ["shared", "own"])
def test_a_cnn_critic_with_features_of_its_own_keeps_the_value_loss_off_the_actors_film_network(features):
    """``agent.critic_features=own`` gives the critic a FiLM network of its own: the value loss
    trains it and leaves the actor's alone; both start with identity FiLM layers and act on the
    FiLM parameters their optimizer steps train. ``shared`` (SB3's default) is one network."""
    overrides = ["env.n_envs=2", "agent.algorithm.n_steps=32", "agent.algorithm.batch_size=32"]
    model = film_model(bench_config(LEVELS[0], "film-cnn", [*overrides, f"agent.critic_features={features}"]), "cpu")
    policy = model.policy
    actor, critic = policy.pi_features_extractor, policy.vf_features_extractor
    assert (critic is actor) == (features == "shared")
    for extractor in (actor, critic):  # SB3's orthogonal init undone: FiLM starts as the identity
        assert not any(p.abs().sum() > 0 for p in extractor.generator.head.parameters())
    obs, _ = policy.obs_to_tensor(_observations(model.get_env(), 8))
    policy.zero_grad()
    policy.predict_values(obs).sum().backward()
    reached = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in actor.cnn.parameters()]
    assert any(reached) == (features == "shared")
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in critic.cnn.parameters())
    model.learn(128)  # two rollouts of 2 x 32 steps: two minibatches x four epochs each
    assert actor.generator._optimizer_steps == critic.generator._optimizer_steps == 16
    instruction = torch.as_tensor(_observations(model.get_env(), 8)["instruction"])
    with torch.no_grad():
        for generator in (actor.generator, critic.generator):
            torch.testing.assert_close(generator.embed(instruction), generator.head(generator.encoder(instruction)))
    if features == "own":  # trained apart, the two networks now differ
        assert any(not torch.equal(a, c) for a, c in zip(actor.parameters(), critic.parameters(), strict=True))
    model.get_env().close()


@pytest.mark.parametrize("agent", ["film-cnn", "film-lstm"])
def test_after_updates_a_policy_acts_on_the_film_parameters_it_trains(agent):
    """Acting reuses each instruction's FiLM parameters until the optimizer steps. sb3-contrib's
    recurrent policy replaces its optimizer after building the LSTM: the cache must hear the new
    one, or the LSTM policy would act for the whole run on the parameters of its first rollout."""
    overrides = ["env.n_envs=2", "agent.algorithm.n_steps=32", "agent.algorithm.batch_size=32", "agent.lstm_hidden=16"]
    model = film_model(bench_config(LEVELS[0], agent, overrides), "cpu")
    model.learn(128)  # two rollouts of 2 x 32 steps: two minibatches x four epochs each
    generator = model.policy.features_extractor.generator
    assert generator._optimizer_steps == 16
    instruction = torch.as_tensor(_observations(model.get_env(), 8)["instruction"])
    with torch.no_grad():
        acting = generator.embed(instruction)  # the cached path, as in a rollout
        training = generator.head(generator.encoder(instruction))  # what the loss sees
    torch.testing.assert_close(acting, training)
    model.get_env().close()


def test_a_residual_lstm_passes_its_input_through_until_memory_learns():
    """Its output has the input's width whatever the hidden width; at its zero start the output is
    the input, at every step and whatever the state; yet the loss reaches the projection at once
    and, once that moves, the LSTM's own weights."""
    torch.manual_seed(0)
    lstm = ResidualLSTM(6, 5)
    sequence = torch.randn(7, 3, 6)
    states = (torch.randn(1, 3, 5), torch.randn(1, 3, 5))
    output, (hidden, _) = lstm(sequence, states)
    assert output.shape == sequence.shape and hidden.shape == (1, 3, 5)
    assert torch.equal(output, sequence)
    loss = (output * torch.randn_like(output)).sum()
    loss.backward()
    assert lstm.out.weight.grad is not None and lstm.out.weight.grad.abs().sum() > 0
    assert lstm.weight_ih_l0.grad is None or lstm.weight_ih_l0.grad.abs().sum() == 0  # nothing to pass yet
    optimizer = torch.optim.Adam(lstm.parameters(), lr=1e-2)
    optimizer.step()
    optimizer.zero_grad()
    output, _ = lstm(sequence, states)
    assert not torch.equal(output, sequence)  # memory now adds something
    (output * torch.randn_like(output)).sum().backward()
    assert lstm.weight_ih_l0.grad is not None and lstm.weight_ih_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("residual", [False, True])
def test_a_normed_memory_reads_features_of_any_scale_alike(residual):
    """A trained FiLM network's features are hundreds of times the scale of a drawn one's. Read raw,
    they saturate the LSTM's gates; through the LayerNorm, features 1,000 times larger leave the
    memory's states as they were. A residual LSTM still adds to the features as they are, and one
    without the norm keeps the weights of runs saved before it (no ``norm.*``)."""
    torch.manual_seed(0)
    lstm = ResidualLSTM(6, 5, norm=True) if residual else NormedLSTM(6, 5)
    plain = torch.nn.LSTM(6, 5)
    plain.load_state_dict(lstm.state_dict(), strict=False)
    sequence = torch.randn(7, 3, 6)
    (small, (h_small, c_small)), (large, (h_large, c_large)) = lstm(sequence), lstm(1000 * sequence)
    assert torch.allclose(h_small, h_large, atol=1e-5) and torch.allclose(c_small, c_large, atol=1e-5)
    _, (h_raw, _) = plain(sequence)
    _, (h_raw_large, _) = plain(1000 * sequence)
    assert not torch.allclose(h_raw, h_raw_large, atol=1e-2)  # raw, the scale changes what it holds
    if residual:
        assert torch.equal(large, 1000 * sequence)  # the projection starts at zero: the features pass
        assert {k for k in ResidualLSTM(6, 5).state_dict() if not k.startswith(("weight_", "bias_"))} == {
            "out.weight",
            "out.bias",
        }
    else:
        assert torch.allclose(small, large, atol=1e-5)


@pytest.mark.parametrize("norm", [False, True])
def test_a_scaled_memory_writes_at_the_features_scale(norm):
    """``scale``: what the projection adds is multiplied by the input's root mean square. Read
    through the norm, the whole output then grows with the features: features 1,000 times larger
    come out 1,000 times larger, memory's share unchanged, where an unscaled memory's share falls
    1,000-fold. It adds no weights, so an unscaled run's state dict fits it, and at its zero start
    it passes its input through like the unscaled one."""
    torch.manual_seed(0)
    sequence = torch.randn(7, 3, 6)
    scaled, unscaled = ResidualLSTM(6, 5, norm=norm, scale=True), ResidualLSTM(6, 5, norm=norm)
    assert torch.equal(scaled(sequence)[0], sequence)  # drawn at zero: the features pass
    assert scaled.state_dict().keys() == unscaled.state_dict().keys()
    torch.nn.init.normal_(scaled.out.weight)
    torch.nn.init.normal_(scaled.out.bias)
    unscaled.load_state_dict(scaled.state_dict())
    rms = sequence.pow(2).mean(dim=-1, keepdim=True).sqrt()
    written, written_unscaled = scaled(sequence)[0] - sequence, unscaled(sequence)[0] - sequence
    assert torch.allclose(written, rms * written_unscaled, atol=1e-5)
    if norm:
        large, _ = scaled(1000 * sequence)
        assert torch.allclose(large, 1000 * scaled(sequence)[0], rtol=1e-3, atol=1e-2)  # LayerNorm eps
        share = (large - 1000 * sequence).norm() / large.norm()
        share_unscaled = (unscaled(1000 * sequence)[0] - 1000 * sequence).norm() / (1000 * sequence).norm()
        assert share > 0.1 and share_unscaled < share / 100
