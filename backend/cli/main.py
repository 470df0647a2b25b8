"""The `prunescape` command: one entry point, subcommands registered by the modules that own them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# Each module exposes `register(subparsers)` and sets `func` on its parsers. Imports stay light:
# handlers import torch / the web stack only when they run.
_REGISTRARS: list[str] = [
    "workers.engine.cli",  # measure, train, prune, quantise, scan
    "backend.analysis.cli",  # analyse
    "backend.cli.admin",  # migrate, token
    "backend.cli.service",  # serve, worker
    "backend.cli.client",  # submit, studies, status, cancel, extend, export (over the REST API)
]


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="prunescape",
        description="See how compressing a CNN moves its learning-rate x weight-decay landscape.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _REGISTRARS:  # a module that does not import is a bug: it fails loudly here
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (CliError, ValueError, FileNotFoundError) as exc:
        # Domain errors (DataError, SpecError, ...) subclass ValueError so they land here.
        print(f"prunescape {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # `python -m backend.cli.main`: run the imported module's main, whose CliError is the class the
    # handlers raise (this file as __main__ would define a second CliError that catches nothing).
    from backend.cli.main import main as _main

    sys.exit(_main())
