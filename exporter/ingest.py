"""The hot path: every source's batches are analysed, counted and their position recorded.

Each source is a stream with its own analyser (its log's year and queue-id joins) and lock. A batch is analysed
under the stream's lock only, then counted and its position recorded under the store's lock, so a snapshot pairs
counters with exactly the positions they were read up to, and each stream's join memory with its position.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from exporter.analyse import Skipped
from exporter.events import Delivery, Event
from exporter.fastpath import Accepted, Refused
from exporter.metrics import Metrics
from exporter.metrics.saved import dump
from exporter.queue.domains import learnt_domain
from exporter.sources import MAX_RETIRED
from exporter.sources.position import Position
from exporter.state import Checkpointer, Snapshot

log = logging.getLogger(__name__)


class LineAnalyser(Protocol):
    """What ingest needs of an analyser (the real one is exporter.analyse.Analyser)."""

    def analyse_block(self, blob: bytes) -> tuple[int, list[Event | Skipped]]: ...

    def summarise_block(self, blob: bytes) -> tuple[int, list[Event | Skipped | Accepted | Refused]]: ...

    def memory(self) -> dict[str, Any]: ...

    def restore_memory(self, data: Any) -> None: ...


AnalyserFactory = Callable[[], LineAnalyser]

FAST_PATH_BYTES: Final = 16 * 1024
"""Blocks this long (a backlog, a big append) go through the analyser's fast path, which counts accepted mail in
runs; a few appended lines take the line-by-line path."""


@dataclass
class Stream:
    """One source's analyser and how far it was read."""

    analyser: LineAnalyser
    position: Position | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while a batch is analysed and counted, and while a snapshot copies the analyser's memory."""


