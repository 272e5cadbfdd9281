"""CNAPs-style task adaptation: the set encoder, the FiLM generator and its regulariser."""

import pytest
import torch

from litemeta.backbones import normalise_images
from litemeta.checkpoint import ModelMismatchError, load_model_weights, save_model
from litemeta.config import ConfigError
from litemeta.learners import build_learner, load_learner, save_learner
from litemeta.learners.task_adaptation import FilmGenerator, SetEncoder, lite_test_chunks
from litemeta.lite import LitePass, LiteSettings, RowCouplingError
from litemeta.training import TrainingConfig
from litemeta.training.trainer import Trainer

from .helpers import BACKBONE_SIZE, meta_train

TINY_ENCODER = {"encoder_image_size": 32, "encoder_channels": 8}


@pytest.fixture(params=["cnaps", "simple_cnaps"])
def learner(request):
    torch.manual_seed(0)
    return build_learner(request.param, image_size=BACKBONE_SIZE, **TINY_ENCODER)


def test_untrained_generators_give_near_identity_film_and_the_regularizer_on_the_scales(
    learner, task
):
    """LITE's generators: gamma = 1 + r_gamma * g(z), beta = r_beta * h(z), with regulariser
    vectors r drawn from N(0, 1e-3^2); the loss term is 1e-3 * sum r^2 (LITE's run.py)."""
    support, support_labels, *_ = task
    with torch.no_grad():
        classifier = learner.adapt(support, support_labels)
        embedding = learner.set_encoder(support).mean(dim=0)
    generator = learner.film_generator
    for index, (gamma, beta) in enumerate(classifier.film):
        g = generator.gamma_generators[index](embedding)
        h = generator.beta_generators[index](embedding)
        torch.testing.assert_close(gamma, 1 + g * generator.gamma_regularizers[index])
        torch.testing.assert_close(beta, h * generator.beta_regularizers[index])
        assert (gamma - 1).abs().max() < 0.05 and beta.abs().max() < 0.05
    scales = torch.cat([*generator.gamma_regularizers, *generator.beta_regularizers])
    assert 0.5e-3 < scales.std().item() < 2e-3
    assert classifier.regularizer.item() == pytest.approx(1e-3 * scales.square().sum().item())


def test_film_differs_between_tasks(learner, task):
    meta_train(learner, steps=2, h=5)
    support, support_labels, *_ = task
    with torch.no_grad():
        first = learner.adapt(support, support_labels).film
        second = learner.adapt(255 - support, support_labels).film
    assert not torch.allclose(first[0][0], second[0][0])


def test_the_set_encoder_embeds_each_image_on_its_own():
    torch.manual_seed(0)
    encoder = SetEncoder(image_size=32, channels=8).eval()
    images = torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8)
    with torch.no_grad():
        batch = encoder(images)
        alone = torch.cat([encoder(image[None]) for image in images])
    assert batch.shape == (5, 8)
    torch.testing.assert_close(batch, alone)
    with pytest.raises(ValueError, match="encoder_image_size must be at least 32, got 16"):
        SetEncoder(image_size=16)


def test_generated_film_fits_every_layer_and_the_regulariser_is_a_sum_of_squares():
    torch.manual_seed(0)
    generator = FilmGenerator([4, 6, 2], embedding_dim=5)
    film = generator(torch.randn(5))
    assert [(gamma.shape, beta.shape) for gamma, beta in film] == [((c,), (c,)) for c in (4, 6, 2)]
    by_hand = sum(
        float((r.detach() ** 2).sum())
        for r in [*generator.gamma_regularizers, *generator.beta_regularizers]
    )
    assert generator.regularization_term().item() == pytest.approx(by_hand)
    with torch.no_grad():
        for scale in generator.gamma_regularizers:
            scale.zero_()
        for gamma, _ in generator(torch.randn(5)):
            assert torch.equal(gamma, torch.ones_like(gamma))  # r_gamma = 0: identity scale


