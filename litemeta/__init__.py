"""litemeta: meta-train few-shot image classifiers on large tasks of large images with LITE.

LITE: Bronskill, Massiceti, Patacchiola, Hofmann, Nowozin, Turner. "Memory Efficient
Meta-Learning with Large Images", NeurIPS 2021.
"""

__version__ = "0.1.0"
