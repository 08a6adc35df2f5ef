"""Building blocks of the end-to-end test: real Prometheus and Alertmanager as child processes, a webhook
receiver, test copies of our rules and Alertmanager routing, and Prometheus' own rate() arithmetic."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "gmail-rejection-exporter.rules.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.example.yml"


# -- child processes ----------------------------------------------------------------------------------------
class Service:
    """A long-running binary on loopback with its output in a file; ready when `ready_url` answers 200."""

    def __init__(self, name: str, argv: Sequence[str], ready_url: str, workdir: Path) -> None:
        self.name, self.argv, self.ready_url = name, list(argv), ready_url
        self.log = workdir / f"{name}.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Service:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.ready_url, timeout=2) as response:
                if response.status == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install Debian's '{package}' package (make test does it)")
    return path


# -- Prometheus HTTP API ------------------------------------------------------------------------------------
class PrometheusAPI:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{url}: HTTP {err.code}: {err.read().decode(errors='replace')}") from err
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; each result has `metric` and `value` ([t, "v"]) or, for a range selector, `values`."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        result: list[dict[str, Any]] = self.get("/api/v1/query", **params)["result"]
        return result

    def vector(self, expr: str, at: float | None = None) -> dict[frozenset[tuple[str, str]], float]:
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in self.query(expr, at)}

    def samples(self, expr: str, at: float | None = None) -> dict[frozenset[tuple[str, str]], list[Point]]:
        """Raw samples of a range selector (`metric[2m]`), timestamps in milliseconds."""
        return {
            frozenset(r["metric"].items()): [Point(round(t * 1000), float(v)) for t, v in r["values"]]
            for r in self.query(expr, at)
        }


# -- Alertmanager webhook receiver --------------------------------------------------------------------------
@dataclass(frozen=True)
class Notification:
    received: float  # time.time()
    receiver: str  # the path the receiver's URL points at
    payload: dict[str, Any]


@dataclass
class Webhook:
    """An HTTP server on loopback that stores every POST (Alertmanager's webhook JSON)."""

    notifications: list[Notification] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def url(self, receiver: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/{receiver}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Webhook]:
        store, lock = self.notifications, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    store.append(Notification(time.time(), self.path.strip("/"), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(10)

    def alerts(self) -> list[tuple[float, str, str, dict[str, str]]]:
        """(received, receiver, status, labels) for every alert in every notification, in arrival order."""
        return [(t, receiver, alert["status"], alert["labels"]) for t, receiver, alert in self.events()]

    def events(self) -> list[tuple[float, str, dict[str, Any]]]:
        """(received, receiver, alert as Alertmanager sent it) for every alert in every notification."""
        return [
            (n.received, n.receiver, alert) for n in list(self.notifications) for alert in n.payload["alerts"]
        ]


# -- test copies of our configuration -----------------------------------------------------------------------
WINDOW = re.compile(r"\[5m\]")


def rules_for_test(
    window: str, thresholds: Mapping[tuple[str, str], float], for_: Mapping[str, str], source: Path = RULES
) -> dict[str, Any]:
    """Our rules file with every `[5m]` range rewritten to `[window]`, the given `gmail_alert_threshold`
    series {(alert, param): value} replaced and the given alerts' `for:` changed. Everything else is kept:
    rule names, label sets, the 6 h baseline with its 15 m offset and the other alerts' windows."""
    data = yaml.safe_load(source.read_text())
    rules = [rule for group in data["groups"] for rule in group["rules"]]
    todo = dict(thresholds)
    for rule in rules:
        rule["expr"] = WINDOW.sub(f"[{window}]", rule["expr"])
        key = (rule.get("labels", {}).get("alert"), rule.get("labels", {}).get("param"))
        if rule.get("record") == "gmail_alert_threshold" and key in todo:
            assert re.fullmatch(r"vector\([0-9.]+\)", rule["expr"]), rule
            rule["expr"] = f"vector({todo.pop(key)!r})"
        if rule.get("alert") in for_:
            rule["for"] = for_[rule["alert"]]
    assert not todo, f"thresholds not in {source}: {sorted(todo)}"
    assert {rule["alert"] for rule in rules if "alert" in rule} >= set(for_), sorted(for_)
    return data  # type: ignore[no-any-return]


def threshold(alert: str, param: str, source: Path = RULES) -> float:
    for group in yaml.safe_load(source.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("record") == "gmail_alert_threshold" and rule["labels"] == {
                "alert": alert,
                "param": param,
            }:
                match = re.fullmatch(r"vector\(([0-9.]+)\)", rule["expr"])
                assert match, rule
                return float(match.group(1))
    raise KeyError((alert, param))


def runbook_url(source: Path = RULES) -> str:
    """The runbook address the rules file sets once (the url label of gmail_alert_runbook_info)."""
    for group in yaml.safe_load(source.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("record") == "gmail_alert_runbook_info":
                return str(rule["labels"]["url"])
    raise KeyError("gmail_alert_runbook_info")


def alertmanager_for_test(
    url_for: Callable[[str], str], timings: Mapping[str, str], source: Path = ALERTMANAGER_CONFIG
) -> dict[str, Any]:
    """The example Alertmanager config with its routing tree and inhibitions unchanged, every receiver
    replaced by a webhook (send_resolved) at url_for(receiver name), and the root route's timings set."""
    data = yaml.safe_load(source.read_text())
    data["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": url_for(r["name"]), "send_resolved": True}]}
        for r in data["receivers"]
    ]
    data["route"].update(timings)
    return data  # type: ignore[no-any-return]


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- Prometheus' rate() ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    t: int  # milliseconds
    v: float


def counter_rate(points: Sequence[Point], at: int, range_ms: int) -> float | None:
    """rate(counter[range]) evaluated at `at` the way Prometheus 2.x does it (extrapolatedRate in
    promql/functions.go): samples in [at - range, at], counter resets absorbed, extrapolation to the range
    boundaries when the first/last sample is close to them, never below a counter value of zero."""
    start = at - range_ms
    window = [p for p in points if start <= p.t <= at]
    if len(window) < 2:
        return None
    first, last = window[0], window[-1]
    result = last.v - first.v
    for previous, current in itertools.pairwise(window):
        if current.v < previous.v:
            result += previous.v
    to_start = (first.t - start) / 1000
    to_end = (at - last.t) / 1000
    sampled = (last.t - first.t) / 1000
    average = sampled / (len(window) - 1)
    if result > 0 and first.v >= 0:
        to_start = min(to_start, sampled * (first.v / result))
    threshold_s = average * 1.1
    extrapolated = sampled
    extrapolated += to_start if to_start < threshold_s else average / 2
    extrapolated += to_end if to_end < threshold_s else average / 2
    return result * (extrapolated / sampled) / (range_ms / 1000)


def summed_rate(series: Iterable[Sequence[Point]], at: int, range_ms: int) -> float | None:
    """sum(rate(...)) over several series; None when no series has two samples in the range."""
    rates = [r for r in (counter_rate(points, at, range_ms) for points in series) if r is not None]
    return math.fsum(rates) if rates else None
