"""The ``albatross`` command: ``up``, ``schemas``, ``config`` and ``projector rebuild``.

Subcommands import their modules only when chosen, so ``albatross config`` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="albatross", description="Albatross platform.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="run NATS, PostgreSQL and every service on this machine")
    # Delegated subcommands take their own arguments (and -h): they reach them unparsed.
    commands.add_parser("schemas", add_help=False,
                        help="generate or check the JSON Schemas and AsyncAPI document")
    commands.add_parser("config", help="print the ALBATROSS_* settings table (Markdown)")
    projector = commands.add_parser("projector", help="projector maintenance")
    projector_commands = projector.add_subparsers(dest="projector_command", required=True,
                                                  metavar="COMMAND")
    projector_commands.add_parser("rebuild", add_help=False,
                                  help="rebuild the read models from the event streams")
    return parser


def _load(target: str) -> Callable[..., Any] | None:
    """``module:function`` imported now, or ``None`` when that module does not exist."""
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return None  # the module itself (or its package) is missing, not a dependency
        raise
    function: Callable[..., Any] | None = getattr(module, function_name, None)
    return function


def _delegate(target: str, what: str, args: Sequence[str]) -> int:
    """Run a subcommand owned by another module with its own arguments as ``sys.argv``."""
    function = _load(target)
    if function is None:
        sys.stderr.write(f"albatross: {what} is not available in this build ({target} "
                         "not found)\n")
        return EXIT_USAGE
    sys.argv = [f"albatross {what}", *args]
    result = function()
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    parsed, extra = parser.parse_known_args(argv)
    if extra and parsed.command not in {"schemas", "projector"}:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if parsed.command == "config":
        from albatross.config import markdown_table

        sys.stdout.write(markdown_table() + "\n")
        sys.stdout.flush()
        return
    if parsed.command == "up":
        from albatross.services.up import main as up_main

        up_main()
        return
    if parsed.command == "schemas":
        sys.exit(_delegate("albatross.schemas_cli:main", "schemas", extra))
    if parsed.command == "projector":
        sys.exit(_delegate("albatross.services.projector.rebuild:main", "projector rebuild",
                           extra))
    raise AssertionError(f"unhandled command {parsed.command!r}")


if __name__ == "__main__":
    main()