def test_the_task_film_does_not_depend_on_the_order_of_the_support_set(learner, task):
    support, support_labels, *_ = task
    order = torch.randperm(len(support_labels), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        film = learner.adapt(support, support_labels).film
        shuffled = learner.adapt(support[order], support_labels[order]).film
    for (gamma, beta), (gamma2, beta2) in zip(film, shuffled, strict=True):
        torch.testing.assert_close(gamma, gamma2)
        torch.testing.assert_close(beta, beta2)


def test_each_generator_is_lites_dense_block_on_the_task_embedding():
    """LITE's features.py: Linear(e, e) -> LayerNorm(e) -> ReLU -> Linear(e, c), computed
    here by hand from the layers' weights."""
    torch.manual_seed(0)
    e, channels = 5, [4, 7]
    generator = FilmGenerator(channels, embedding_dim=e)
    z = torch.randn(e)
    with torch.no_grad():
        film = generator(z)
        for index, c in enumerate(channels):
            for (first, norm, _, last), scale, offset in (
                (generator.gamma_generators[index], generator.gamma_regularizers[index], 1),
                (generator.beta_generators[index], generator.beta_regularizers[index], 0),
            ):
                assert first.weight.shape == (e, e) and last.weight.shape == (c, e)
                hidden = first.weight @ z + first.bias
                hidden = (hidden - hidden.mean()) / torch.sqrt(hidden.var(unbiased=False) + 1e-5)
                hidden = torch.relu(hidden * norm.weight + norm.bias)
                expected = offset + scale * (last.weight @ hidden + last.bias)
                generated = film[index][0] if offset else film[index][1]
                torch.testing.assert_close(generated, expected)


def _earlier_generator(embedding_dim: int, channels: int) -> torch.nn.Sequential:
    """The generator litemeta built before LITE's form: Linear(e, c) - LayerNorm(c) - ReLU -
    Linear(c, c)."""
    return torch.nn.Sequential(
        torch.nn.Linear(embedding_dim, channels),
        torch.nn.LayerNorm(channels),
        torch.nn.ReLU(),
        torch.nn.Linear(channels, channels),
    )


def test_a_checkpoint_with_the_earlier_generator_is_refused_saying_why(tmp_path):
    torch.manual_seed(0)
    learner = build_learner("simple_cnaps", "resnet18", image_size=32, pretrained=False)
    generator = learner.film_generator
    for index, layer in enumerate(learner.backbone.film_layers):
        generator.gamma_generators[index] = _earlier_generator(64, layer.channels)
        generator.beta_generators[index] = _earlier_generator(64, layer.channels)
    save_learner(learner, tmp_path / "earlier.pt")
    with pytest.raises(ModelMismatchError, match=r"earlier FiLM generator.*meta-train.*convert"):
        load_learner(tmp_path / "earlier.pt")


def test_a_generator_saved_for_other_film_layers_is_refused_naming_the_placement():
    torch.manual_seed(0)
    sixteen = FilmGenerator([8] * 16, embedding_dim=4)
    eighteen = FilmGenerator([8] * 18, embedding_dim=4)
    with pytest.raises(ModelMismatchError, match=r"saved for 16 FiLM layers.*has 18.*placement"):
        eighteen.load_state_dict(sixteen.state_dict())
    eighteen.load_state_dict(FilmGenerator([8] * 18, embedding_dim=4).state_dict())


def test_the_set_encoder_can_see_the_backbones_image_size_and_reloads_so(tmp_path, task):
    torch.manual_seed(0)
    learner = build_learner(
        "simple_cnaps", image_size=48, encoder_image_size="backbone", encoder_channels=8
    )
    assert learner.set_encoder.image_size == learner.backbone.image_size == 48
    assert learner.config()["options"]["encoder_image_size"] == "backbone"
    save_learner(learner, tmp_path / "learner.pt")
    loaded = load_learner(tmp_path / "learner.pt")
    assert loaded.set_encoder.image_size == 48 and loaded.config() == learner.config()
    support, support_labels, query, _ = task
    with torch.no_grad():
        expected = learner.adapt(support, support_labels)(query)
        torch.testing.assert_close(loaded.adapt(support, support_labels)(query), expected)
    with pytest.raises(ConfigError, match="encoder_image_size"):
        build_learner("cnaps", image_size=48, encoder_image_size="full")


def test_the_frozen_batch_norm_encoder_is_the_references_layer_run_with_stored_statistics():
    """LITE's and ORBIT's set encoders use BatchNorm2d; "frozen_batch" keeps its tensors and
    normalises every image with the stored running statistics, in train() as in eval()."""
    torch.manual_seed(0)
    encoder = SetEncoder(image_size=32, channels=8, norm="frozen_batch").train()
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 5 and not any(norm.training for norm in norms)
    assert set(norms[0].state_dict()) == {
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"
    }  # fmt: skip
    with torch.no_grad():
        for norm in norms:
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    stored = [norm.running_mean.clone() for norm in norms]
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        batch = encoder(images)
        alone = torch.cat([encoder(image[None]) for image in images])
        # the first block by hand: (x - mean) / sqrt(var + eps) * weight + bias
        conv, norm = encoder.layers[0], norms[0]
        x = conv((images.float() / 255 - 0.5) / 0.5)
        by_hand = (x - norm.running_mean[:, None, None]) / torch.sqrt(
            norm.running_var[:, None, None] + norm.eps
        ) * norm.weight[:, None, None] + norm.bias[:, None, None]
        torch.testing.assert_close(encoder.layers[1](x), by_hand)
    torch.testing.assert_close(batch, alone)  # each image on its own, as LITE needs
    assert all(torch.equal(norm.running_mean, old) for norm, old in zip(norms, stored, strict=True))


def test_a_learner_with_the_frozen_batch_norm_encoder_meta_trains_with_lite(task):
    torch.manual_seed(0)
    learner = build_learner(
        "cnaps", image_size=BACKBONE_SIZE, encoder_norm="frozen_batch", **TINY_ENCODER
    )
    assert learner.config()["options"]["encoder_norm"] == "frozen_batch"
    losses = meta_train(learner, steps=2, h=5)  # LITE refuses train-mode batch statistics
    assert all(torch.isfinite(torch.tensor(losses)))
    default = build_learner("cnaps", image_size=BACKBONE_SIZE, **TINY_ENCODER)
    # the default, GroupNorm, is what learners saved before this option were built with
    assert "encoder_norm" not in default.config()["options"]
    assert default.options["encoder_norm"] == "group"


def test_lite_test_chunks_are_lites_batches_of_support_images():
    """LITE's model.py build_task_representation_by_batch: ceil(n / 40) batches, each
    [40 i, 40 i + 40) cut at n, extended to n when it would end at n - 1."""
    assert lite_test_chunks(12, 40) == [(0, 12)]
    assert lite_test_chunks(80, 40) == [(0, 40), (40, 80)]
    assert lite_test_chunks(79, 40) == [(0, 40), (40, 79)]
    assert lite_test_chunks(81, 40) == [(0, 40), (40, 81), (80, 81)]  # image 80 twice
    assert lite_test_chunks(41, 40) == [(0, 41), (40, 41)]
    assert lite_test_chunks(1, 40) == [(0, 1)]


def _batch_statistics_encoding(encoder: SetEncoder, images: torch.Tensor) -> torch.Tensor:
    """The set encoder by hand with train-mode BatchNorm: each channel normalised with the
    mean and biased variance of ``images``' values at every position."""
    x = normalise_images(images, encoder.image_size, encoder.mean, encoder.std)
    for conv, norm in zip(encoder.layers[0:20:4], encoder.layers[1:20:4], strict=True):
        x = conv(x)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).square().mean(dim=(0, 2, 3), keepdim=True)
        x = (x - mean) / (var + norm.eps).sqrt() * norm.weight.view(1, -1, 1, 1)
        x = torch.nn.functional.max_pool2d((x + norm.bias.view(1, -1, 1, 1)).clamp(min=0), 2)
    return x.mean(dim=(2, 3))


