"""The MTAs the queue reader knows and the programs that name them: what the configuration checks, without
loading the listing parsers and the process machinery of command.py."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from typing import Final

MTAS: Final = ("auto", "postfix", "exim", "sendmail", "opensmtpd", "none")
"""--queue.mta: auto picks the MTA whose queue command is installed; none turns the queue reader off."""
_PROGRAMS: Final = {"postqueue": "postfix", "exim": "exim", "exim4": "exim", "smtpctl": "opensmtpd"}
"""Programs that name their MTA when they appear in --queue.command (mailq and sendmail name none: every MTA
installs them)."""


def mta_of_command(argv: Sequence[str]) -> str | None:
    """The MTA a --queue.command lists, when one of its words names it (`sudo -n postqueue -j`)."""
    for word in argv:
        mta = _PROGRAMS.get(os.path.basename(word))
        if mta is not None:
            return mta
    return None


def split_command(command: str) -> list[str]:
    """--queue.command split as a shell would (quotes, backslashes), never run by one. Raises ValueError."""
    argv = shlex.split(command)
    if not argv:
        raise ValueError("empty command")
    return argv
