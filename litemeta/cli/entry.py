"""The ``litemeta`` command: one argparse sub-parser per command group.

Each group (a module of this package) registers itself with an ``add_<group>_commands
(subparsers)`` function and sets ``handler`` on its parsers; ``main`` only dispatches.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence

from litemeta.cli.bench import add_bench_commands
from litemeta.cli.convert import add_convert_commands
from litemeta.cli.data import add_data_commands
from litemeta.cli.experiment import add_experiment_commands
from litemeta.cli.personalise import add_personalise_commands

DEBUG_VARIABLE = "LITEMETA_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litemeta", description="Meta-train few-shot image classifiers with LITE."
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error (also {DEBUG_VARIABLE}=1; accepted anywhere)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_experiment_commands(subparsers)
    add_personalise_commands(subparsers)
    add_data_commands(subparsers)
    add_bench_commands(subparsers)
    add_convert_commands(subparsers)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may come before, between or after flags."""
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


#: Errors that carry a message meant for the user; anything else is reported with its type.
_EXPECTED = (OSError, ValueError, RuntimeError, LookupError)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, _EXPECTED) and text:
        return text
    name = type(error).__name__
    return f"{name}: {text} (rerun with --debug for the traceback)" if text else name


def _hint(error: Exception, args: argparse.Namespace) -> str:
    """What the command offers for an unreadable image, after its message (not when it was
    already skipping them)."""
    from litemeta.data.images import ImageLoadError, NoReplacementError

    hint = getattr(args, "unreadable_hint", None)
    unreadable = isinstance(error, ImageLoadError) and not isinstance(error, NoReplacementError)
    return f" ({hint})" if hint and unreadable else ""


def _one_line_warning(message: Warning | str, *_where: object, **_line: object) -> str:
    return f"litemeta: warning: {' '.join(str(message).split())}\n"


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` (``kill``, a scheduler ending a job), raised like Ctrl-C so that every
    ``finally`` runs: loader workers stop, the output directory's lock is released."""


def _raise_on_sigterm() -> Callable[[], None]:
    """Turn ``SIGTERM`` into :class:`Terminated` in this process (a forked loader worker
    still dies of it at once); returns what puts the previous handler back."""
    owner = os.getpid()

    def terminate(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it outright
        if os.getpid() != owner:
            os.kill(os.getpid(), signum)
            return
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. An error prints one line (``litemeta: error: ...``) and returns 1,
    Ctrl-C returns 130 and ``SIGTERM`` 143; with ``--debug`` or ``LITEMETA_DEBUG=1`` the
    traceback is shown."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    args = _parse(build_parser(), [a for a in argv if a != "--debug"])
    library_format = warnings.formatwarning
    if not debug:  # one line, like the errors; --debug keeps where the warning came from
        warnings.formatwarning = _one_line_warning
    restore_sigterm = _raise_on_sigterm()
    try:
        args.handler(args)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        detail = " ".join(str(interrupt).split())
        terminated = isinstance(interrupt, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"litemeta: {what}{': ' + detail if detail else ''}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as error:
        if debug:
            raise
        print(f"litemeta: error: {_one_line(error)}{_hint(error, args)}", file=sys.stderr)
        return 1
    finally:
        restore_sigterm()
        warnings.formatwarning = library_format
    return 0
