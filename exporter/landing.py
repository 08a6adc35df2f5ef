"""The landing page: how much mail to Gmail gets through, why the rest does not, what is stuck in the queue, and
whether the exporter reads its logs. Plain HTML that refreshes itself: no script, no external resource.

Everything a log, a queue listing or a path puts on the page is escaped; reply texts (redacted by the store) and
queue listing errors (redacted here) show no address. The only links built from such text go to
https://support.google.com/.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Final

from exporter import patterns
from exporter.categories import WHAT_TO_FIX, runbook_anchor
from exporter.events import CONNECTION_ERROR_KINDS
from exporter.metrics import Metrics
from exporter.queue.reader import QueueSnapshot
from exporter.redact import redact
from exporter.sources import SourceStatus

REFRESH_SECONDS: Final = 30
STYLESHEET_PATH: Final = "/-/landing.css"
"""Served by the web stage: a stylesheet from the page's own origin works under a web config's
Content-Security-Policy that allows 'self', where an inline one would be blocked."""
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Sent with the page unless the web config sets its own: nothing but our stylesheet may load or run."""
SHOWN_REASONS: Final = 25

_GOOGLE_LINK: Final = patterns.compile(
    r"https://support\.google\.com/(?:[A-Za-z0-9/?=&_.~%#+-]*[A-Za-z0-9/=&_~%#+-])?"
)
"""A link into Google's help, as Gmail's replies carry them; a trailing full stop or comma is prose."""

SOURCE_ADVICE: Final = {
    "opening": "Starting: looking at the log for the first time.",
    "open": "",
    "missing": "The log does not exist (yet). Check the path in log.paths; it is read as soon as it appears.",
    "permission_denied": "The exporter's user cannot read it: give it the log's group (Debian: adm).",
    "not_regular_file": "A FIFO, device or directory is at this path: point log.paths at the log file itself.",
    "error": "Reading failed and is retried. The exporter's own log says why.",
    "finished": "Standard input closed: nothing more will be read.",
}
"""What to do about a source in each state (SOURCE_STATES)."""
_SOURCE_RUNBOOK: Final = {"permission_denied": "log-permissions-and-logrotate"}

_UNANSWERED_NAMES: Final = {
    "timeout": "timed out",
    "refused": "connection refused",
    "lost_connection": "connection lost",
    "tls": "TLS failed",
    "dns": "DNS lookup failed",
    "other": "other connection error",
    "not_tried": "not tried yet",
}

CSS: Final = """
:root{color-scheme:light}
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;padding:.8em 1em 2em;color:#1d2733;max-width:1180px}
h1{font-size:1.45em;margin:.3em 0 .1em}h2{font-size:1.15em;margin:1.7em 0 .5em}
a{color:#0b57d0}.muted{color:#5b6672}.bad{color:#b3261e}.good{color:#146c2e}
p{margin:.4em 0}
.strip{display:grid;grid-template-columns:repeat(auto-fit,minmax(10em,1fr));gap:.5em;margin:.8em 0}
.stat{border:1px solid #d6dde5;border-radius:6px;padding:.45em .7em;background:#f6f8fa;min-width:0}
.stat .k{display:block;font-size:.82em;color:#5b6672}
.stat .v{display:block;font-size:1.4em;font-weight:600;font-variant-numeric:tabular-nums;overflow-wrap:break-word}
.stat .s{display:block;font-size:.8em;color:#5b6672;overflow-wrap:break-word}
.stat.bad .v{color:#b3261e}.stat.good .v{color:#146c2e}
table{border-collapse:collapse;width:100%;margin:.4em 0 1em}
th,td{text-align:left;vertical-align:top;padding:.35em .5em;border-bottom:1px solid #dde3ea;overflow-wrap:break-word}
th{background:#f2f5f8;font-weight:600;font-size:.9em;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.t{white-space:nowrap}
code{font-size:.92em}
.reply,.free{overflow-wrap:anywhere}.reply{font-size:.9em;min-width:12em}
details{margin:.6em 0}summary{cursor:pointer;color:#5b6672}
.state{font-weight:600}.state.open,.state.finished{color:#146c2e}.state.opening{color:#5b6672}
.state.missing,.state.permission_denied,.state.not_regular_file,.state.error{color:#b3261e}
@media (max-width:720px){
body{padding:.5em .7em 1.5em}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:auto;min-width:0}
table.cards thead{display:none}
table.cards tr{border:1px solid #d6dde5;border-radius:6px;margin:.5em 0;padding:.3em .2em}
table.cards td{border:0;padding:.12em .4em;text-align:left}
table.cards td.t{white-space:normal}
table.cards td[data-label]::before{content:attr(data-label) ": ";color:#5b6672;font-size:.85em}
}
"""