class Ingest:
    """The sink of every source (see exporter.sources.Sink)."""

    def __init__(
        self,
        metrics: Metrics,
        new_analyser: AnalyserFactory,
        checkpointer: Checkpointer | None = None,
        *,
        learn: Callable[[Delivery], None] | None = None,
        learn_domains: Callable[[list[str | None]], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.checkpointer = checkpointer
        self._learn = learn
        """Told of every delivery (the queue reader learns Google's customer domains from them), unless:"""
        self._learn_domains = learn_domains
        """Told of each block's deliveries at once, as the recipient domains they teach (learnt_domain()), in
        order: one call a block rather than one a line, and accepted mail counted in runs makes no Delivery."""
        self._new_analyser = new_analyser
        self._streams: dict[str, Stream] = {}
        self._streams_lock = threading.Lock()
        self._retired: dict[str, None] = {}
        """Streams whose source is not followed now (see Sink.retired), oldest first; at most MAX_RETIRED are
        kept."""

    def restore(self, snapshot: Snapshot) -> None:
        """Positions and join memory from the state file (already validated)."""
        for key, position in snapshot.positions.items():
            self._stream(key).position = position
        for key, memory in snapshot.memory.items():
            self._stream(key).analyser.restore_memory(memory)

    def position(self, key: str) -> Position | None:
        stream = self._streams.get(key)
        return None if stream is None else stream.position

    def positions(self) -> dict[str, Position]:
        with self._streams_lock:
            streams = dict(self._streams)
        return {k: s.position for k, s in streams.items() if s.position is not None}

    def _stream(self, key: str) -> Stream:
        stream = self._streams.get(key)
        if stream is None or key in self._retired:
            with self._streams_lock:
                self._retired.pop(key, None)
                stream = self._streams.get(key)
                if stream is None:
                    stream = self._streams[key] = Stream(self._new_analyser())
        return stream

    def _forget_oldest(self) -> None:
        """Drops the oldest streams not followed now beyond MAX_RETIRED (caller holds the streams lock)."""
        while len(self._retired) > MAX_RETIRED:
            key = next(iter(self._retired))
            del self._retired[key]
            del self._streams[key]
            with self.metrics.lock:
                self.metrics.forget_source(key)

    def replace_analysers(self, new_analyser: AnalyserFactory) -> None:
        """Rules or settings changed: later batches use fresh analysers that keep each stream's join memory."""
        self._new_analyser = new_analyser
        with self._streams_lock:
            streams = list(self._streams.values())
        for stream in streams:
            with stream.lock:
                analyser = new_analyser()
                analyser.restore_memory(stream.analyser.memory())
                stream.analyser = analyser

    # -- the Sink protocol --

    def lines(self, source: str, lines: list[bytes], nbytes: int, position: Position | None) -> None:
        self.block(source, b"\n".join(lines) if lines else b"", nbytes, position, count=len(lines))

    def block(
        self, source: str, block: bytes, nbytes: int, position: Position | None, *, count: int | None = None
    ) -> None:
        stream = self._stream(source)
        with stream.lock:
            results: list[Event | Skipped | Accepted | Refused]
            if len(block) >= FAST_PATH_BYTES:
                n, results = stream.analyser.summarise_block(block)
            elif block or count:
                n, results = stream.analyser.analyse_block(block)  # type: ignore[assignment]
            else:
                n, results = 0, []
            if count is not None:
                n = count
            if self._learn_domains is not None:
                self._learn_domains(_domains(results))
            elif self._learn is not None:
                learn = self._learn
                for result in results:
                    if isinstance(result, Event):
                        learn(result.delivery)
                    elif isinstance(result, Refused):
                        learn(result.event().delivery)
                    elif isinstance(result, Accepted):
                        for delivery in result.deliveries():
                            learn(delivery)
            metrics = self.metrics
            with metrics.lock:
                for result in results:
                    if isinstance(result, Event):
                        metrics.observe(result)
                    elif isinstance(result, Refused):
                        metrics.observe_refused(result)
                    elif isinstance(result, Skipped):
                        metrics.skip(source, result.reason)
                    else:
                        metrics.observe_accepted(result)
                metrics.read(source, n, nbytes)
                if position is not None:
                    stream.position = position
            self._changed()

    def started(self, source: str, position: Position) -> None:
        stream = self._stream(source)
        with stream.lock, self.metrics.lock:
            stream.position = position
        self._changed(urgent=True)

    def rotated(self, source: str, kind: str) -> None:
        log.info("%s: rotation (%s)", source, kind)
        with self.metrics.lock:
            self.metrics.rotated(source, kind)
        self._changed()

    def error(self, source: str) -> None:
        with self.metrics.lock:
            self.metrics.source_error(source)
        self._changed()

    def retired(self, source: str) -> None:
        with self._streams_lock:
            if source in self._streams:
                self._retired.pop(source, None)
                self._retired[source] = None
                self._forget_oldest()
        self._changed()

    def _changed(self, *, urgent: bool = False) -> None:
        if self.checkpointer is not None:
            self.checkpointer.changed(urgent=urgent)

    def snapshot(self) -> Snapshot:
        """Positions, counters and join memory, taken together: every stream's lock (no batch half-counted), then
        the store's."""
        with self._streams_lock:
            streams = sorted(self._streams.items())
        held: list[threading.Lock] = []
        try:
            for _, stream in streams:
                stream.lock.acquire()
                held.append(stream.lock)
            with self.metrics.lock:
                positions = {k: s.position for k, s in streams if s.position is not None}
                metrics = dump(self.metrics)
            memory = {k: s.analyser.memory() for k, s in streams}
        finally:
            for lock in held:
                lock.release()
        return Snapshot(positions=positions, metrics=metrics, memory=memory)


def _domains(results: list[Event | Skipped | Accepted | Refused]) -> list[str | None]:
    """learnt_domain() of each delivery of a block's results, in order."""
    domains: list[str | None] = []
    for result in results:
        if isinstance(result, Accepted):
            domains += result.recipient_domains()
        elif isinstance(result, Refused):
            domains.append(result.recipient_domain)  # a recipient's outcome at a Google host
        elif isinstance(result, Event):
            domains.append(learnt_domain(result.delivery))
    return domains
