"""End to end: a real Postfix delivers to the Gmail look-alike, the exporter follows Postfix's log, a real
Prometheus scrapes it every second with our rules loaded, and a real Alertmanager routes the alerts with our
example routing to a webhook in this test.

Traffic (per recipient: the look-alike answers with that row of tests/data/replies.tsv):
  warm-up  4 accepted mails, so Prometheus holds the counters before anything is refused;
  burst    6 rounds one second apart, each 2 x seed-51 (550 5.7.26 DMARC), 2 x seed-08 (450 4.2.1 receiving
           rate), 2 x beyond-14 (421 4.7.28 unusual rate) and 1 accepted mail;
  tail     1 accepted mail, then 2 x seed-51: the last two outcomes are refusals.

The test copy of the rules differs from deploy/prometheus in three ways only: every [5m] range is [20s]; the
authentication and rate-limit rate floors are scaled by 300 s / 20 s so they stand for the same number of
refusals per window as in production (6 and 15); those two alerts have `for: 0s`. The other alerts keep their
`for:` of 5 to 15 minutes and must not reach Alertmanager during the test.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import e2e_stack as stack
import mta_harness
import pytest
from daemon_harness import Exporter, free_port
from dashboard_queries import dashboard_queries

pytestmark = [pytest.mark.postfix, pytest.mark.timeout(170)]

JOB = "gmail-rejection-exporter"
WINDOW = "20s"
WINDOW_S = 20
SCALE = 300 / WINDOW_S  # the rules' 5m windows become 20s windows
AUTH, RATE = "GmailAuthenticationRejectionSpike", "GmailRateLimitSpike"
THRESHOLDS = {
    (AUTH, "rate_per_second"): stack.threshold(AUTH, "rate_per_second") * SCALE,
    (RATE, "rate_per_second"): stack.threshold(RATE, "rate_per_second") * SCALE,
}
# Postfix must not retry deferred mail during the test: every deferral is logged exactly once.
POSTFIX_SETTINGS = {"minimal_backoff_time": "1h", "maximal_backoff_time": "1h", "queue_run_delay": "1h"}

DMARC, RECEIVING_RATE, UNUSUAL_RATE = "seed-51", "seed-08", "beyond-14"
WARMUP_ACCEPTED, ROUNDS, TAIL_REFUSALS = 4, 6, 2
PER_ROUND = {DMARC: 2, RECEIVING_RATE: 2, UNUSUAL_RATE: 2, "accepted": 1}
SENT = {
    DMARC: ROUNDS * PER_ROUND[DMARC] + TAIL_REFUSALS,
    RECEIVING_RATE: ROUNDS * PER_ROUND[RECEIVING_RATE],
    UNUSUAL_RATE: ROUNDS * PER_ROUND[UNUSUAL_RATE],
    "accepted": WARMUP_ACCEPTED + ROUNDS * PER_ROUND["accepted"] + 1,
}
TOTAL = sum(SENT.values())
# What each row must become: (category, reason, code, enhanced_code, severity), and Postfix's status.
CLASSIFIED = {
    DMARC: (("authentication", "dmarc_policy", "550", "5.7.26", "permanent"), "bounced"),
    RECEIVING_RATE: (("rate_limit", "recipient_receiving_rate", "450", "4.2.1", "temporary"), "deferred"),
    UNUSUAL_RATE: (("rate_limit", "ip_unusual_rate", "421", "4.7.28", "temporary"), "deferred"),
}
ROUTES = {  # the example Alertmanager routing: critical pages and continues, then the category's team
    AUTH: ({"category": "authentication", "severity": "critical"}, {"postmaster-pager", "dns-admins"}),
    RATE: ({"category": "rate_limit", "severity": "warning"}, {"bulk-sending"}),
}


@dataclass
class Run:
    """What the scenario did and saw; the tests below assert on it and on Prometheus' stored history."""

    exporter: Exporter
    prometheus: stack.PrometheusAPI
    alertmanager: str
    webhook: stack.Webhook
    maillog: Path
    instance: str
    started: float = 0.0
    counted: float = 0.0  # Prometheus holds the final counters from here on
    quiet: float = 0.0  # the last refusal has left every [20s] window
    sent: dict[str, list[float]] = field(default_factory=dict)  # when each mail was handed to sendmail
    alertmanager_firing: list[dict[str, Any]] = field(default_factory=list)
    alertmanager_after: list[dict[str, Any]] = field(default_factory=list)


