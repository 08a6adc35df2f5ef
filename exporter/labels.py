"""Bounded label values: what a code or reason may look like before it becomes a Prometheus label or a JSON
field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from exporter import patterns

if TYPE_CHECKING:
    from exporter.events import Reply, Verdict

NONE: Final = "none"
"""Label value for a code the reply did not carry."""
OTHER: Final = "other"
"""Label value for anything outside the allowed shapes."""

# RFC 5321 basic codes and RFC 3463 enhanced codes (subject 0-7, detail up to 99): together a few thousand
# values at most, whatever the log contains.
_CODE: Final = patterns.compile(r"[245][0-5]\d")
_ENHANCED: Final = patterns.compile(r"[245]\.[0-7]\.\d{1,2}")

REASON_SHAPE: Final = patterns.compile(r"[a-z][a-z0-9_]{0,62}")
"""What a reason may look like: snake_case from a letter on. A rules file is refused with any other reason;
the metrics fold any other into "other"."""


def code_label(code: str | None) -> str | None:
    """The basic code, 'other' when it is not RFC 5321-shaped, None when absent."""
    if code is None:
        return None
    return code if _CODE.fullmatch(code) else OTHER


def enhanced_label(enhanced: str | None) -> str | None:
    """The enhanced code, 'other' when it is not RFC 3463-shaped, None when absent."""
    if enhanced is None:
        return None
    return enhanced if _ENHANCED.fullmatch(enhanced) else OTHER


def reason_key(verdict: Verdict, reply: Reply | None) -> tuple[str, str, str | None, str | None]:
    """What `report` counts a refusal under: its category, reason, code and enhanced code labels."""
    if reply is None:
        return (verdict.category, verdict.reason, None, None)
    return (verdict.category, verdict.reason, code_label(reply.code), enhanced_label(reply.enhanced_code))
