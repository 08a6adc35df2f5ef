"""The counter values as JSON-able data, and their restore, checked value by value before anything is applied: a
state file edited by hand or damaged on disk raises ValueError here, never a half-restored store or a crash."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from exporter.events import STATUSES
from exporter.labels import OTHER
from exporter.metrics.store import (
    MAX_REASON_SUMMARIES,
    RECENT_REJECTIONS,
    RECENT_TEXT_CHARS,
    REJECTION_LABELS,
    Metrics,
    ReasonSummary,
    RecentRejection,
    queue_id_of,
)
from exporter.redact import shorten
from exporter.sources import ROTATION_KINDS

MAX_SOURCES: Final = 10_000
"""Sources remembered in a state file: more is not a state file of ours."""
MAX_LABEL_CHARS: Final = 4096
CLOCK_SLACK_SECONDS: Final = 300.0
"""A saved "last" time this far ahead of the clock came from a line stamped in the future: it is dropped."""


def dump(metrics: Metrics) -> dict[str, Any]:
    """The counter values as JSON-able data (caller holds the lock)."""
    sender = ("sender_domain",) if metrics.by_sender else ()
    return {
        "deliveries": [
            [dict(zip(("status", *sender), k, strict=True)), v] for k, v in metrics.deliveries.items()
        ],
        "rejections": [
            [dict(zip((*REJECTION_LABELS, *sender), k, strict=True)), v]
            for k, v in metrics.rejections.items()
        ],
        "connection_errors": dict(metrics.connection_errors),
        "last_rejection": dict(metrics.last_rejection),
        "last_delivery": metrics.last_delivery,
        "last_sent": metrics.last_sent,
        "consecutive": metrics.consecutive,
        "counting_since": metrics.counting_since,
        "lines": dict(metrics.lines),
        "bytes": dict(metrics.bytes),
        "skipped": [[k[0], k[1], v] for k, v in metrics.skipped.items()],
        "rotations": [[k[0], k[1], v] for k, v in metrics.rotations.items()],
        "source_errors": dict(metrics.source_errors),
        "recent": [
            [r.timestamp, r.category, r.reason, r.code, r.enhanced_code, r.text, r.queue_id]
            for r in metrics.recent_rejections
        ],
        "reasons": [
            [c, r, s.count, s.first, s.last, s.code, s.enhanced_code, s.text, s.queue_id]
            for (c, r), s in metrics.reasons.items()
        ],
    }


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: expected a number >= 0, got {str(value)[:80]!r}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_LABEL_CHARS:
        raise ValueError(f"{where}: expected a string, got {str(value)[:80]!r}")
    return value


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"metrics.{key}: expected a list, got {type(value).__name__}")
    return value


def _map(data: dict[str, Any], key: str) -> dict[str, float]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"metrics.{key}: expected a mapping, got {type(value).__name__}")
    if len(value) > MAX_SOURCES:
        raise ValueError(f"metrics.{key}: {len(value)} entries")
    return {_text(k, f"metrics.{key}"): _number(v, f"metrics.{key}[{k!r}]") for k, v in value.items()}


def _labelled(item: Any, names: tuple[str, ...], where: str) -> tuple[dict[str, str], float]:
    if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], dict):
        raise ValueError(f"{where}: expected [labels, value], got {str(item)[:80]}")
    labels = {_text(k, where): _text(v, where) for k, v in item[0].items()}
    # A label the file lacks (sender_domain turned on since) is "other"; one it has beyond ours is summed away.
    return {n: labels.get(n, OTHER) for n in names}, _number(item[1], f"{where} value")


def _triples(data: dict[str, Any], key: str, allowed: tuple[str, ...]) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    items = _list(data, key)
    if len(items) > MAX_SOURCES * (len(allowed) + 1):
        raise ValueError(f"metrics.{key}: {len(items)} entries")
    for i, item in enumerate(items):
        where = f"metrics.{key}[{i}]"
        if not isinstance(item, list) or len(item) != 3:
            raise ValueError(f"{where}: expected [source, name, value], got {str(item)[:80]}")
        source, name = _text(item[0], where), _text(item[1], where)
        key2 = (source, name if name in allowed else OTHER)
        found[key2] = found.get(key2, 0.0) + _number(item[2], where)
    return found


def restore(metrics: Metrics, data: Any) -> None:
    """Continues from saved counter values (a restart must not reset counters). Raises ValueError, changing
    nothing, when the data is not what `dump` writes; label values are bounded again as if freshly counted."""
    if not isinstance(data, dict):
        raise ValueError(f"metrics: expected a mapping, got {type(data).__name__}")
    sender = ("sender_domain",) if metrics.by_sender else ()
    deliveries: dict[tuple[str, ...], float] = {}
    for i, item in enumerate(_list(data, "deliveries")):
        labels, value = _labelled(item, ("status", *sender), f"metrics.deliveries[{i}]")
        if labels["status"] not in STATUSES:
            raise ValueError(f"metrics.deliveries[{i}]: status {labels['status'][:40]!r}")
        key = (labels["status"], *(metrics.sender_label(labels[s]) for s in sender))
        deliveries[key] = deliveries.get(key, 0.0) + value
    rejections: list[tuple[tuple[str, ...], tuple[str, ...], float]] = []
    for i, item in enumerate(_list(data, "rejections")):
        labels, value = _labelled(item, (*REJECTION_LABELS, *sender), f"metrics.rejections[{i}]")
        bounded = metrics.rejection_labels(
            labels["category"],
            labels["reason"],
            labels["severity"],
            labels["code"],
            labels["enhanced_code"],
            labels["origin"],
        )
        rejections.append((bounded, tuple(metrics.sender_label(labels[s]) for s in sender), value))
    connection_errors = _map(data, "connection_errors")
    now = metrics.clock()

    def seen_at(value: float) -> float:
        return 0.0 if value > now + CLOCK_SLACK_SECONDS else value

    last_rejection = {
        k: seen_at(v) for k, v in _map(data, "last_rejection").items() if k in metrics.categories
    }
    last_delivery = seen_at(_number(data.get("last_delivery", 0.0), "metrics.last_delivery"))
    consecutive = data.get("consecutive", 0)
    if not isinstance(consecutive, int) or isinstance(consecutive, bool) or consecutive < 0:
        raise ValueError(f"metrics.consecutive: expected a whole number >= 0, got {str(consecutive)[:40]!r}")
    lines, nbytes, errors = _map(data, "lines"), _map(data, "bytes"), _map(data, "source_errors")
    skipped = _triples(data, "skipped", metrics.skip_reasons)
    rotations = _triples(data, "rotations", ROTATION_KINDS)
    last_sent = seen_at(_number(data.get("last_sent", 0.0), "metrics.last_sent"))
    # Absent from a state file written before it was kept: unknown (0). Ahead of the clock: counting began
    # while the clock was wrong, so now is the best guess.
    counting_since = min(now, _number(data.get("counting_since", 0.0), "metrics.counting_since"))
    recent = []
    for i, item in enumerate(_list(data, "recent")[-RECENT_REJECTIONS:]):
        where = f"metrics.recent[{i}]"
        # 6 fields: written before the queue id was kept.
        if not isinstance(item, list) or len(item) not in (6, 7):
            raise ValueError(f"{where}: expected 7 fields, got {str(item)[:80]}")
        fields = [_text(x, where) for x in item[1:]]
        category, reason, code, enhanced, _, _ = metrics.rejection_labels(
            fields[0], fields[1], "temporary", fields[2], fields[3], "gsmtp"
        )
        queue_id = queue_id_of(fields[5]) if len(fields) > 5 else ""
        recent.append(RecentRejection(seen_at(_number(item[0], where)), category, reason, code, enhanced,
                                      shorten(fields[4], RECENT_TEXT_CHARS), queue_id))  # fmt: skip
    reasons = _reasons(metrics, data, seen_at)

    # Everything checked: apply.
    for key, value in deliveries.items():
        metrics.deliveries[key] = metrics.deliveries.get(key, 0.0) + value
    for labels_, senders, value in rejections:
        metrics.count_rejection(labels_, senders, value)
    for kind, value in connection_errors.items():
        kind = kind if kind in metrics.connection_errors else OTHER
        metrics.connection_errors[kind] = metrics.connection_errors.get(kind, 0.0) + value
    metrics.last_rejection.update(last_rejection)
    metrics.last_delivery = last_delivery
    metrics.last_sent = last_sent
    metrics.consecutive = consecutive
    metrics.counting_since = counting_since
    metrics.lines.update(lines)
    metrics.bytes.update(nbytes)
    metrics.source_errors.update(errors)
    metrics.skipped.update(skipped)
    metrics.rotations.update(rotations)
    metrics.recent_rejections.extend(recent)
    for (category, reason), summary in reasons:
        metrics.summarise(category, reason, summary)


def _reasons(
    metrics: Metrics, data: dict[str, Any], seen_at: Callable[[float], float]
) -> list[tuple[tuple[str, str], ReasonSummary]]:
    """The saved per-reason summaries, checked and bounded (the most recently seen ones when too many)."""
    found = []
    for i, item in enumerate(_list(data, "reasons")):
        where = f"metrics.reasons[{i}]"
        if not isinstance(item, list) or len(item) != 9:
            raise ValueError(f"{where}: expected 9 fields, got {str(item)[:80]}")
        category, reason, code, enhanced, _, _ = metrics.rejection_labels(
            _text(item[0], where), _text(item[1], where), "temporary", _text(item[5], where),
            _text(item[6], where), "gsmtp",
        )  # fmt: skip
        count, first, last = (_number(x, where) for x in item[2:5])
        if first > last:
            raise ValueError(f"{where}: first seen {first} after last seen {last}")
        summary = ReasonSummary(count, seen_at(first), seen_at(last), code, enhanced,
                                shorten(_text(item[7], where), RECENT_TEXT_CHARS), queue_id_of(_text(item[8], where)))  # fmt: skip
        found.append(((category, reason), summary))
    found.sort(key=lambda pair: pair[1].last)
    return found[-MAX_REASON_SUMMARIES:]
