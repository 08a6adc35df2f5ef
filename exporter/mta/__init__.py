"""One module per MTA log format, plus a generic fallback: a log line -> a Delivery to Google, or None.

Each module exporter.mta.<name> declares its FORMAT (a common.LogFormat: what it claims and how it parses).
NAMES is the registry: the values `log.format` accepts besides "auto", in the order auto-detection asks the
formats whether a line is theirs (the generic fallback, which claims every line, last). Adding a log format
is a module and its name here. Reading the names imports no parser.

ENVELOPES are the container runtimes' log files (exporter.mta.containers): each line's envelope is taken off
before the MTA formats see it. Whatever `log.format` says, a line in an envelope is taken out of it (so a forced
MTA format reads its MTA's container logs too); naming an envelope requires it of every line and detects the MTA
of each line inside."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from exporter.mta.common import LogFormat

AUTO: Final = "auto"
"""Detect the format of each line."""
NAMES: Final = ("postfix", "sendmail", "opensmtpd", "exim", "generic")
ENVELOPES: Final = ("docker", "cri")
FORMATS: Final = (AUTO, *NAMES, *ENVELOPES)
"""Every value `log.format` accepts."""


def formats(name: str = AUTO) -> Sequence[LogFormat]:
    """The formats a line is offered to, in order: all of them for "auto", else the one named."""
    if name not in FORMATS:
        raise ValueError(f"unknown log format {name!r}; one of {', '.join(FORMATS)}")
    names = NAMES if name in (AUTO, *ENVELOPES) else (name,)
    found: list[LogFormat] = [importlib.import_module(f"{__name__}.{n}").FORMAT for n in names]
    return found


def envelope(name: str = AUTO) -> str | None:
    """The container envelope `log.format` requires of every line: None when each line's own first bytes tell."""
    return name if name in ENVELOPES else None