def local(recipient: str) -> str:
    return recipient.split("@")[0]


def row_of(recipient: str) -> str:
    return "accepted" if local(recipient).startswith("ok-") else local(recipient).split("+")[0]


def outcome_times(maillog: Path) -> dict[str, list[float]]:
    """Log time of every outcome line, per row (seed-51, ..., accepted). Postfix' maillog_file has syslog
    timestamps (no year, whole seconds), read here in local time and the current year like the exporter."""
    times: dict[str, list[float]] = {}
    year = datetime.now().year
    for line in maillog.read_text().splitlines():
        match = mta_harness.POSTFIX_OUTCOME.search(line)
        if match and match.group(2).endswith("@gmail.com"):
            stamp = datetime.strptime(f"{year} {line[:15]}", "%Y %b %d %H:%M:%S").timestamp()
            times.setdefault(row_of(match.group(2)), []).append(stamp)
    return times


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def am_alerts(base: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=10) as response:
        alerts: list[dict[str, Any]] = json.load(response)
    return alerts


def resolved_everywhere(webhook: stack.Webhook) -> bool:
    last: dict[tuple[str, str], str] = {}
    for _, receiver, status, labels in webhook.alerts():
        last[(receiver, labels["alertname"])] = status
    expected = {(receiver, alert) for alert, (_, receivers) in ROUTES.items() for receiver in receivers}
    return expected <= set(last) and all(last[key] == "resolved" for key in expected)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    if os.geteuid() != 0:
        pytest.fail(
            "the end-to-end test needs root (Postfix, port 25 on 127.0.0.2, /etc/hosts): run make test"
        )
    prometheus_bin = stack.binary("prometheus", "prometheus")
    alertmanager_bin = stack.binary("prometheus-alertmanager", "prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("e2e")
    maillog = tmp / "maillog"
    begin = time.monotonic()
    with contextlib.ExitStack() as stop:
        webhook = stop.enter_context(stack.Webhook().running())
        postfix, _ = stop.enter_context(mta_harness.postfix_to_lookalike(maillog, settings=POSTFIX_SETTINGS))
        mta_harness.wait_for(maillog, r"starting the Postfix mail system|daemon started", timeout=15)

        exporter = Exporter(
            tmp,
            "--log.path",
            str(maillog),
            "--from-beginning",
            "--queue.mta",
            "postfix",
            "--queue.command",
            f"postqueue -c {postfix.conf} -j",
            "--queue.interval",
            "1s",
        )
        stop.enter_context(exporter)

        am_port, prom_port = free_port(), free_port()
        am_config = stack.alertmanager_for_test(
            webhook.url, {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
        )
        alertmanager = stack.Service(
            "alertmanager",
            [
                alertmanager_bin,
                f"--config.file={stack.write_yaml(tmp / 'alertmanager.yml', am_config)}",
                f"--storage.path={tmp / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            f"http://127.0.0.1:{am_port}/-/ready",
            tmp,
        )
        stop.callback(alertmanager.stop)
        alertmanager.start()

        rules = stack.rules_for_test(WINDOW, THRESHOLDS, {AUTH: "0s", RATE: "0s"})
        prom_config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(stack.write_yaml(tmp / "rules.yml", rules))],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
            ],
        }
        prometheus = stack.Service(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={stack.write_yaml(tmp / 'prometheus.yml', prom_config)}",
                f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            f"http://127.0.0.1:{prom_port}/-/ready",
            tmp,
        )
        stop.callback(prometheus.stop)
        prometheus.start()
        api = stack.PrometheusAPI(f"http://127.0.0.1:{prom_port}")
        result = Run(
            exporter, api, f"http://127.0.0.1:{am_port}", webhook, maillog, f"127.0.0.1:{exporter.port}"
        )

        def prometheus_has(deliveries: int) -> bool:
            return api.vector(f'sum(gmail_deliveries_total{{job="{JOB}"}})') == {frozenset(): deliveries}

        wait(lambda: prometheus_has(0), 20, "Prometheus' first scrape of the exporter")
        result.started = time.time()
        print(
            f"\nset-up {time.monotonic() - begin:.1f} s (Postfix, look-alike, exporter, Alertmanager, Prometheus)"
        )

        serial = Counter[str]()

        def send(row: str) -> None:
            serial[row] += 1
            name = f"ok-{serial[row]}" if row == "accepted" else f"{row}+{serial[row]}"
            result.sent.setdefault(row, []).append(time.time())
            postfix.send(f"{name}@gmail.com")

        def logged() -> int:
            return len(mta_harness.outcomes(maillog, lambda m: m.group(2).endswith("@gmail.com")))

        for _ in range(WARMUP_ACCEPTED):
            send("accepted")
        wait(lambda: logged() == WARMUP_ACCEPTED, 30, "the warm-up deliveries")
        wait(lambda: prometheus_has(WARMUP_ACCEPTED), 15, "Prometheus to scrape the warm-up")

        for round_ in range(ROUNDS):
            round_start = time.monotonic()
            for row, count in PER_ROUND.items():
                for _ in range(count):
                    send(row)
            if round_ < ROUNDS - 1:
                time.sleep(max(0.0, 1.0 - (time.monotonic() - round_start)))
        burst = WARMUP_ACCEPTED + ROUNDS * sum(PER_ROUND.values())
        wait(lambda: logged() == burst, 40, "the burst's outcomes in Postfix' log")
        send("accepted")
        wait(lambda: logged() == burst + 1, 20, "the tail's accepted mail")
        for _ in range(TAIL_REFUSALS):
            send(DMARC)
        wait(lambda: logged() == TOTAL, 20, "the tail's refusals")
        result.quiet = time.time() + WINDOW_S + 2

        exporter.wait_for("gmail_deliveries_total", TOTAL, timeout=15)
        wait(lambda: prometheus_has(TOTAL), 15, "Prometheus to scrape the final counters")
        result.counted = time.time()

        # Follow the alerts until both have resolved at every receiver they were routed to, and the last
        # refusal has left the rules' window (so the final rates are exactly 0).
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline:
            active = am_alerts(result.alertmanager)
            if {a["labels"]["alertname"] for a in active} >= {AUTH, RATE} and not result.alertmanager_firing:
                result.alertmanager_firing = active
            if resolved_everywhere(webhook) and time.time() > result.quiet:
                break
            time.sleep(0.2)
        time.sleep(2)  # anything late would show up in the assertions below
        result.alertmanager_after = am_alerts(result.alertmanager)
        print(
            f"traffic {result.counted - result.started:.1f} s, alerts until quiet {time.time() - result.counted:.1f} s"
        )
        yield result


