"""The `run` command: sources -> Analyser -> Metrics, served over HTTP, with state flushed to disk."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector

from exporter import __version__, config, web, webconfig
from exporter.analyse import MAX_LINE_BYTES, SKIP_REASONS, Analyser, Skipped
from exporter.config import Config
from exporter.errors import ConfigError
from exporter.events import Event
from exporter.metrics import Metrics
from exporter.rules import CATEGORIES, Rules, load_rules
from exporter.sources import Position, Source, SourceStatus
from exporter.sources.files import FileSource
from exporter.sources.journal import JournalSource
from exporter.sources.stdin import StdinSource
from exporter.state import FLUSH_SECONDS, Snapshot, StateFile

log = logging.getLogger("exporter")

EXIT_CONFIG = 2
EXIT_RUNTIME = 1
JOIN_SECONDS = 5.0


class LineAnalyser(Protocol):
    """What the daemon needs of an analyser (the real one is exporter.analyse.Analyser)."""

    def analyse_batch(self, lines: list[bytes]) -> list[Event | Skipped]: ...

    def analyse_block(self, blob: bytes) -> tuple[int, list[Event | Skipped]]: ...


AnalyserFactory = Callable[[Config, Rules], LineAnalyser]
RulesLoader = Callable[[Sequence[str]], Rules]


def make_analyser(cfg: Config, rules: Rules) -> LineAnalyser:
    """One analyser per stream: it keeps that stream's year and queue-id joins."""
    return Analyser.for_config(cfg, rules)


class Ingest:
    """The sink of every source: analyses a batch outside the lock, then counts it and records the position
    under the metrics lock, so a state snapshot pairs counters with exactly the positions they were read up to."""

    def __init__(self, metrics: Metrics, new_analyser: Callable[[], LineAnalyser]) -> None:
        self.metrics = metrics
        self.positions: dict[str, Position] = {}
        self.generation = 0
        """Bumped whenever counters or positions change, so an idle flush can skip building a snapshot."""
        self.wake: threading.Event | None = None
        """Set at the first change after the daemon went to sleep with everything saved (see sleep_until_news)."""
        self._asleep = False
        self._new_analyser = new_analyser
        self._analysers: dict[str, LineAnalyser] = {}

    def replace_analysers(self, new_analyser: Callable[[], LineAnalyser]) -> None:
        """Rules or settings changed: later batches use fresh analysers."""
        self._new_analyser = new_analyser
        self._analysers = {}

    def lines(
        self, source: str, lines: list[bytes], nbytes: int, key: str, position: Position | None
    ) -> None:
        self._count(source, len(lines), self._analyser(source).analyse_batch(lines), nbytes, key, position)

    def block(self, source: str, block: bytes, nbytes: int, key: str, position: Position | None) -> None:
        count, results = self._analyser(source).analyse_block(block)
        self._count(source, count, results, nbytes, key, position)

    def _analyser(self, source: str) -> LineAnalyser:
        analyser = self._analysers.get(source)
        if analyser is None:
            analyser = self._analysers[source] = self._new_analyser()
        return analyser

    def _count(
        self,
        source: str,
        count: int,
        results: list[Event | Skipped],
        nbytes: int,
        key: str,
        position: Position | None,
    ) -> None:
        """Counts a batch analysed outside the lock and records its position, together, under the lock."""
        metrics = self.metrics
        with metrics.lock:
            for result in results:
                if isinstance(result, Skipped):
                    metrics.skip(source, result.reason)
                else:
                    metrics.observe(result)
            metrics.read(source, count, nbytes)
            if position is not None:
                self.positions[key] = position
            self.changed()

    def changed(self) -> None:
        """Counters, positions or gauges changed; call under the metrics lock."""
        self.generation += 1
        if self._asleep:
            self._asleep = False
            if self.wake is not None:
                self.wake.set()

    def sleep_until_news(self, saved_generation: int) -> bool:
        """True (and the next change sets `wake`) when everything up to `saved_generation` is all there is: the
        daemon may then sleep without a timer. An idle exporter wakes for nothing."""
        with self.metrics.lock:
            self._asleep = self.generation == saved_generation
            return self._asleep

    def rotated(self, source: str, kind: str) -> None:
        log.info("%s: rotation (%s)", source, kind)
        with self.metrics.lock:
            self.metrics.rotated(source, kind)
            self.changed()

    def error(self, source: str) -> None:
        with self.metrics.lock:
            self.metrics.source_error(source)
            self.changed()

    def snapshot(self) -> Snapshot:
        with self.metrics.lock:
            return Snapshot(positions=dict(self.positions), metrics=self.metrics.dump())


