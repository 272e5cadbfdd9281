"""The ``litemeta`` command line (:func:`main`), one module per command group."""

from litemeta.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
