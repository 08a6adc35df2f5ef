"""Command line: run (default), classify, report, check-config, check-rules, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exporter import __version__

SUBCOMMANDS = ("run", "classify", "report", "check-config", "check-rules", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmail-rejection-exporter",
        description="Classify Gmail rejections in MTA logs and export them as Prometheus metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from exporter import daemon, demo, offline

    daemon.add_arguments(sub.add_parser("run", help="follow MTA logs and serve metrics (default)"))
    offline.add_classify_arguments(
        sub.add_parser("classify", help="print one JSON object per line about a delivery to Google")
    )
    offline.add_report_arguments(sub.add_parser("report", help="summarise Google rejections in log files"))
    daemon.add_check_config_arguments(
        sub.add_parser("check-config", help="validate an exporter config file (and the rules it names)")
    )
    offline.add_check_rules_arguments(sub.add_parser("check-rules", help="validate a rules file"))
    demo.add_arguments(sub.add_parser("demo", help="run the exporter on a demo log that keeps growing"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in SUBCOMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "run")
    parser = build_parser()
    args = parser.parse_args(args_list)
    handler = args.handler
    result: int = handler(args)
    return result