# -- what Postfix did ---------------------------------------------------------------------------------------
def test_postfix_logged_one_outcome_per_mail_with_the_lookalikes_reply(run: Run) -> None:
    statuses = Counter(
        (row_of(m.group(2)), m.group(3))
        for m in mta_harness.outcomes(run.maillog, lambda m: m.group(2).endswith("@gmail.com"))
    )
    expected = {(row, CLASSIFIED[row][1]): n for row, n in SENT.items() if row != "accepted"}
    expected[("accepted", "sent")] = SENT["accepted"]
    assert statuses == expected


# -- the exporter -------------------------------------------------------------------------------------------
def test_exporter_counters_equal_what_was_sent(run: Run) -> None:
    samples = run.exporter.scrape()

    def values(name: str, *keys: str) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for (n, labels), value in samples.items():
            if n == name and value:
                d = dict(labels)
                out[tuple(d[k] for k in keys)] = value
        return out

    assert values("gmail_deliveries_total", "status") == {
        ("sent",): SENT["accepted"],
        ("bounced",): SENT[DMARC],
        ("deferred",): SENT[RECEIVING_RATE] + SENT[UNUSUAL_RATE],
    }
    keys = ("category", "reason", "code", "enhanced_code", "severity", "origin")
    assert values("gmail_rejections_total", *keys) == {
        (*CLASSIFIED[row][0], "gsmtp"): SENT[row] for row in (DMARC, RECEIVING_RATE, UNUSUAL_RATE)
    }
    assert values("gmail_connection_errors_total", "kind") == {}
    assert values("gmail_exporter_lines_skipped_total", "reason") == {}
    assert values("gmail_consecutive_rejections") == {(): TAIL_REFUSALS}
    last = outcome_times(run.maillog)
    assert values("gmail_last_rejection_timestamp_seconds", "category") == {
        ("authentication",): max(last[DMARC]),
        ("rate_limit",): max(last[RECEIVING_RATE] + last[UNUSUAL_RATE]),
    }


