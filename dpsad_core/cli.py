"""``dpsad-core``: the headless command line over dpsad_core.

Every user mistake ends as one line on stderr and an exit code per error class (see errors.py);
set ``DPSAD_DEBUG=1`` to see tracebacks. Long work shows a progress bar on stderr; ``--json`` prints
one JSON object on the last line of stdout for scripts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from dpsad_core.commands import COMMAND_MODULES
from dpsad_core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, classify


def main(argv: list[str] | None = None) -> int:
    """Run one command; the only place where exceptions become exit codes (table: errors.EXIT_CODES)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # typed options (commands/options.py) raise ConfigError here
        args.argv = list(sys.argv[1:] if argv is None else argv)  # what --nproc hands to its workers
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("dpsad-core: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # last line of defence: one line, not a traceback
        known = classify(error)  # our errors, and what the OS says (disk full, read-only, ...)
        if known is not None:
            if os.environ.get("DPSAD_DEBUG") and known is not error:
                raise
            print(f"dpsad-core: error: {known}", file=sys.stderr)
            return known.exit_code
        if os.environ.get("DPSAD_DEBUG"):
            raise
        print(f"dpsad-core: internal error: {type(error).__name__}: {error} "
              "(set DPSAD_DEBUG=1 to see the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpsad-core",
        description="Turn a private labelled image collection into a differentially private image generator "
                    "and synthetic data, with a privacy guarantee that covers every part that reads the data.",
        epilog="Start with: dpsad-core demo   (trains on a small digits dataset that ships with scikit-learn)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"dpsad_core.commands.{name}").register(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
