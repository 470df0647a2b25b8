"""What the engine's subcommands share: the one-line argument error, parsing helpers, output."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from workers.engine.errors import EngineError

if TYPE_CHECKING:
    from workers.engine.data import Data


class ArgumentError(EngineError):
    """A command-line argument with a value the command cannot use; the message names it."""


def one_line_errors(parser: argparse.ArgumentParser, command: str) -> None:
    def error(message: str) -> NoReturn:
        print(f"prunescape {command}: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]


def add_command(subparsers: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    one_line_errors(parser, name)
    return parser


# --- argument parsing helpers --------------------------------------------------------------------


def parse_input_shape(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"\s*(\d+)x(\d+)x(\d+)\s*", text or "")
    if not match or min(int(g) for g in match.groups()) < 1:
        raise ArgumentError(f"--input must look like 3x32x32 (C x H x W, positive), got {text!r}")
    return int(match[1]), int(match[2]), int(match[3])


def parse_fractions(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ArgumentError(
            f"--fractions must be comma-separated numbers like 0,0.5,0.9, got {text!r}"
        ) from None
    if not values or any(not 0 <= v < 1 for v in values):
        raise ArgumentError(f"--fractions must be numbers in [0, 1), got {text!r}")
    return values


def positive(value: int | float | None, flag: str) -> None:
    if value is not None and value <= 0:
        raise ArgumentError(f"{flag} must be > 0, got {value}")


def emit(args: argparse.Namespace, payload: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print("\n".join(lines))


def load_data(name: str, path: str | None) -> Data:
    from workers.engine.data import DatasetSpec, load_dataset

    return load_dataset(DatasetSpec(name=name, path=path))