class Daemon:
    """One running exporter: its config, sources, metrics, web server and state file."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        analyser_factory: AnalyserFactory = make_analyser,
        rules_loader: RulesLoader = load_rules,
        journalctl: str = "journalctl",
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.args = args
        self._analyser_factory = analyser_factory
        self._rules_loader = rules_loader
        self._journalctl = journalctl
        self._announce = announce
        self._stop = threading.Event()
        self._reload_requested = threading.Event()
        self._wake = threading.Event()
        """Set with _stop or _reload_requested: the main loop sleeps until the next flush otherwise."""
        self._saved: Snapshot | None = None
        self._saved_generation = -1
        self._reload_lock = threading.Lock()
        self._sources: list[Source] = []
        self.config: Config | None = None
        self.server: web.Server | None = None

    def _load(self) -> tuple[Config, Rules, webconfig.WebSecurity]:
        """Reads config, rules and web config; raises ConfigError."""
        cfg = config.load(self.args)
        rules = self._rules_loader(cfg.rules_files)
        security = webconfig.load(cfg.web.config_file)
        return cfg, rules, security

    def statuses(self) -> list[SourceStatus]:
        return [status for source in self._sources for status in source.statuses()]

    def ready(self) -> bool:
        statuses = self.statuses()
        return bool(statuses) and all((s.open or s.finished) and s.resumed for s in statuses)

    def run(self) -> int:
        try:
            cfg, rules, security = self._load()
        except ConfigError as err:
            print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
            return EXIT_CONFIG
        self.config = cfg
        logging.basicConfig(
            level=cfg.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        state = StateFile(cfg.state_file)
        snapshot = state.load()
        metrics = Metrics(
            version=__version__,
            categories=CATEGORIES,
            skip_reasons=SKIP_REASONS,
            sender_domains=cfg.sender_domains,
            statuses=self.statuses,
        )
        ingest = Ingest(metrics, lambda: self._analyser_factory(cfg, rules))
        if snapshot is not None:
            metrics.restore(snapshot.metrics)
            ingest.positions.update(snapshot.positions)
            log.info("resuming from %s", cfg.state_file)
        self._sources = self._build_sources(cfg, ingest, dict(ingest.positions))
        for status in self.statuses():
            metrics.add_source(status.name)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics)
        ProcessCollector(registry=registry)
        app = web.App(
            version=__version__,
            metrics=metrics,
            registry=registry,
            statuses=self.statuses,
            ready=self.ready,
            reload=lambda: self.reload(ingest),
            telemetry_path=cfg.web.telemetry_path,
            security=security,
        )
        host, port = config.parse_listen_address(cfg.web.listen_address)
        try:
            self.server = web.serve(host, port, app)
        except OSError as err:
            log.error("cannot listen on %s: %s", cfg.web.listen_address, err)
            return EXIT_RUNTIME
        scheme = "https" if security.tls is not None else "http"
        bound_port = self.server.server_address[1]
        url = f"{scheme}://{host or 'localhost'}:{bound_port}/"
        log.info("gmail-rejection-exporter %s listening on %s", __version__, url)
        if self._announce is not None:
            self._announce(url)
        self._install_signals()
        threads = [
            threading.Thread(target=source.run, args=(self._stop,), name=f"source-{i}", daemon=True)
            for i, source in enumerate(self._sources)
        ]
        for thread in threads:
            thread.start()
        try:
            self._loop(state, ingest)
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(JOIN_SECONDS)
            self._flush(state, ingest)
            web.stop(self.server)
        log.info("stopped; state written to %s", cfg.state_file)
        return 0

    def _build_sources(self, cfg: Config, ingest: Ingest, saved: dict[str, Position]) -> list[Source]:
        sources: list[Source] = []
        files = [p for p in cfg.log.paths if p != "-"]
        if files:
            sources.append(
                FileSource(
                    files,
                    ingest,
                    max_line_bytes=MAX_LINE_BYTES,
                    from_beginning=cfg.from_beginning,
                    saved=saved,
                )
            )
        if "-" in cfg.log.paths:
            sources.append(StdinSource(ingest, max_line_bytes=MAX_LINE_BYTES))
        if cfg.journal.enabled:
            sources.append(
                JournalSource(
                    ingest,
                    units=cfg.journal.units,
                    identifiers=cfg.journal.identifiers,
                    from_beginning=cfg.from_beginning,
                    saved=saved.get("journal"),
                    journalctl=self._journalctl,
                )
            )
        return sources

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stop()

        def hup(signum: int, frame: FrameType | None) -> None:
            self._reload_requested.set()
            self._wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    def stop(self) -> None:
        """Asks the daemon to flush its state and return (what SIGTERM does)."""
        self._stop.set()
        self._wake.set()

    def _loop(self, state: StateFile, ingest: Ingest) -> None:
        ingest.wake = self._wake
        next_flush: float | None = time.monotonic() + FLUSH_SECONDS
        while not self._stop.is_set():
            # Sleep until the next flush unless a signal wakes us; with everything saved, sleep until the
            # sources bring news: an idle exporter should cost nothing.
            self._wake.wait(None if next_flush is None else max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload(ingest)
            now = time.monotonic()
            if next_flush is None:
                next_flush = now + FLUSH_SECONDS
            elif now >= next_flush:
                self._flush(state, ingest)
                next_flush = None if ingest.sleep_until_news(self._saved_generation) else now + FLUSH_SECONDS

    _write_failing = False

    def _flush(self, state: StateFile, ingest: Ingest, *, force: bool = False) -> None:
        generation = ingest.generation
        if self._saved is not None and generation == self._saved_generation and not force:
            return  # nothing was read since the last write: an idle log costs neither a snapshot nor an fsync
        snapshot = ingest.snapshot()
        if snapshot == self._saved:
            self._saved_generation = generation
            return
        try:
            state.save(snapshot)
        except OSError as err:
            with ingest.metrics.lock:
                ingest.metrics.state_write_errors += 1
            if not self._write_failing:
                log.error("cannot write state file %s (still serving; will retry): %s", state.path, err)
            self._write_failing = True
            return
        if self._write_failing:
            log.info("state file %s written again", state.path)
        self._write_failing = False
        self._saved = snapshot
        self._saved_generation = generation

    def reload(self, ingest: Ingest) -> str | None:
        """Reloads config, rules and web config keeping every counter; None on success, else the error."""
        with self._reload_lock:
            metrics = ingest.metrics
            with metrics.lock:
                ingest.changed()  # the reload gauges change: the next flush writes them
            try:
                cfg, rules, security = self._load()
            except ConfigError as err:
                log.error("reload failed, keeping the running configuration: %s", err)
                with metrics.lock:
                    metrics.reload_successful = 0.0
                return str(err)
            old = self.config
            assert old is not None and self.server is not None
            restart_only = {
                "log": (old.log.paths, cfg.log.paths),
                "journal": (old.journal, cfg.journal),
                "state.file": (old.state_file, cfg.state_file),
                "web.listen_address": (old.web.listen_address, cfg.web.listen_address),
                "metrics.sender_domains (turning it on or off)": (
                    bool(old.sender_domains),
                    bool(cfg.sender_domains),
                ),
            }
            for what, (before, after) in restart_only.items():
                if before != after:
                    log.warning("reload: a change of %s takes effect at the next start", what)
            ingest.replace_analysers(lambda: self._analyser_factory(cfg, rules))
            self.server.set_security(security)
            self.server.app.telemetry_path = cfg.web.telemetry_path
            with metrics.lock:
                if metrics.by_sender and cfg.sender_domains:
                    metrics.set_sender_domains(cfg.sender_domains)
                metrics.reload_successful = 1.0
                metrics.reload_success_time = time.time()
            self.config = cfg
            log.info("configuration reloaded")
            return None


def run(args: argparse.Namespace, **collaborators: Any) -> int:
    """The `run` command."""
    return Daemon(args, **collaborators).run()


def check_config(args: argparse.Namespace) -> int:
    """The `check-config` command: exit 0 when config, rules and web config are usable, 2 otherwise."""
    try:
        cfg = config.load(args)
        rules = load_rules(cfg.rules_files)
        webconfig.load(cfg.web.config_file)
    except ConfigError as err:
        print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{cfg.file or 'flags'}: OK ({len(rules.rules)} rules from {', '.join(rules.files)})")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `run` command."""
    config.add_flags(parser)
    parser.set_defaults(handler=run)


def add_check_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `check-config` command: the same as `run`, so a command line can be checked too."""
    config.add_flags(parser)
    parser.set_defaults(handler=check_config)