def test_the_batch_norm_encoder_normalises_each_of_lites_batches_with_its_statistics(task):
    torch.manual_seed(0)
    learner = build_learner(
        "simple_cnaps", image_size=BACKBONE_SIZE, encoder_norm="batch", chunk_size=5,
        **TINY_ENCODER,
    ).eval()  # fmt: skip
    encoder = learner.set_encoder
    assert all(m.training for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stored = encoder.layers[1].running_mean.clone()
    # 11 images in LITE's batches of 5: [0, 5), [5, 11) (not [5, 10)) and [10, 11) again.
    support_labels = task[1][:11]
    support = torch.randint(0, 256, (11, 3, 40, 40), dtype=torch.uint8)
    embeddings = []  # what the FiLM generator is given: the mean of the rows
    learner.film_generator.register_forward_pre_hook(lambda _, args: embeddings.append(args[0]))
    with torch.no_grad():
        learner.adapt(support, support_labels)
        chunks = [(0, 5), (5, 11), (10, 11)]
        rows = [_batch_statistics_encoding(encoder, support[a:b]) for a, b in chunks]
        per_image = torch.cat([_batch_statistics_encoding(encoder, i[None]) for i in support])
    torch.testing.assert_close(embeddings[0], torch.cat(rows).mean(dim=0))
    assert not torch.allclose(embeddings[0], per_image.mean(dim=0), atol=1e-3)  # batches matter
    assert torch.equal(encoder.layers[1].running_mean, stored)  # never updated


def test_meta_training_refuses_the_batch_norm_encoder_before_training_saying_why(task):
    torch.manual_seed(0)
    learner = build_learner("cnaps", image_size=BACKBONE_SIZE, encoder_norm="batch", **TINY_ENCODER)
    with pytest.raises(ValueError, match=r"encoder_norm='batch'.*encoder_norm=frozen_batch"):
        Trainer(TrainingConfig(), learner, train_tasks=[])
    support, support_labels, *_ = task
    # LITE's own check refuses it too, with the same advice.
    with pytest.raises(RowCouplingError, match=r"set encoder of encoder_norm='batch'.*frozen_b"):
        learner.train().adapt(support, support_labels, lite=LitePass(LiteSettings(h=4)))


def test_a_training_checkpoint_with_the_earlier_generator_is_refused_saying_why(tmp_path):
    """The path of `litemeta evaluate --checkpoint` and of a resumed run: the description
    matches (the generator's form is not an option), the weights do not."""
    torch.manual_seed(0)
    earlier = build_learner("cnaps", "resnet18", image_size=32, pretrained=False)
    generator = earlier.film_generator
    for index, layer in enumerate(earlier.backbone.film_layers):
        generator.gamma_generators[index] = _earlier_generator(64, layer.channels)
    save_model(tmp_path / "last.pt", earlier, earlier.config())
    learner = build_learner("cnaps", "resnet18", image_size=32, pretrained=False)
    with pytest.raises(ModelMismatchError, match="earlier FiLM generator"):
        load_model_weights(learner, tmp_path / "last.pt", learner.config())
