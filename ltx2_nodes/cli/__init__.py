"""``python -m ltx2_nodes <command>``: headless entry points sharing the nodes' code path.

Exit codes (see :class:`common.ExitCode`): 0 ok · 1 a node or a job failed · 2 usage or input error, nothing
ran · 3 ComfyUI server unreachable · 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import distributed
from ..errors import LTX2Error
from . import demo_cmd, generate_cmd, inspect_cmd, queue_cmd, run_cmd
from .common import ArgumentParser, ExitCode, sigterm_interrupts
from .launch import torchrun_process

COMMANDS = {"run": run_cmd, "queue": queue_cmd, "generate": generate_cmd, "demo-models": demo_cmd,
            "inspect": inspect_cmd}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m ltx2_nodes", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_parser(sub.add_parser(name, help=module.HELP, description=module.HELP))
    verbose = False
    try:
        args = parser.parse_args(argv)  # bad option values: UsageError from the type= functions (cli.common)
        verbose = args.verbose
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
        with sigterm_interrupts(), torchrun_process(args.command):
            return COMMANDS[args.command].run(args) or ExitCode.OK
    except LTX2Error as exc:
        if verbose and getattr(exc, "details", ""):
            print(exc.details, file=sys.stderr, end="")
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return getattr(exc, "exit_code", ExitCode.USAGE)
    except KeyboardInterrupt:
        why = ("Ctrl-C or SIGTERM; under torchrun also: another rank failed and torchrun stopped this one, see "
               "its error" if distributed.launched_size() > 1 else "Ctrl-C or SIGTERM")
        print(f"interrupted ({why}); no partial file was kept; run the same command again (a queue "
              "resumes where it stopped)", file=sys.stderr)
        return ExitCode.INTERRUPTED