e = html.escape


def _when(then: float) -> str:
    """A time as UTC, machine-readable in the element too; "never" for 0."""
    if then <= 0:
        return "never"
    stamp = time.gmtime(then)
    return (
        f"<time datetime='{time.strftime('%Y-%m-%dT%H:%M:%SZ', stamp)}'>"
        f"{time.strftime('%Y-%m-%d %H:%M:%S', stamp)} UTC</time>"
    )


def duration(seconds: float) -> str:
    """A span for people: 45 s, 12 min, 3 h 20 min, 2 d 5 h."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _ago(then: float, now: float) -> str:
    return "never" if then <= 0 else f"{duration(now - then)} ago"


def reply_html(text: str) -> str:
    """A (redacted) reply text escaped, with Google's help links clickable and no other link."""
    parts: list[str] = []
    end = 0
    for match in _GOOGLE_LINK.finditer(text):
        url = match.group(0)
        parts.append(e(text[end : match.start()]))
        parts.append(f'<a href="{e(url)}" rel="noopener noreferrer">{e(url)}</a>')
        end = match.end()
    parts.append(e(text[end:]))
    return "".join(parts)


def _fix_cell(category: str, runbook: str) -> str:
    link = f"{runbook}#{runbook_anchor(category)}"
    return f'{e(WHAT_TO_FIX.get(category, ""))} · <a href="{e(link)}">runbook</a>'


def _stat(key: str, ident: str, value: str, sub: str = "", cls: str = "") -> str:
    sub_html = f"<span class=s>{sub}</span>" if sub else ""
    return (
        f"<div class='stat {cls}'><span class=k>{key}</span><span class=v id={ident}>{value}</span>"
        f"{sub_html}</div>"
    )


def _headline(metrics: Metrics, now: float) -> str:
    outcomes = dict.fromkeys(("sent", "deferred", "bounced", "expired"), 0.0)
    for key, value in metrics.deliveries.items():
        if key[0] in outcomes:
            outcomes[key[0]] += value
    sent, bounced, expired = outcomes["sent"], outcomes["bounced"], outcomes["expired"]
    final = sent + bounced + expired
    if final:
        ratio = sent / final
        acceptance = f"{100 * ratio:.1f} %"
        tone = "good" if ratio >= 0.99 else "bad" if ratio < 0.9 else ""
    else:
        acceptance, tone = "—", ""
    in_a_row = metrics.consecutive
    return (
        "<div class=strip id=headline>"
        + _stat("Acceptance", "acceptance", acceptance, "sent ÷ (sent + bounced + expired)", tone)
        + _stat("Sent", "sent", str(int(sent)), "accepted by Google")
        + _stat("Bounced", "bounced", str(int(bounced)), "refused for good", "bad" if bounced else "")
        + _stat("Expired", "expired", str(int(expired)), "gave up retrying", "bad" if expired else "")
        + _stat("Deferral attempts", "deferred", str(int(outcomes["deferred"])), "retried; not in acceptance")
        + _stat(
            "Last accepted delivery",
            "last-sent",
            _ago(metrics.last_sent, now),
            _when(metrics.last_sent) if metrics.last_sent > 0 else "",
        )
        + _stat(
            "Refusals in a row",
            "in-a-row",
            str(in_a_row),
            "since the last accepted delivery",
            "bad" if in_a_row else "",
        )
        + "</div>"
    )


def _categories(metrics: Metrics, runbook: str) -> str:
    counts = metrics.by_category()
    seen = sorted(((n, c) for n, c in counts.items() if c), key=lambda item: (-item[1], item[0]))
    unseen = [n for n, c in counts.items() if not c]
    head = (
        "<thead><tr><th>Category</th><th class=n>Rejections</th><th>Last seen</th><th>What to fix</th></tr>"
        "</thead>"
    )
    rows = "".join(
        f"<tr><td data-label=Category><code>{e(name)}</code></td>"
        f"<td class=n data-label=Rejections>{int(count)}</td>"
        f"<td class=t data-label='Last seen'>{_when(metrics.last_rejection.get(name, 0.0))}</td>"
        f"<td data-label='What to fix'>{_fix_cell(name, runbook)}</td></tr>"
        for name, count in seen
    )
    table = (
        f"<table id=categories class=cards>{head}<tbody>{rows}</tbody></table>"
        if seen
        else "<p id=categories-none>No rejection since counting began.</p>"
    )
    zero_rows = "".join(
        f"<tr><td data-label=Category><code>{e(name)}</code></td>"
        f"<td data-label='What to fix'>{_fix_cell(name, runbook)}</td></tr>"
        for name in unseen
    )
    folded = (
        f"<details id=categories-zero-details><summary>{len(unseen)} categories without rejections</summary>"
        "<table id=categories-zero class=cards><thead><tr><th>Category</th><th>What to fix</th></tr></thead>"
        f"<tbody>{zero_rows}</tbody></table></details>"
        if unseen
        else ""
    )
    return table + folded