def test_prometheus_stored_the_same_counters(run: Run) -> None:
    api = run.prometheus
    by_category = api.vector(f'sum by (category) (gmail_rejections_total{{job="{JOB}"}}) > 0', run.counted)
    assert by_category == {
        frozenset({("category", "authentication")}): SENT[DMARC],
        frozenset({("category", "rate_limit")}): SENT[RECEIVING_RATE] + SENT[UNUSUAL_RATE],
    }
    # A label set the exporter creates on its first refusal enters Prometheus at the value of its first scrape;
    # rate() and increase() cannot see that part (the tests above allow for it).
    first = {
        dict(labels)["reason"]: points[0].v
        for labels, points in api.samples(
            f'gmail_rejections_total{{job="{JOB}", reason!="none"}}[5m]', run.counted
        ).items()
    }
    print(f"first stored value of each new label set: {first}")
    by_status = api.vector(f'sum by (status) (gmail_deliveries_total{{job="{JOB}"}}) > 0', run.counted)

    # The deferred mail waits in Postfix's real queue (no retry within the test): the queue reader, scraped by
    # Prometheus, sees each recipient once, by the category of its last Gmail reply.
    # The listing runs every second, apart from the log: on a busy machine its view of the last deferrals may reach
    # Prometheus after the counters did, so it is read as it stands now (the mail is still queued), waited for.
    def queued() -> dict[str, float]:
        found = api.vector(f'gmail_queue_recipients{{job="{JOB}"}} > 0')
        return {dict(k)["category"]: v for k, v in found.items()}

    expected_queue = {"rate_limit": SENT[RECEIVING_RATE] + SENT[UNUSUAL_RATE]}
    with contextlib.suppress(AssertionError):
        wait(lambda: queued() == expected_queue, 60, "Prometheus to scrape the queue reader's view")
    assert queued() == expected_queue
    assert api.vector(f'sum(gmail_exporter_queue_scrape_success{{job="{JOB}"}})') == {frozenset(): 1}
    assert by_status == {
        frozenset({("status", "sent")}): SENT["accepted"],
        frozenset({("status", "bounced")}): SENT[DMARC],
        frozenset({("status", "deferred")}): SENT[RECEIVING_RATE] + SENT[UNUSUAL_RATE],
    }


# -- the dashboard ------------------------------------------------------------------------------------------
def test_every_dashboard_query_returns_data(run: Run) -> None:
    """Every panel query, as Grafana would send it for this job and instance, returns series while the burst
    is in its window (none legitimately stays empty in this scenario: the exporter exposes every counter at
    0 from its start); the panels with exact answers give them."""
    queries = dashboard_queries(JOB, run.instance, "prometheus", rate_interval=WINDOW, time_range="5m")
    results = {(q.panel_title, q.ref_id): run.prometheus.query(q.expr, run.counted) for q in queries}
    assert [key for key, result in results.items() if not result] == []

    def labelled(title: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in results[(title, "A")]}

    assert labelled("Consecutive refusals", "instance") == {run.instance: TAIL_REFUSALS}
    assert labelled("Exporter targets up", "instance") == {run.instance: 1}
    assert labelled("Last config reload", "instance") == {run.instance: 1}
    assert labelled("Unread log bytes", "instance") == {run.instance: 0}
    last = outcome_times(run.maillog)
    assert labelled("Last rejection per category", "category") == {
        "authentication": max(last[DMARC]) * 1000,
        "rate_limit": max(last[RECEIVING_RATE] + last[UNUSUAL_RATE]) * 1000,
    }
    top = {
        tuple(r["metric"][k] for k in ("category", "reason", "code", "enhanced_code", "severity"))
        for r in results[("Top reasons and codes", "A")]
    }
    assert top == {CLASSIFIED[row][0] for row in (DMARC, RECEIVING_RATE, UNUSUAL_RATE)}
    by_category = labelled("Rejections by category", "category")
    assert {c for c, v in by_category.items() if v > 0} == {"authentication", "rate_limit"}
    # Final outcomes and deferral attempts apart; this exporter has no sender domains: one unlabelled series.
    assert set(labelled("Messages per hour by final outcome", "status")) == {"sent", "bounced", "expired"}
    deferrals = labelled("Deferral attempts per hour", "instance")
    assert set(deferrals) == {run.instance} and deferrals[run.instance] > 0
    by_sender = labelled("Refusals by sender domain", "sender_domain")
    assert set(by_sender) == {""} and by_sender[""] > 0
    assert set(labelled("Connection errors by kind", "kind")) == {
        "timeout",
        "refused",
        "lost_connection",
        "tls",
        "dns",
        "other",
    }
    assert set(labelled("Connection errors by kind", "kind").values()) == {0}
    acceptance = labelled("Gmail acceptance ratio", "")[""]
    assert 0 < acceptance < 1


