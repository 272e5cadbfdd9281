"""One LITE meta-training step per learner on a 200-image task of 224 px images with the
pretrained default backbone, on the CPU."""

import time

import pytest
import torch

from litemeta.learners import LEARNERS, build_learner
from litemeta.lite import LitePass, LiteSettings

from .helpers import colour_task


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_one_lite_step_on_200_images_of_224_px(name):
    support, support_labels, query, query_labels = colour_task(way=5, shots=40, queries=2, size=224)
    assert support.shape == (200, 3, 224, 224)
    learner = build_learner(name, chunk_size=50).train()  # efficientnet_lite0, pretrained, 224 px
    lite = LitePass(LiteSettings(h=8), torch.Generator().manual_seed(0))
    start = time.perf_counter()
    classifier = learner.adapt(support, support_labels, lite=lite)
    loss = torch.nn.functional.cross_entropy(classifier(query), query_labels)
    loss = loss + classifier.regularizer
    assert torch.isfinite(loss)
    if learner.meta_trainable:
        optimizer = torch.optim.Adam(learner.parameter_groups(1e-3))
        before = [p.detach().clone() for group in optimizer.param_groups for p in group["params"]]
        loss.backward()
        optimizer.step()
        after = [p for group in optimizer.param_groups for p in group["params"]]
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    print(f"{name}: one step in {time.perf_counter() - start:.1f} s")
