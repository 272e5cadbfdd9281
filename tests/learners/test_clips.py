"""Clips in the learners: a clip's feature is the mean of its images' features (ORBIT's
``_pool_features``), for the support set (classifier, set encoder) and the queries; an
image shared by clips is embedded once, with the same result as ORBIT's copies of it."""

import pytest
import torch

from litemeta.learners import CNAPs, FineTuner, ProtoNets, SimpleCNAPs
from litemeta.lite import LitePass, LiteSettings
from litemeta.tasks import Task

from .helpers import colour_task, tiny_backbone

# 6 support images as 4 clips of 3 (image 2 in two clips, image 5 repeated as padding)
CLIPS = torch.tensor([[0, 1, 2], [2, 0, 1], [3, 4, 5], [5, 5, 5]])
QUERY_CLIPS = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 2], [3, 3, 3], [3, 4, 5]])


@pytest.fixture(scope="module")
def clip_task():
    support, support_labels, query, query_labels = colour_task(2, 3, 3, seed=4, size=16)
    return support, support_labels, query, query_labels


def test_protonets_prototypes_are_means_of_clip_features(clip_task):
    support, labels, query, _ = clip_task
    torch.manual_seed(0)
    learner = ProtoNets(tiny_backbone()).eval()
    with torch.no_grad():
        classifier = learner.adapt(support, labels, support_clips=CLIPS)
        frames = learner.backbone(support)
        clip_features = frames[CLIPS].mean(dim=1)
        prototypes = torch.stack([clip_features[:2].mean(0), clip_features[2:].mean(0)])
        assert torch.allclose(classifier.prototypes, prototypes, atol=1e-6)
        pooled = learner.backbone(query)[QUERY_CLIPS].mean(dim=1)
        expected = -torch.cdist(pooled, prototypes).pow(2)
        assert torch.allclose(classifier(query, QUERY_CLIPS), expected, atol=1e-4)


@pytest.mark.parametrize("learner_class", [CNAPs, SimpleCNAPs, ProtoNets, FineTuner])
def test_shared_images_give_orbits_result_for_copies(clip_task, learner_class):
    """ORBIT stores every frame of every clip (copies for shared and padded frames) and
    flattens them for the set encoder; indexing each image once must agree."""
    support, labels, query, _ = clip_task
    options = {"encoder_image_size": 32, "encoder_channels": 8}
    torch.manual_seed(0)
    if learner_class in (CNAPs, SimpleCNAPs):
        learner = learner_class(tiny_backbone(), **options)
    elif learner_class is FineTuner:
        learner = FineTuner(tiny_backbone(), steps=3, learn_film=True)
    else:
        learner = learner_class(tiny_backbone())
    learner.eval()
    copies = torch.arange(CLIPS.numel()).view(CLIPS.shape)
    with torch.no_grad():
        shared = learner.adapt(support, labels, support_clips=CLIPS)
        copied = learner.adapt(
            support[CLIPS.flatten()], labels[CLIPS.flatten()], support_clips=copies
        )
        logits = shared(query, QUERY_CLIPS)
        assert logits.shape == (len(QUERY_CLIPS), 2)
        query_copies = torch.arange(QUERY_CLIPS.numel()).view(QUERY_CLIPS.shape)
        assert torch.allclose(logits, copied(query[QUERY_CLIPS.flatten()], query_copies), atol=1e-3)


def test_lite_over_images_of_clips_is_exact_with_every_image_drawn(clip_task):
    support, labels, query, query_labels = clip_task
    torch.manual_seed(0)
    learner = ProtoNets(tiny_backbone()).train()

    def gradient(lite):
        learner.zero_grad()
        classifier = learner.adapt(support, labels, lite=lite, support_clips=CLIPS)
        loss = torch.nn.functional.cross_entropy(
            classifier(query, QUERY_CLIPS), query_labels[QUERY_CLIPS[:, -1]]
        )
        loss.backward()
        return torch.cat([p.grad.flatten() for p in learner.parameters() if p.grad is not None])

    exact = gradient(None)
    full = gradient(LitePass(LiteSettings(h=len(support)), torch.Generator().manual_seed(1)))
    assert torch.allclose(full, exact, atol=1e-6)


def test_clips_of_mixed_classes_are_refused(clip_task):
    support, labels, query, query_labels = clip_task
    with pytest.raises(ValueError, match=r"support clips \[0\] mix images of different classes"):
        Task(support, labels, query, query_labels, ["a", "b"], support_clips=torch.tensor([[2, 3]]))
    with pytest.raises(ValueError, match=r"query_clips index images 0\.\.5, found 0\.\.6"):
        Task(support, labels, query, query_labels, ["a", "b"], query_clips=torch.tensor([[0, 6]]))


@pytest.mark.parametrize("rows_with_queries", [False, True])
def test_a_lite_step_on_a_clip_task_has_the_clip_loss_gradient(clip_task, rows_with_queries):
    from litemeta.training import backward_task

    support, labels, query, query_labels = clip_task
    torch.manual_seed(0)
    learner = ProtoNets(tiny_backbone()).train()
    task = Task(
        support,
        labels,
        query,
        query_labels,
        ["a", "b"],
        support_clips=CLIPS,
        query_clips=QUERY_CLIPS,
    )
    learner.zero_grad()
    classifier = learner.adapt(support, labels, support_clips=CLIPS)
    loss = torch.nn.functional.cross_entropy(
        classifier(query, QUERY_CLIPS), query_labels[QUERY_CLIPS[:, -1]]
    )
    loss.backward()
    exact = [p.grad.clone() for p in learner.parameters()]
    learner.zero_grad()
    lite = LiteSettings(h=len(support), rows_with_queries=rows_with_queries)
    generator = torch.Generator().manual_seed(0)
    outcome = backward_task(learner, task, lite=lite, generator=generator, query_batch_size=2)
    assert outcome.loss == pytest.approx(loss.item(), rel=1e-5)
    for grad, expected in zip((p.grad for p in learner.parameters()), exact, strict=True):
        assert torch.allclose(grad, expected, atol=1e-5)