# -- the recording rules ------------------------------------------------------------------------------------
def recorded(run: Run, name: str, until: float) -> dict[frozenset[tuple[str, str]], list[stack.Point]]:
    span = math.ceil(until - run.started) + 5
    return {
        frozenset((k, v) for k, v in labels if k != "__name__"): points
        for labels, points in run.prometheus.samples(f"{name}[{span}s]", until).items()
    }


def assert_every_evaluation(run: Run, times: list[int]) -> None:
    """One sample per 1 s evaluation, without a gap, from the first evaluation that can see two scrapes to
    the end of the scenario. Prometheus' first scrape happened before `started` and the second at most one
    interval later; the evaluation after it is at most one interval later again, plus one for a scrape that
    is committed just after an evaluation began."""
    times = sorted(times)
    assert times, "no evaluations"
    assert {b - a for a, b in itertools.pairwise(times)} <= {1000}, times
    assert times[0] <= run.started * 1000 + 3000, (times[0], run.started)
    assert times[-1] > run.quiet * 1000 - 1000, (times[-1], run.quiet)


@pytest.mark.parametrize(
    ("record", "counter", "by"),
    [
        ("category:gmail_rejections:rate5m", "gmail_rejections_total", "category"),
        ("job:gmail_rejections:rate5m", "gmail_rejections_total", None),
        ("status:gmail_deliveries:rate5m", "gmail_deliveries_total", "status"),
        ("job:gmail_deliveries:rate5m", "gmail_deliveries_total", None),
    ],
)
def test_rate_rules_equal_prometheus_rate_of_the_scraped_counters(
    run: Run, record: str, counter: str, by: str | None
) -> None:
    """Each recorded sample equals sum(rate(counter[20s])) recomputed from the raw samples at the rule's own
    evaluation time. A scrape that started just before an evaluation may be committed just after it, so the
    rule either saw the latest scrape or not: the value must be one of those two, to float precision."""
    until = run.quiet
    rules = recorded(run, record, until)
    raw = recorded(run, counter, until)
    scrapes = sorted({p.t for points in raw.values() for p in points})
    groups: dict[str, list[list[stack.Point]]] = {}
    for labels, points in raw.items():
        groups.setdefault(dict(labels).get(by, "") if by else "", []).append(points)
    checked = Counter[str]()
    for labels, points in rules.items():
        key = dict(labels).get(by, "") if by else ""
        assert dict(labels) == ({"job": JOB, by: key} if by else {"job": JOB})
        for p in points:
            latest = max(t for t in scrapes if t <= p.t)
            candidates = [
                stack.summed_rate(groups[key], p.t, WINDOW_S * 1000),
                stack.summed_rate(
                    [[q for q in s if q.t != latest] for s in groups[key]], p.t, WINDOW_S * 1000
                ),
            ]
            matches = [
                c for c in candidates if c is not None and math.isclose(c, p.v, rel_tol=1e-9, abs_tol=1e-12)
            ]
            assert matches, (record, key, p, candidates)
            checked["saw the latest scrape" if matches[0] is candidates[0] else "missed it"] += 1
    for points in rules.values():
        assert_every_evaluation(run, [p.t for p in points])
    print(f"{record}: {dict(checked)}")


