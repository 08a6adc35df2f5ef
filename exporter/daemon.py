"""The `run` command: sources -> ingest (analyser, metrics) -> web, with the state file checkpointed.

Start-up is a sequence of named steps, each of which either succeeds or ends the process with a clear message:
load the configuration, lock and read the state file, build the store and the sources, serve, start the sources.
Then the loop writes the state when it is due and reloads on request, until SIGTERM.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType
from typing import Any

from prometheus_client import ProcessCollector
from prometheus_client.registry import Collector as PromCollector

from exporter import __version__, config, web, webconfig
from exporter.analyse import MAX_LINE_BYTES, SKIP_REASONS, Analyser
from exporter.config import Config
from exporter.errors import ConfigError
from exporter.ingest import Ingest, LineAnalyser
from exporter.metrics import Metrics
from exporter.metrics import saved as saved_metrics
from exporter.metrics.exposition import Exposition
from exporter.metrics.families import Collector
from exporter.queue import reader as queue_reader
from exporter.queue.classify import QueueClassifier
from exporter.queue.collector import QueueCollector
from exporter.queue.domains import GoogleDomains
from exporter.queue.shared import GoogleHosts
from exporter.rules import CATEGORIES, Rules, load_rules
from exporter.sources import Source, SourceStatus, join
from exporter.sources.files import PERMISSION_HINT, STATE_PERMISSION_DENIED, FileSource, open_failure
from exporter.sources.journal import JournalSource
from exporter.sources.position import FilePosition, JournalPosition
from exporter.sources.reader import open_plain
from exporter.sources.stdin import StdinSource
from exporter.state import Checkpointer, Snapshot, StateFile, StateLocked

log = logging.getLogger("exporter")

EXIT_CONFIG = 2
EXIT_RUNTIME = 1
JOIN_SECONDS = 5.0

AnalyserFactory = Callable[[Config, Rules], LineAnalyser]
RulesLoader = Callable[[Sequence[str]], Rules]


def make_analyser(cfg: Config, rules: Rules) -> LineAnalyser:
    """One analyser per stream: it keeps that stream's year and queue-id joins."""
    return Analyser.for_config(cfg, rules)


