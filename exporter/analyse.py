"""One log line in, one classified Event out: the MTA parsers, the reply normaliser and the rules, in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_LINE_BYTES: Final = 32 * 1024
"""Longer lines are skipped (reason too_long). Sources may cut a line at MAX_LINE_BYTES + 1 bytes and drop the
rest up to its newline: the analyser only needs to see that it is too long."""

SKIP_REASONS: Final = ("too_long", "not_text", "unparseable")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line that was not analysed, and why (one of SKIP_REASONS)."""

    reason: str