def test_rates_are_positive_only_for_the_refused_categories_and_zero_afterwards(run: Run) -> None:
    rates = recorded(run, "category:gmail_rejections:rate5m", run.quiet)
    peaks = {dict(labels)["category"]: max(p.v for p in points) for labels, points in rates.items()}
    assert len(peaks) == 16
    print(
        f"peak rates: authentication {peaks['authentication']:.4f}/s, rate_limit {peaks['rate_limit']:.4f}/s"
    )
    assert {category for category, peak in peaks.items() if peak > 0} == {"authentication", "rate_limit"}
    # Above the alert floors (6 and 15 refusals per window). At most what was sent, plus what Prometheus adds
    # by extrapolating the burst's slope (refusals per 1 s round) to the window's edges: up to 1.1 sample
    # intervals on each side.
    for category, rows in (("authentication", [DMARC]), ("rate_limit", [RECEIVING_RATE, UNUSUAL_RATE])):
        alert = AUTH if category == "authentication" else RATE
        ceiling = (sum(SENT[row] for row in rows) + 2.2 * sum(PER_ROUND[row] for row in rows)) / WINDOW_S
        assert THRESHOLDS[(alert, "rate_per_second")] < peaks[category] <= ceiling, (
            category,
            peaks[category],
        )
    final = run.prometheus.vector("category:gmail_rejections:rate5m", run.quiet)
    assert set(final.values()) == {0.0}
    assert len(final) == 16


def test_baseline_is_exactly_zero_without_history(run: Run) -> None:
    """No data 15 minutes back: the baseline is `rate * 0`, so only the rate floor decides."""
    baselines = recorded(run, "category:gmail_rejections:rate5m_avg6h_offset15m", run.quiet)
    assert len(baselines) == 16
    assert {p.v for points in baselines.values() for p in points} == {0.0}


def test_ratio_rules_are_the_quotients_of_the_recorded_rates(run: Run) -> None:
    """Acceptance and rejection ratios divide by the final outcomes (sent, bounced, expired); the deferral ratio
    divides deferral attempts by every delivery attempt."""

    def series(name: str, **labels: str) -> dict[int, float]:
        (points,) = [ps for ls, ps in recorded(run, name, run.quiet).items() if set(labels.items()) <= ls]
        return {p.t: p.v for p in points}

    status = {
        s: series("status:gmail_deliveries:rate5m", status=s)
        for s in ("sent", "deferred", "bounced", "expired")
    }
    attempts, final = series("job:gmail_deliveries:rate5m"), series("job:gmail_final_outcomes:rate5m")
    for t, value in final.items():
        parts = status["sent"][t] + status["bounced"][t] + status["expired"][t]
        assert math.isclose(value, parts, rel_tol=1e-12, abs_tol=1e-12), t
    for name, numerator, denominator in (
        ("job:gmail_acceptance_ratio:rate5m", lambda t: status["sent"][t], final),
        ("job:gmail_rejection_ratio:rate5m", lambda t: status["bounced"][t] + status["expired"][t], final),
        ("job:gmail_deferral_ratio:rate5m", lambda t: status["deferred"][t], attempts),
    ):
        ratio = series(name)
        assert_every_evaluation(run, list(ratio))
        for t, value in ratio.items():
            if denominator[t] == 0:
                assert math.isnan(value), (name, t)
            else:
                assert math.isclose(value, numerator(t) / denominator[t], rel_tol=1e-12, abs_tol=1e-12), (
                    name,
                    t,
                )
                assert 0 <= value <= 1, (name, t, value)
        # While the burst is in the window, some outcomes are refused; with no traffic, 0/0 = NaN.
        peak = max(v for v in ratio.values() if not math.isnan(v))
        print(f"{name}: max {peak:.4f}")
        assert peak > 0
        assert math.isnan(ratio[max(ratio)])


