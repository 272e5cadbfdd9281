"""Few-shot learners: adapt to a support set, classify queries; meta-trained with LITE.

Every module of this package is imported with it, and every learner class that sets a
``name`` registers itself in :data:`LEARNERS`: a new learner is one new file here.
"""

from litemeta.learners.backbone_learner import BackboneLearner
from litemeta.learners.base import FewShotLearner, TaskClassifier
from litemeta.learners.cnaps import CNAPs
from litemeta.learners.cost import AdaptationCost
from litemeta.learners.factory import (
    build_learner,
    learner_from_config,
    load_learner,
    save_learner,
)
from litemeta.learners.finetuner import FineTuner
from litemeta.learners.protonets import ProtoNets
from litemeta.learners.registry import LEARNERS, discover_learners, register_learner
from litemeta.learners.simple_cnaps import SimpleCNAPs

discover_learners()

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
    "discover_learners",
    "learner_from_config",
    "load_learner",
    "register_learner",
    "save_learner",
]
