"""The ``tmi`` command line. Each area registers its subcommands from its own module.

Operators script against these contracts (``tmi deid``, ``tmi stack status --json``, ``tmi download``,
``tmi tokens``): change them only compatibly. Exit codes: 0 success, 1 the work finished with
failures the report explains, 2 usage or configuration error, 3 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Subcommand modules, each exposing ``register(subparsers) -> None``; a module registers one or more
# subcommands whose parsers set ``func`` (``args -> int``).
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "adapters.cli.deid",
    "adapters.cli.stack",
    "adapters.cli.worker",
    "adapters.cli.demo",
    "adapters.cli.tokens",
    "adapters.cli.download",
)

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="tmi", description="Traceable Medical Image de-identification")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tmi`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from tmi.errors import ConfigurationError

    try:
        return int(args.func(args))
    except ConfigurationError as exc:
        print(f"tmi: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tmi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
