"""FiLM and its relatives: the algebra the seed article relies on."""

import pytest
import torch
from torch import nn

from film_rl.model.conditioning import CONDITIONINGS, Bias, Concat, FiLM, Gate, Scale, make_conditioning


@pytest.mark.parametrize("cls", [FiLM, Scale, Bias])
def test_zero_parameters_are_the_identity(cls):
    layer = cls(channels=5)
    x = torch.randn(3, 5, 4, 4)
    assert torch.equal(layer.post(x, torch.zeros(3, layer.n_params)), x)


def test_film_is_gamma_times_x_plus_beta_per_feature_map():
    film = FiLM(channels=2)
    x = torch.randn(2, 2, 3, 3)
    delta_gamma = torch.tensor([[1.0, -0.5], [0.0, 2.0]])
    beta = torch.tensor([[0.5, 1.0], [-1.0, 0.0]])
    out = film.post(x, torch.cat([delta_gamma, beta], dim=1))
    for b in range(2):
        for c in range(2):
            # every position of feature map c of sample b gets the same (γ, β)
            expected = (1 + delta_gamma[b, c]) * x[b, c] + beta[b, c]
            assert torch.allclose(out[b, c], expected)


def test_film_broadcasts_over_linear_features_too():
    film = FiLM(channels=4)
    x = torch.randn(3, 4)
    p = torch.randn(3, 8)
    assert torch.allclose(film.post(x, p), (1 + p[:, :4]) * x + p[:, 4:])


def test_scale_bias_and_gate_modulate_only_what_they_claim():
    x = torch.randn(2, 3, 5, 5)
    p = torch.randn(2, 3)
    assert torch.allclose(Scale(3).post(x, p), (1 + p[:, :, None, None]) * x)
    assert torch.allclose(Bias(3).post(x, p), x + p[:, :, None, None])
    assert torch.allclose(Gate(3).post(x, p), torch.sigmoid(p[:, :, None, None]) * x)
    # a fully open gate passes the features through, a closed one blocks them
    assert torch.allclose(Gate(3).post(x, torch.full((2, 3), 50.0)), x)
    assert torch.allclose(Gate(3).post(x, torch.full((2, 3), -50.0)), torch.zeros_like(x), atol=1e-12)


def test_concat_on_a_linear_layer_equals_a_conditional_bias():
    """W [x; z] + b = W_x x + (W_z z + b): concatenation is FiLM with γ = 1 (the seed article's point)."""
    torch.manual_seed(0)
    concat = Concat(channels=6, dim=3)
    linear = nn.Linear(4 + concat.extra_in_channels, 6)
    x, z = torch.randn(5, 4), torch.randn(5, 3)
    concatenated = linear(concat.pre(x, z))
    w_x, w_z = linear.weight[:, :4], linear.weight[:, 4:]
    conditional_bias = Bias(6).post(x @ w_x.T, z @ w_z.T + linear.bias)
    assert torch.allclose(concatenated, conditional_bias, atol=1e-6)


def test_concat_tiles_the_instruction_over_conv_positions():
    concat = Concat(channels=8, dim=3)
    x, z = torch.randn(2, 4, 5, 5), torch.randn(2, 3)
    out = concat.pre(x, z)
    assert out.shape == (2, 7, 5, 5)
    assert torch.equal(out[:, :4], x)
    assert torch.equal(out[:, 4:], z[:, :, None, None].expand(-1, -1, 5, 5))


def test_none_ignores_the_instruction_and_every_name_is_buildable():
    for name in CONDITIONINGS:
        layer = make_conditioning(name, 4)
        assert layer.n_params >= 0
    none = make_conditioning("none", 4)
    x = torch.randn(2, 4, 3, 3)
    assert none.n_params == 0 and torch.equal(none.post(none.pre(x, torch.empty(2, 0)), torch.empty(2, 0)), x)
    with pytest.raises(ValueError, match="unknown conditioning"):
        make_conditioning("films", 4)
