"""One module per MTA log format, plus a generic fallback: a log line -> a Delivery to Google, or None.

Each module exporter.mta.<name> declares its FORMAT (a common.LogFormat: what it claims and how it parses).
NAMES is the registry: the values `log.format` accepts besides "auto", in the order auto-detection asks the
formats whether a line is theirs (the generic fallback, which claims every line, last). Adding a log format
is a module and its name here. Reading the names imports no parser."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from exporter.mta.common import LogFormat

AUTO: Final = "auto"
"""Detect the format of each line."""
NAMES: Final = ("postfix", "sendmail", "opensmtpd", "exim", "generic")
FORMATS: Final = (AUTO, *NAMES)
"""Every value `log.format` accepts."""


def formats(name: str = AUTO) -> Sequence[LogFormat]:
    """The formats a line is offered to, in order: all of them for "auto", else the one named."""
    if name not in FORMATS:
        raise ValueError(f"unknown log format {name!r}; one of {', '.join(FORMATS)}")
    names = NAMES if name == AUTO else (name,)
    found: list[LogFormat] = [importlib.import_module(f"{__name__}.{n}").FORMAT for n in names]
    return found
