"""``python -m ltx2_nodes <command>``: headless entry points sharing the nodes' code path."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import LTX2Error
from . import inspect_cmd

COMMANDS = {"inspect": inspect_cmd}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ltx2_nodes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_parser(sub.add_parser(name, help=module.HELP, description=module.HELP))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command].run(args) or 0
    except LTX2Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
