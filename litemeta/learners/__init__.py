"""Few-shot learners: adapt to a support set, classify queries; meta-trained with LITE."""

from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.base import FewShotLearner, TaskClassifier
from litemeta.learners.cnaps import CNAPs
from litemeta.learners.cost import AdaptationCost
from litemeta.learners.factory import (
    LEARNERS,
    build_learner,
    learner_from_config,
    load_learner,
    save_learner,
)
from litemeta.learners.finetuner import FineTuner
from litemeta.learners.protonets import ProtoNets
from litemeta.learners.simple_cnaps import SimpleCNAPs

__all__ = [
    "LEARNERS",
    "AdaptationCost",
    "BackboneLearner",
    "CNAPs",
    "FewShotLearner",
    "FineTuner",
    "ProtoNets",
    "SimpleCNAPs",
    "TaskClassifier",
    "build_learner",
    "learner_from_config",
    "load_learner",
    "save_learner",
]
