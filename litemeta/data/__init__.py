"""Datasets and episode samplers: class folders, the built-in emoji set, ORBIT and
Meta-Dataset records. No model code lives here."""
