"""The instruction encoder, the FiLM generator and the FiLM-ed grid CNN."""

import functools

import numpy as np
import pytest
import torch

from film_rl.model.networks import FiLMGenerator, GridFiLMCNN, InstructionEncoder, distinct_rows
from film_rl.tasks.instructions import Vocabulary

VOCAB = Vocabulary.babyai()
MISSIONS = ["go to the red ball", "pick up a blue key", "put the grey box next to the green ball", "go to the red ball"]


def tokens(missions, max_length):
    return torch.as_tensor(np.stack([VOCAB.encode(m, max_length)[0] for m in missions]))


@pytest.mark.parametrize("kind", ["gru", "bigru", "bow", "bow_linear", "conv"])
def test_padding_is_masked(kind):
    """However much padding follows a mission, the encoder's reading of it is the same."""
    torch.manual_seed(0)
    encoder = InstructionEncoder(len(VOCAB), kind, word_dim=8, dim=16)
    short, long = encoder(tokens(MISSIONS, 12)), encoder(tokens(MISSIONS, 40))
    assert short.shape == (4, 16)
    assert torch.allclose(short, long, atol=1e-6)
    # one mission alone reads the same as inside a batch of longer ones
    assert torch.allclose(encoder(tokens(MISSIONS[:1], 5)), short[:1], atol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "bigru", "bow", "bow_linear", "conv"])
def test_encoder_distinguishes_missions(kind):
    torch.manual_seed(0)
    z = InstructionEncoder(len(VOCAB), kind, word_dim=8, dim=16)(tokens(MISSIONS, 12))
    assert not torch.allclose(z[0], z[1])
    assert torch.allclose(z[0], z[3])


def test_a_linear_bag_of_words_makes_film_parameters_compose_by_analogy():
    """With ``bow_linear`` the generator is affine in the words' mean: a colour-object pair's
    parameters follow from three others', which is what a held-out pair can lean on."""
    torch.manual_seed(0)
    generator = FiLMGenerator(InstructionEncoder(len(VOCAB), "bow_linear", word_dim=8, dim=16), [6, 10])
    torch.nn.init.normal_(generator.head.weight)
    missions = ["go to the green key", "go to the red box", "go to the red key", "go to the green box"]
    green_key, red_box, red_key, green_box = generator.embed(tokens(missions, 8))
    assert torch.allclose(green_key + red_box - red_key, green_box, atol=1e-5)
    relu = FiLMGenerator(InstructionEncoder(len(VOCAB), "bow", word_dim=8, dim=16), [6, 10])
    torch.nn.init.normal_(relu.head.weight)
    green_key, red_box, red_key, green_box = relu.embed(tokens(missions, 8))
    assert not torch.allclose(green_key + red_box - red_key, green_box, atol=1e-3)


def test_generator_runs_once_per_distinct_instruction_and_splits_per_layer():
    torch.manual_seed(0)
    encoder = InstructionEncoder(len(VOCAB), "gru", word_dim=8, dim=16)
    generator = FiLMGenerator(encoder, [6, 10])
    torch.nn.init.normal_(generator.head.weight)
    seen = []
    encoder.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    batch = tokens(MISSIONS, 12)
    params = generator(batch)
    assert seen == [3]  # 4 rows, 3 distinct missions
    assert [p.shape for p in params] == [(4, 6), (4, 10)]
    one_by_one = torch.cat([generator.head(encoder(batch[i : i + 1])) for i in range(4)])
    assert torch.allclose(torch.cat(params, dim=1), one_by_one, atol=1e-6)


def test_fresh_generator_leaves_the_cnn_unconditioned():
    """Zero-initialised head: a new FiLM network computes exactly what an unconditioned one does."""
    torch.manual_seed(0)
    film = GridFiLMCNN(conditioning="film")
    none = GridFiLMCNN(conditioning="none")
    none.load_state_dict(film.state_dict())
    generator = FiLMGenerator(InstructionEncoder(len(VOCAB)), film.param_sizes)
    image = torch.randint(0, 6, (4, 3, 7, 7))
    direction = torch.randint(0, 4, (4, 1))
    out = film(image, direction, generator(tokens(MISSIONS, 12)))
    empty = [torch.zeros(4, 0)] * len(none.blocks)
    assert torch.allclose(out, none(image, direction, empty))