# -- the alerts ---------------------------------------------------------------------------------------------
def test_alerts_fire_reach_alertmanager_and_the_webhook_then_resolve(run: Run) -> None:
    received = run.webhook.alerts()
    assert received, "no notification reached the webhook"
    assert {labels["alertname"] for _, _, _, labels in received} == {AUTH, RATE}
    for alert, (labels, receivers) in ROUTES.items():
        expected = {"alertname": alert, "job": JOB, **labels}
        mine = [(t, receiver, status, ls) for t, receiver, status, ls in received if ls["alertname"] == alert]
        assert all(ls == expected for _, _, _, ls in mine), mine
        assert {receiver for _, receiver, _, _ in mine} == receivers
        for receiver in receivers:
            statuses = [status for _, r, status, _ in mine if r == receiver]
            assert statuses[0] == "firing" and statuses[-1] == "resolved", (alert, receiver, statuses)

    firing = {a["labels"]["alertname"]: a for a in run.alertmanager_firing}
    assert set(firing) == {AUTH, RATE}, run.alertmanager_firing
    for alert, (labels, receivers) in ROUTES.items():
        assert firing[alert]["labels"] == {"alertname": alert, "job": JOB, **labels}
        assert {r["name"] for r in firing[alert]["receivers"]} == receivers
        assert firing[alert]["status"]["state"] == "active"
        assert firing[alert]["annotations"]["runbook_url"] == f"{stack.runbook_url()}#{alert.lower()}"
    assert run.alertmanager_after == []


def test_alert_latencies(run: Run) -> None:
    """Fire: from sending the first mail Gmail refuses in the category to the first firing notification; the
    rate has to climb above the floor (6 or 15 refusals per window) first. Resolve: from sending the last one to
    the resolved notification; the rate has to fall below the floor again, so this is bounded by the window.
    Pipeline: from the rule evaluation that changed the alert's state (startsAt / endsAt, set by Prometheus)
    to the webhook: Prometheus' notifier, Alertmanager's group_wait or group_interval (1 s) and the POST."""
    refusals = {AUTH: run.sent[DMARC], RATE: run.sent[RECEIVING_RATE] + run.sent[UNUSUAL_RATE]}
    for alert, (_, receivers) in ROUTES.items():
        for receiver in receivers:
            mine = [
                (t, a)
                for t, r, a in run.webhook.events()
                if r == receiver and a["labels"]["alertname"] == alert
            ]
            fired_at, firing = min(((t, a) for t, a in mine if a["status"] == "firing"), key=lambda x: x[0])
            resolved_at, resolved = max(
                ((t, a) for t, a in mine if a["status"] == "resolved"), key=lambda x: x[0]
            )
            fired = fired_at - min(refusals[alert])
            cleared = resolved_at - max(refusals[alert])
            fire_pipeline = fired_at - datetime.fromisoformat(firing["startsAt"]).timestamp()
            resolve_pipeline = resolved_at - datetime.fromisoformat(resolved["endsAt"]).timestamp()
            print(
                f"{alert} -> {receiver}: fired {fired:.1f} s after the first refusal was sent "
                f"(pipeline {fire_pipeline:.2f} s), resolved {cleared:.1f} s after the last "
                f"(pipeline {resolve_pipeline:.2f} s)"
            )
            assert 0 < fired < 10, (alert, receiver, fired)
            assert 0 < cleared < WINDOW_S + 5, (alert, receiver, cleared)
            assert 0 < fire_pipeline < 5 and 0 < resolve_pipeline < 5, (fire_pipeline, resolve_pipeline)


def test_prometheus_evaluates_every_rule_of_the_test_copy_without_error(run: Run) -> None:
    groups = run.prometheus.get("/api/v1/rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    source = stack.rules_for_test(WINDOW, THRESHOLDS, {})
    assert sorted(group["name"] for group in groups) == sorted(group["name"] for group in source["groups"])
    assert len(loaded) == len(
        {rule.get("record") or rule["alert"] for group in source["groups"] for rule in group["rules"]}
    )
    assert [(name, rule["lastError"]) for name, rule in loaded.items() if rule["health"] != "ok"] == []
    assert "[20s]" in loaded["category:gmail_rejections:rate5m"]["query"]
    assert {
        name: rule["state"]
        for name, rule in loaded.items()
        if rule["type"] == "alerting" and rule["state"] != "inactive"
    } == {}
