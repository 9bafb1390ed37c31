"""Command line: `python -m renderers show --model PATH [--renderer NAME] conversation.json`."""

import argparse
import sys

from renderers.show import add_show_arguments, run_show


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m renderers", description="Inspect how conversations are rendered.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_show_arguments(commands.add_parser("show", help="print a conversation's tokens, trained ones highlighted"))
    args = parser.parse_args(argv)
    return run_show(args)


if __name__ == "__main__":
    sys.exit(main())