def _reasons(metrics: Metrics) -> str:
    summaries = metrics.reason_summaries()[:SHOWN_REASONS]
    if not summaries:
        return "<p id=reasons-none class=muted>No rejection yet.</p>"
    rows = "".join(
        f"<tr><td data-label=Reason><code>{e(reason)}</code><br><span class=muted>{e(category)}</span></td>"
        f"<td class=n data-label=Count>{int(s.count)}</td>"
        f"<td data-label='First seen'>{_when(s.first)}</td>"
        f"<td data-label='Last seen'>{_when(s.last)}</td>"
        f"<td class=t data-label=Code>{e(s.code)} {e(s.enhanced_code)}</td>"
        f"<td class=reply data-label='Latest reply'>{reply_html(s.text)}</td>"
        f"<td data-label='Queue id'><code>{e(s.queue_id) or '—'}</code></td></tr>"
        for category, reason, s in summaries
    )
    return (
        "<table id=reasons class=cards><thead><tr><th>Reason</th><th class=n>Count</th><th>First seen</th>"
        "<th>Last seen</th><th>Code</th><th>Latest reply</th><th>Queue id</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        "<p class=muted>Grep the mail log for a queue id to see the whole story of that message "
        "(<code>grep QUEUEID /var/log/mail.log</code>). Addresses and IP addresses are masked.</p>"
    )


def _recent(metrics: Metrics) -> str:
    recent = metrics.recent()[::-1]
    if not recent:
        return ""
    rows = "".join(
        f"<tr><td class=t data-label=Time>{_when(r.timestamp)}</td>"
        f"<td data-label=Category><code>{e(r.category)}</code></td><td data-label=Reason><code>{e(r.reason)}</code></td>"
        f"<td class=t data-label=Code>{e(r.code)} {e(r.enhanced_code)}</td>"
        f"<td class=reply data-label=Reply>{reply_html(r.text)}</td>"
        f"<td data-label='Queue id'><code>{e(r.queue_id) or '—'}</code></td></tr>"
        for r in recent
    )
    return (
        f"<details id=recent-details><summary>The last rejections one by one ({len(recent)})</summary>"
        "<table id=recent class=cards><thead><tr><th>Time (log)</th><th>Category</th><th>Reason</th><th>Code</th>"
        f"<th>Reply</th><th>Queue id</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _queue(snapshot: QueueSnapshot | None, runbook: str, now: float) -> str:
    help_link = f'<a href="{e(runbook)}#queue-reader-permissions">what the queue reader needs</a>'
    if snapshot is None:
        return (
            "<p id=queue-off>The queue reader is off (<code>--queue.mta none</code>, or no MTA's queue command "
            f"was found): only the logs are read. See {help_link}.</p>"
        )
    if not snapshot.success:
        return (
            f"<p id=queue-error class='bad free'>No current queue listing: {e(redact(snapshot.error or 'unknown'))}</p>"
            f"<p class=muted>Last successful listing: {_when(snapshot.last_success_time)}. See {help_link}.</p>"
        )
    refused = sum(snapshot.recipients.values())
    unanswered = sum(v for k, v in snapshot.unanswered.items() if k != "not_tried")
    not_tried = snapshot.unanswered.get("not_tried", 0)
    strip = (
        "<div class=strip id=queue-strip>"
        + _stat(
            "Refused by Gmail, waiting", "queue-refused", str(refused), "recipients", "bad" if refused else ""
        )
        + _stat(
            "No answer from Google",
            "queue-unanswered",
            str(unanswered),
            "recipients",
            "bad" if unanswered else "",
        )
        + _stat("Not tried yet", "queue-not-tried", str(not_tried), "recipients")
        + _stat(
            "Oldest waiting",
            "queue-oldest",
            duration(snapshot.oldest_age_seconds) if refused + unanswered + not_tried else "—",
            "message bound for Google",
        )
        + "</div>"
    )
    listed = (
        f"<p class=muted id=queue-listed>Listed {_when(snapshot.last_success_time)} "
        f"({_ago(snapshot.last_success_time, now)}, took {snapshot.duration_seconds:.2f} s)."
    )
    skipped = sum(snapshot.unreadable.values())
    if skipped:
        listed += f" {skipped} entries of the listing could not be read."
    listed += "</p>"
    categories = sorted(((n, c) for n, c in snapshot.recipients.items() if c), key=lambda i: (-i[1], i[0]))
    by_category = (
        "<table id=queue-by-category class=cards><thead><tr><th>Waiting because of</th><th class=n>Recipients</th>"
        "<th>What to fix</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td data-label=Category><code>{e(n)}</code></td><td class=n data-label=Recipients>{c}</td>"
            f"<td data-label='What to fix'>{_fix_cell(n, runbook)}</td></tr>"
            for n, c in categories
        )
        + "</tbody></table>"
        if categories
        else ""
    )
    kinds = [k for k in (*CONNECTION_ERROR_KINDS, "not_tried") if snapshot.unanswered.get(k)]
    by_kind = (
        "<table id=queue-by-kind class=cards><thead><tr><th>No reply from Google</th>"
        "<th class=n>Recipients</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td data-label=Kind><code>{e(k)}</code> <span class=muted>{e(_UNANSWERED_NAMES.get(k, ''))}"
            f"</span></td><td class=n data-label=Recipients>{snapshot.unanswered[k]}</td></tr>"
            for k in kinds
        )
        + "</tbody></table>"
        if kinds
        else ""
    )
    nothing = "" if categories or kinds else "<p id=queue-empty>Nothing is waiting for Google.</p>"
    return strip + listed + nothing + by_category + by_kind


