"""Command line: run (default), classify, report, check-config, check-rules, healthcheck, demo."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from exporter import __version__
from exporter.errors import did_you_mean

# Each subcommand's arguments come from the module that runs it, imported only when that subcommand runs:
# `report` and `classify` need neither the web server nor prometheus_client nor watchdog.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("daemon", "add_arguments", "follow MTA logs and serve metrics (default)"),
    "classify": (
        "offline",
        "add_classify_arguments",
        "print one JSON object per line about a delivery to Google",
    ),
    "report": ("offline", "add_report_arguments", "summarise Google rejections in log files"),
    "check-config": (
        "daemon",
        "add_check_config_arguments",
        "validate an exporter config file and its rules",
    ),
    "check-rules": ("offline", "add_check_rules_arguments", "validate rules files"),
    "healthcheck": (
        "healthcheck",
        "add_arguments",
        "ask the exporter that the same config and flags describe whether it is healthy (exit 0 or 1)",
    ),
    "demo": ("demo", "add_arguments", "run the exporter on a demo log that keeps growing"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported to fill in its arguments."""
    parser = argparse.ArgumentParser(
        prog="gmail-rejection-exporter",
        description="Classify Gmail rejections in MTA logs and export them as Prometheus metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, function, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text)
        if name == command:
            getattr(importlib.import_module(f"exporter.{module}"), function)(command_parser)
            parser.set_defaults(command_parser=command_parser)
    return parser


def _unrecognised(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> str:
    options = [option for action in parser._actions for option in action.option_strings]
    words = [
        word + (did_you_mean(word.partition("=")[0], options) if word.startswith("-") else "")
        for word in unknown
    ]
    return f"unrecognized arguments: {' '.join(words)}"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    top_level = ("-h", "--help", "--version")
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in top_level):
        args_list.insert(0, "run")
    parser = build_parser(args_list[0] if args_list[0] in COMMANDS else None)
    if args_list[0] not in COMMANDS and args_list[0] not in top_level:
        # `run` takes no word arguments, so a first word that is no command is a mistyped one.
        hint = (
            did_you_mean(args_list[0], COMMANDS)
            or f" (commands: {', '.join(COMMANDS)}; a log to follow goes after --log.path)"
        )
        parser.error(f"unknown command {args_list[0]!r}{hint}")
    args, unknown = parser.parse_known_args(args_list)
    if unknown:
        args.command_parser.error(_unrecognised(args.command_parser, unknown))
    handler = args.handler
    result: int = handler(args)
    return result