def new_metrics(cfg: Config) -> Metrics:
    return Metrics(categories=CATEGORIES, skip_reasons=SKIP_REASONS, sender_domains=cfg.sender_domains)


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
        clock: Callable[[], float] = time.monotonic,
        watch: bool = True,
    ) -> None:
        self.args = args
        self._analyser_factory = analyser_factory
        self._rules_loader = rules_loader
        self._journalctl = journalctl
        self._announce = announce
        self._clock = clock
        self._watch = watch
        self._stop = threading.Event()
        self._reload_requested = threading.Event()
        self._reload_lock = threading.Lock()
        self._sources: list[Source] = []
        self._threads: list[threading.Thread] = []
        self._started_up = False
        """Set once every source resumed and where each began following was saved: ready from then on while healthy."""
        self.config: Config | None = None
        self.server: web.Server | None = None
        self.checkpointer: Checkpointer | None = None
        self.ingest: Ingest | None = None
        self.domains = GoogleDomains()
        """Recipient domains seen delivered to Google: the queue reader counts them as bound for Google."""
        self.queue: queue_reader.QueueReader | None = None
        self._queue_thread: threading.Thread | None = None

    # -- start-up steps --

    def load(self) -> tuple[Config, Rules, webconfig.WebSecurity]:
        """Reads config, rules and web config; raises ConfigError."""
        cfg = config.load(self.args)
        rules = self._rules_loader(cfg.rules_files)
        security = webconfig.load(cfg.web.config_file)
        return cfg, rules, security

    def _configure_logging(self, cfg: Config) -> None:
        logging.basicConfig(
            level=cfg.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )

    def _validator(self, cfg: Config, rules: Rules) -> Callable[[Snapshot], None]:
        """Checks that a saved snapshot restores: its counters into a scratch store, each stream's memory into a
        scratch analyser. Raises ValueError."""

        def validate(snapshot: Snapshot) -> None:
            saved_metrics.restore(new_metrics(cfg), snapshot.metrics)
            for key, memory in snapshot.memory.items():
                try:
                    self._analyser_factory(cfg, rules).restore_memory(memory)
                except ValueError as err:
                    raise ValueError(f"memory[{key!r}]: {err}") from err

        return validate

    def _restore(self, state: StateFile, cfg: Config, rules: Rules, metrics: Metrics, ingest: Ingest) -> None:
        snapshot = state.load(self._validator(cfg, rules))
        if snapshot is None:
            return
        saved_metrics.restore(metrics, snapshot.metrics)
        ingest.restore(snapshot)
        if snapshot.google_domains is not None:
            try:
                self.domains.restore(snapshot.google_domains)
            except ValueError as err:
                log.warning("state file %s: %s; learning Google's customer domains afresh", state.path, err)
        assert self.checkpointer is not None
        self.checkpointer.write_errors = snapshot.write_errors
        log.info("resuming from %s", state.path)

    def _build_sources(self, cfg: Config, ingest: Ingest, state: StateFile) -> list[Source]:
        saved = ingest.positions()
        sources: list[Source] = []
        files = [p for p in cfg.log.paths if p != "-"]
        if files:
            sources.append(
                FileSource(
                    files,
                    ingest,
                    max_line_bytes=MAX_LINE_BYTES,
                    from_beginning=cfg.from_beginning,
                    saved={k: p for k, p in saved.items() if isinstance(p, FilePosition)},
                    exclude=state.owns,
                    clock=self._clock,
                    watch=self._watch,
                )
            )
        if "-" in cfg.log.paths:
            sources.append(StdinSource(ingest, max_line_bytes=MAX_LINE_BYTES))
        if cfg.journal.enabled:
            journal = saved.get("journal")
            sources.append(
                JournalSource(
                    ingest,
                    units=cfg.journal.units,
                    identifiers=cfg.journal.identifiers,
                    from_beginning=cfg.from_beginning,
                    saved=journal if isinstance(journal, JournalPosition) else None,
                    journalctl=self._journalctl,
                )
            )
        return sources

    def _serve(self, cfg: Config, security: webconfig.WebSecurity, metrics: Metrics) -> web.Server:
        """Raises OSError when the address cannot be bound."""
        checkpointer = self.checkpointer
        assert checkpointer is not None
        collectors: list[PromCollector] = []
        snapshot = None
        if self.queue is not None:
            queue = self.queue
            snapshot = lambda: queue.snapshot  # noqa: E731
            collectors.append(QueueCollector(snapshot))
        collectors.append(
            Collector(
                metrics,
                version=__version__,
                statuses=self.statuses,
                state_write_errors=lambda: checkpointer.write_errors,
            )
        )
        collectors.append(ProcessCollector(registry=None))
        app = web.App(
            version=__version__,
            metrics=metrics,
            exposition=Exposition(collectors),
            statuses=self.statuses,
            ready=self.ready,
            healthy=self.healthy,
            reload=self.reload,
            telemetry_path=cfg.web.telemetry_path,
            security=security,
            queue=snapshot,
            runbook_url=cfg.web.runbook_url,
        )
        host, port = config.parse_listen_address(cfg.web.listen_address)
        server = web.serve(host, port, app, cfg.web)
        scheme = "https" if security.tls is not None else "http"
        url = f"{scheme}://{host or 'localhost'}:{server.server_address[1]}/"
        log.info("gmail-rejection-exporter %s listening on %s", __version__, url)
        if self._announce is not None:
            self._announce(url)
        return server

    def _build_queue(self, cfg: Config, rules: Rules) -> None:
        """The queue reader, or none (`--queue.mta none`, or `auto` finding no MTA's queue command)."""
        classifier = QueueClassifier(rules, GoogleHosts(cfg.google_hosts), self.domains)
        self.queue = queue_reader.build(cfg.queue.mta, cfg.queue.interval, cfg.queue.command, classifier)

    def _start_queue(self) -> None:
        # Its own long-lived thread: the listing's child is tied to the thread that starts it (PR_SET_PDEATHSIG).
        if self.queue is not None:
            thread = threading.Thread(target=self.queue.run, args=(self._stop,), name="queue", daemon=True)
            thread.start()
            self._queue_thread = thread  # once started: healthy() takes a thread not alive for one that ended

    def _start_sources(self) -> None:
        threads = [
            threading.Thread(target=source.run, args=(self._stop,), name=f"source-{i}", daemon=True)
            for i, source in enumerate(self._sources)
        ]
        for thread in threads:
            thread.start()
        self._threads = threads  # only started threads: one not started yet has not ended

    def run(self) -> int:
        try:
            cfg, rules, security = self.load()
        except ConfigError as err:
            print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
            return EXIT_CONFIG
        self.config = cfg
        self._configure_logging(cfg)
        state = StateFile(cfg.state_file)
        try:
            state.lock()
        except StateLocked as err:
            print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
            return EXIT_CONFIG
        try:
            return self._run_locked(cfg, rules, security, state)
        finally:
            state.unlock()

    def assemble(self, cfg: Config, rules: Rules, state: StateFile) -> Metrics:
        """The counter store, the ingest stage and its checkpointer restored from the (locked) state file, and the
        sources that resume from its positions: what a start, or a restart after a kill, builds before serving."""
        metrics = new_metrics(cfg)
        ingest = self.ingest = Ingest(
            metrics,
            lambda: self._analyser_factory(cfg, rules),
            learn_domains=self.domains.learn_domains,
        )
        domains = self.domains
        self.checkpointer = Checkpointer(
            state, lambda: replace(ingest.snapshot(), google_domains=domains.state())
        )
        ingest.checkpointer = self.checkpointer
        self._restore(state, cfg, rules, metrics, ingest)
        self._sources = self._build_sources(cfg, ingest, state)
        for status in self.statuses():
            metrics.add_source(status.name)
        return metrics

    def _run_locked(
        self, cfg: Config, rules: Rules, security: webconfig.WebSecurity, state: StateFile
    ) -> int:
        metrics = self.assemble(cfg, rules, state)
        assert self.checkpointer is not None
        try:
            self._build_queue(cfg, rules)
        except ValueError as err:
            print(f"gmail-rejection-exporter: queue: {err}", file=sys.stderr)
            return EXIT_CONFIG
        try:
            self.server = self._serve(cfg, security, metrics)
        except OSError as err:
            hint = {
                errno.EADDRINUSE: "another process listens there (another exporter?): stop it, or pick a free port",
                errno.EACCES: "ports below 1024 need privileges: pick a port above 1023",
            }.get(err.errno or 0, "pick another address")
            log.error(
                "cannot listen on %s: %s; %s with --web.listen-address (web.listen_address in the config file)",
                cfg.web.listen_address,
                err.strerror or err,
                hint,
            )
            return EXIT_RUNTIME
        self._install_signals()
        self.checkpointer.changed(urgent=True)  # the state as restored, under this run's lock, at once
        self._start_sources()
        self._start_queue()
        written = True
        try:
            self._loop()
        finally:
            self._stop.set()
            for source in self._sources:
                source.stop_waking()
            for name in join([*self._threads, *filter(None, [self._queue_thread])], JOIN_SECONDS):
                log.warning("%s did not stop within %.0f s; stopping without it", name, JOIN_SECONDS)
            written = self.checkpointer.flush()
            web.stop(self.server)
        if written:
            log.info("stopped; state written to %s", cfg.state_file)
        else:
            log.error(
                "stopped; the final state write to %s failed: %s",
                cfg.state_file,
                self.checkpointer.last_error,
            )
        return 0

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stop()

        def hup(signum: int, frame: FrameType | None) -> None:
            self._reload_requested.set()
            if self.checkpointer is not None:
                self.checkpointer.poke()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    def stop(self) -> None:
        """Asks the daemon to flush its state and return (what SIGTERM does)."""
        self._stop.set()
        if self.checkpointer is not None:
            self.checkpointer.poke()

    def _loop(self) -> None:
        checkpointer = self.checkpointer
        assert checkpointer is not None
        while not self._stop.is_set():
            # Sleeps until a write is due; with everything saved, until the sources bring news: an idle exporter
            # should cost nothing.
            checkpointer.wait(lambda: self._stop.is_set() or self._reload_requested.is_set())
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()
                continue
            if not self._stop.is_set():
                checkpointer.flush()

    # -- health --

    @property
    def sources(self) -> list[Source]:
        return list(self._sources)

    def statuses(self) -> list[SourceStatus]:
        return [status for source in self._sources for status in source.statuses()]

    def healthy(self) -> str | None:
        """None when healthy, else why not: a reader that failed or a thread that ended while the exporter runs is
        never healthy."""
        for status in self.statuses():
            if status.failed:
                return f"{status.name}: {status.failed}"
        # Before the sources start (the server answers probes from the moment it listens) there are no threads.
        for thread, source in zip(self._threads, self._sources, strict=False):
            finished = all(s.finished for s in source.statuses())
            if not thread.is_alive() and not self._stop.is_set() and not finished:
                return f"{thread.name} ended"
        if self._queue_thread is not None and not self._queue_thread.is_alive() and not self._stop.is_set():
            return "the queue reader ended"
        return None

    def ready(self) -> bool:
        """Every source resumed (what was logged while the exporter was down is read) and where following began
        saved (or its write tried): a kill from then on loses nothing."""
        statuses = self.statuses()
        if not statuses or self.healthy() is not None:
            return False
        if (
            self._started_up
        ):  # later starts (a late file, a new glob match) are saved too, but never flap readiness
            return True
        started = all(s.state != "opening" and s.started and s.resumed for s in statuses)
        self._started_up = started and self.checkpointer is not None and self.checkpointer.caught_up()
        return self._started_up

    # -- reload --

    def reload(self) -> str | None:
        """Reloads config, rules and web config keeping every counter and join; None on success, else the error."""
        ingest = self.ingest
        assert ingest is not None
        with self._reload_lock:
            metrics = ingest.metrics
            if self.checkpointer is not None:
                self.checkpointer.changed()  # the reload gauges change: the next write keeps them
            try:
                cfg, rules, security = self.load()
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
                "web.read_timeout": (old.web.read_timeout, cfg.web.read_timeout),
                "web.max_connections": (old.web.max_connections, cfg.web.max_connections),
                "queue": (old.queue, cfg.queue),
                "metrics.sender_domains (turning it on or off)": (
                    bool(old.sender_domains),
                    bool(cfg.sender_domains),
                ),
            }
            for what, (before, after) in restart_only.items():
                if before != after:
                    log.warning("reload: a change of %s takes effect at the next start", what)
            ingest.replace_analysers(lambda: self._analyser_factory(cfg, rules))
            if self.queue is not None:
                self.queue.classifier = QueueClassifier(rules, GoogleHosts(cfg.google_hosts), self.domains)
            self.server.set_security(security)
            self.server.app.telemetry_path = cfg.web.telemetry_path
            self.server.app.runbook_url = cfg.web.runbook_url
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


