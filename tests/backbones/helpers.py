"""Sizes shared by the backbone tests."""

#: Side of the small backbones' images.
SMALL = 32
