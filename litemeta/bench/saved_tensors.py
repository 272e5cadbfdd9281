"""The saved-tensor meter, where the benchmarks have always imported it from; it lives in
:mod:`litemeta.training.saved_tensors`, where the memory planner uses it too."""

from litemeta.training.saved_tensors import SavedTensorMeter

__all__ = ["SavedTensorMeter"]