def _sources(statuses: list[SourceStatus], runbook: str, now: float) -> str:
    rows = []
    for s in statuses:
        advice = e(SOURCE_ADVICE.get(s.state, ""))
        if s.state in _SOURCE_RUNBOOK:
            advice += f' <a href="{e(runbook)}#{_SOURCE_RUNBOOK[s.state]}">runbook</a>'
        words = s.state.replace("_", " ")
        shown = s.detail and s.state != "open" and s.detail.lower() != words
        detail = f"<br><span class='muted free'>{e(s.detail)}</span>" if shown else ""
        rows.append(
            f"<tr><td class=free data-label=Source><code>{e(s.name)}</code></td>"
            f"<td data-label=State><span class='state {e(s.state)}'>{e(words)}</span>{detail}</td>"
            f"<td data-label='What to do'>{advice or '—'}</td>"
            f"<td class=n data-label='Read (bytes)'>{s.offset}</td>"
            f"<td class=n data-label='Behind (bytes)'>{max(0, s.size - s.offset)}</td>"
            f"<td class=t data-label='Last line'>{_ago(s.last_read, now)}</td></tr>"
        )
    return (
        "<table id=sources class=cards><thead><tr><th>Source</th><th>State</th><th>What to do</th>"
        "<th class=n>Read (bytes)</th><th class=n>Behind (bytes)</th><th>Last line</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render(
    *,
    version: str,
    metrics: Metrics,
    statuses: list[SourceStatus],
    queue: Callable[[], QueueSnapshot] | None,
    runbook_url: str,
    telemetry_path: str,
    now: float | None = None,
) -> str:
    """The landing page as of now."""
    now = time.time() if now is None else now
    snapshot = queue() if queue is not None else None
    with metrics.lock:
        since = metrics.counting_since
        headline = _headline(metrics, now)
        categories = _categories(metrics, runbook_url)
        reasons = _reasons(metrics)
        recent = _recent(metrics)
    since_text = (
        f"{_when(since)} ({_ago(since, now)})"
        if since > 0
        else "an unknown date (before this version kept it)"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>Gmail rejection exporter</title>
<link rel="stylesheet" href="{STYLESHEET_PATH}"></head><body>
<h1>Mail to Gmail</h1>
<p class=muted>Counted <span id=since>since {since_text}</span> · this page refreshes every {REFRESH_SECONDS} s ·
gmail-rejection-exporter {e(version)} · <a href="{e(telemetry_path)}">Metrics</a> ·
<a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
{headline}
<h2>Waiting for Gmail now (the MTA's queue)</h2>
{_queue(snapshot, runbook_url, now)}
<h2>Rejections by category</h2>
{categories}
<h2>Latest rejections by reason</h2>
{reasons}
{recent}
<h2>Log sources</h2>
{_sources(statuses, runbook_url, now)}
</body></html>
"""