@pytest.mark.parametrize("conditioning", ["film", "scale", "bias", "gate", "concat", "none"])
@pytest.mark.parametrize("kernel_size,pool", [(2, "flatten"), (3, "max")])
def test_grid_cnn_shapes_and_gradients(conditioning, kernel_size, pool):
    cnn = GridFiLMCNN(channels=(8, 8), conditioning=conditioning, embed_dim=8, kernel_size=kernel_size, pool=pool)
    params = [torch.randn(2, n, requires_grad=True) for n in cnn.param_sizes]
    out = cnn(torch.randint(0, 6, (2, 3, 7, 7)), torch.tensor([[0], [3]]), params)
    assert out.shape == (2, cnn.out_dim)
    out.sum().backward()
    for p, n in zip(params, cnn.param_sizes, strict=True):
        assert (p.grad is not None and p.grad.abs().sum() > 0) or n == 0


def test_distinct_rows_matches_torch_unique():
    batch = tokens(MISSIONS * 3, 20)
    keys, rows, inverse = distinct_rows(batch)
    assert keys is not None and len(rows) == 3
    assert torch.equal(rows[inverse], batch[:, : rows.shape[1]])
    assert (batch[:, rows.shape[1] :] == 0).all()  # only all-pad columns were dropped


@pytest.mark.parametrize(
    "optimizer_class",
    [torch.optim.SGD, functools.partial(torch.optim.Adam, fused=True)],  # fused: version counters stay put
    ids=["sgd", "fused_adam"],
)
def test_acting_cache_never_serves_stale_parameters(optimizer_class):
    """Without gradients a generator that follows its optimizer reuses results, until an optimizer
    step changes the weights."""
    torch.manual_seed(0)
    generator = FiLMGenerator(InstructionEncoder(len(VOCAB), "gru", 8, 16), [4])
    optimizer = optimizer_class(generator.parameters(), lr=0.5)
    generator.follow(optimizer)
    batch = tokens(MISSIONS, 12)
    with torch.no_grad():
        cached = generator.embed(batch)
        assert torch.equal(generator.embed(batch), cached)
        assert len(generator._cache) == len({tuple(row) for row in batch.tolist()})  # one per distinct row
    assert torch.allclose(generator.embed(batch), cached)  # the gradient path computes the same values
    generator.embed(batch).pow(2).sum().add(generator.embed(batch).sum()).backward()
    optimizer.step()
    with torch.no_grad():
        after = generator.embed(batch)
    assert not torch.allclose(after, cached)
    assert torch.allclose(after, generator.embed(batch).detach())
    # replacing the data outright (as .to(device) does) also invalidates the cache
    generator.head.bias.data = generator.head.bias.data + 1.0
    with torch.no_grad():
        assert torch.allclose(generator.embed(batch), after + 1.0)


def test_a_switch_to_training_mode_forgets_the_acting_cache():
    """An optimizer the cache does not follow (sb3-contrib replaces the policy's after building
    it) steps between SB3's switch to training mode and back; the next acting batch is fresh."""
    torch.manual_seed(0)
    generator = FiLMGenerator(InstructionEncoder(len(VOCAB), "gru", 8, 16), [4])
    generator.follow(torch.optim.SGD(generator.parameters(), lr=0.5))
    unfollowed = torch.optim.Adam(generator.parameters(), lr=0.5, fused=True)  # versions stay put
    batch = tokens(MISSIONS, 12)
    generator.eval()
    with torch.no_grad():
        cached = generator.embed(batch)
    generator.train()
    (generator.embed(batch) - 1).pow(2).sum().backward()
    unfollowed.step()
    generator.eval()
    with torch.no_grad():
        after = generator.embed(batch)
    assert not torch.allclose(after, cached)
    assert torch.allclose(after, generator.embed(batch).detach())


@pytest.mark.parametrize("kind", ["gru", "conv"])
def test_order_aware_encoders_tell_which_object_moves(kind):
    """ "put the red ball next to the blue key" and its reverse name the same words: only an
    order-aware encoder (not ``bow``) reads them apart."""
    torch.manual_seed(0)
    pair = ["put the red ball next to the blue key", "put the blue key next to the red ball"]
    z = InstructionEncoder(len(VOCAB), kind, word_dim=8, dim=16)(tokens(pair, 12))
    assert not torch.allclose(z[0], z[1], atol=1e-4)
    bow = InstructionEncoder(len(VOCAB), "bow", word_dim=8, dim=16)(tokens(pair, 12))
    assert torch.allclose(bow[0], bow[1], atol=1e-6)