def source_problems(cfg: Config) -> list[str]:
    """Why a configured log cannot be followed right now (missing, permission denied, not a regular file)."""
    problems = []
    for path in cfg.log.paths:
        if path == "-" or any(c in path for c in "*?["):
            continue
        try:
            open_plain(path, 0, MAX_LINE_BYTES).file.close()
        except OSError as err:
            state = open_failure(err)
            hint = PERMISSION_HINT if state == STATE_PERMISSION_DENIED else ""
            problems.append(f"{path}: {state}: {err.strerror or err}{hint}")
    return problems


def check_config(args: argparse.Namespace) -> int:
    """The `check-config` command: exit 0 when config, rules and web config are usable, 2 otherwise. Logs that
    cannot be followed now are warned about (they may appear later), without failing."""
    if args.file is not None:
        if args.config_file not in (None, args.file):
            print(
                "gmail-rejection-exporter: give the config file once: FILE or --config.file", file=sys.stderr
            )
            return EXIT_CONFIG
        args.config_file = args.file
    try:
        cfg = config.load(args)
        rules = load_rules(cfg.rules_files)
        webconfig.load(cfg.web.config_file)
    except ConfigError as err:
        print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
        return EXIT_CONFIG
    for problem in source_problems(cfg):
        print(f"gmail-rejection-exporter: warning: {problem}", file=sys.stderr)
    print(f"{cfg.file or 'flags'}: OK ({len(rules.rules)} rules from {', '.join(rules.files)})")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `run` command."""
    config.add_flags(parser)
    parser.set_defaults(handler=run)


def add_check_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `check-config` command: the same as `run`, so a command line can be checked too, and the
    config file as an argument."""
    config.add_flags(parser)
    parser.add_argument(
        "file", nargs="?", metavar="FILE", help="config file to check (same as --config.file)"
    )
    parser.set_defaults(handler=check_config)
