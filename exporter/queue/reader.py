"""The queue reader: lists the MTA's queue at a fixed interval and keeps the latest QueueSnapshot."""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from exporter.queue import exim, opensmtpd, postfix, sendmail
from exporter.queue.classify import UNANSWERED_KINDS, QueueClassifier, Tally
from exporter.queue.command import (
    Listing,
    ListingError,
    default_command,
    detect,
)
from exporter.queue.listing import UNREADABLE_REASONS, ListingStats, QueuedRecipient, split_lines
from exporter.queue.programs import mta_of_command
from exporter.queue.shared import CATEGORIES

log = logging.getLogger("exporter.queue")

MIN_TIMEOUT_SECONDS: Final = 1.0

Parser = Callable[[Iterable[bytes], ListingStats, float], Iterator[QueuedRecipient]]


def _zeros(names: Sequence[str]) -> Mapping[str, int]:
    return MappingProxyType(dict.fromkeys(names, 0))


@dataclass(frozen=True)
class QueueSnapshot:
    """What the latest listing said. The queue counts are meaningful only when `success` is true."""

    success: bool
    recipients: Mapping[str, int] = field(default_factory=lambda: _zeros(CATEGORIES))
    """Google-bound recipients whose last attempt got a Google reply, by category (every category present)."""
    unanswered: Mapping[str, int] = field(default_factory=lambda: _zeros(UNANSWERED_KINDS))
    """Google-bound recipients whose last attempt got no reply, by kind, and not_tried (every kind present)."""
    oldest_age_seconds: float = 0.0
    """Age of the oldest queued message bound for Google; 0 when none is."""
    unreadable: Mapping[str, int] = field(default_factory=lambda: _zeros(UNREADABLE_REASONS))
    """Listing entries skipped, by reason."""
    duration_seconds: float = 0.0
    last_success_time: float = 0.0
    """When the last successful listing ended (Unix time; 0: never)."""
    error: str | None = None


class QueueReader:
    """Runs one MTA's queue listing every `interval` seconds (at most `interval` each, then it is ended) and
    classifies each queued recipient. Clock and sleep are injected so tests drive time."""

    def __init__(
        self,
        mta: str,
        argv: Sequence[str],
        classifier: QueueClassifier,
        *,
        interval: float,
        timeout: float | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        msglog_directory: str | None = None,
    ) -> None:
        if mta not in _PARSERS:
            raise ValueError(f"no queue parser for {mta!r}")
        self.mta = mta
        self.argv = list(argv)
        self.classifier = classifier
        self.interval = interval
        self.timeout = max(MIN_TIMEOUT_SECONDS, interval if timeout is None else timeout)
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._msglogs = (
            EximMessageLogs(self.argv, self.timeout, monotonic, directory=msglog_directory)
            if mta == "exim"
            else None
        )
        self._failing: str | None = None
        self.snapshot = QueueSnapshot(success=False, error="not listed yet")
        """The latest snapshot (replaced whole, so readers in other threads need no lock)."""

    def run(self, stop: threading.Event) -> None:
        """Lists the queue until `stop` is set: one listing, then `interval` of rest, and so on."""
        sleep = self._sleep or stop.wait
        while not stop.is_set():
            self.scrape()
            if stop.is_set():
                break
            sleep(self.interval)

    def scrape(self) -> QueueSnapshot:
        """Runs one listing and publishes its snapshot. Never raises."""
        started = self._monotonic()
        now = self._clock()
        stats = ListingStats()
        tally = Tally()
        try:
            with Listing(self.argv, self.timeout, monotonic=self._monotonic) as listing:
                lines = split_lines(listing.chunks(), _MAX_LINE_BYTES[self.mta], stats)
                tally.add_all(self.classifier, self._parse(lines, stats, now))
                listing.finish()
            if stats.messages == 0 and stats.skipped:
                raise ListingError(
                    f"nothing in the listing reads as {self.mta}'s queue (is --queue.mta right?)"
                )
        except ListingError as err:
            return self._failed(str(err), started)
        except Exception as err:  # a parser bug costs one listing, never the reader
            cause = f"unexpected error: {type(err).__name__}"
            if cause != self._failing:
                log.exception("queue listing (%s): %s", " ".join(self.argv), cause)
            return self._failed(cause, started, logged=True)
        ended = self._clock()
        oldest = 0.0 if tally.oldest is None else max(0.0, now - tally.oldest)
        snapshot = QueueSnapshot(
            success=True,
            recipients=MappingProxyType(tally.categories),
            unanswered=MappingProxyType(tally.unanswered),
            oldest_age_seconds=oldest,
            unreadable=MappingProxyType(stats.unreadable),
            duration_seconds=self._monotonic() - started,
            last_success_time=ended,
        )
        if self._failing is not None:
            log.info("queue listing (%s) works again", " ".join(self.argv))
            self._failing = None
        self.snapshot = snapshot
        return snapshot

    def _parse(self, lines: Iterable[bytes], stats: ListingStats, now: float) -> Iterator[QueuedRecipient]:
        if self._msglogs is not None:
            return exim.parse(lines, stats, self._msglogs.read, now)
        return _PARSERS[self.mta](lines, stats, now)

    def _failed(self, cause: str, started: float, *, logged: bool = False) -> QueueSnapshot:
        if cause != self._failing and not logged:
            log.error("queue listing (%s) failed: %s", " ".join(self.argv), cause)
        self._failing = cause
        snapshot = QueueSnapshot(
            success=False,
            duration_seconds=self._monotonic() - started,
            last_success_time=self.snapshot.last_success_time,
            error=cause,
        )
        self.snapshot = snapshot
        return snapshot


class EximMessageLogs:
    """Exim's message logs, in the spool directory that Exim names (`exim -bP spool_directory`, asked once
    through the same command prefix as the listing, e.g. with sudo)."""

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float,
        monotonic: Callable[[], float],
        *,
        directory: str | None = None,
    ) -> None:
        prefix = list(argv)
        while prefix and prefix[-1].startswith("-bp"):
            prefix.pop()
        self._ask = [*prefix, "-bP", "spool_directory"]
        self._timeout = timeout
        self._monotonic = monotonic
        self._directory = directory
        """The msglog directory when known (a spool mounted elsewhere); else asked from Exim at first use."""

    def directory(self) -> str:
        if self._directory is None:
            with Listing(self._ask, self._timeout, monotonic=self._monotonic) as listing:
                output = b"".join(listing.chunks()).decode("utf-8", "replace")
                listing.finish()
            name, _, value = output.strip().partition("=")
            if name.strip() != "spool_directory" or not value.strip().startswith("/"):
                raise ListingError(f"{' '.join(self._ask)} did not name Exim's spool directory")
            self._directory = os.path.join(value.strip(), "msglog")
        return self._directory

    def read(self, message_id: str) -> bytes | None:
        """The end of a message's log; None when it has none (gone since the listing). Raises ListingError when
        the logs cannot be read at all (permissions: see the runbook)."""
        if not exim.MESSAGE_ID.fullmatch(message_id):
            return None
        directory = self.directory()
        # split_spool_directory keeps each message under a subdirectory named by the id's sixth character.
        for path in (os.path.join(directory, message_id), os.path.join(directory, message_id[5], message_id)):
            try:
                # Non-blocking and only a regular file: a FIFO or device in the spool must not hang the reader.
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                with open(fd, "rb") as handle:
                    status = os.fstat(fd)
                    if not stat.S_ISREG(status.st_mode):
                        return None
                    size = status.st_size
                    if size > exim.MAX_MSGLOG_BYTES:
                        handle.seek(size - exim.MAX_MSGLOG_BYTES)
                        handle.readline()  # a partial line
                    return handle.read(exim.MAX_MSGLOG_BYTES)
            except FileNotFoundError:
                continue
            except OSError as err:
                if err.errno in (errno.EACCES, errno.EPERM):
                    raise ListingError(
                        f"cannot read Exim's message logs in {directory}: {err.strerror}"
                    ) from err
                return None
        return None


def _postfix(lines: Iterable[bytes], stats: ListingStats, now: float) -> Iterator[QueuedRecipient]:
    return postfix.parse(lines, stats)


def _opensmtpd(lines: Iterable[bytes], stats: ListingStats, now: float) -> Iterator[QueuedRecipient]:
    return opensmtpd.parse(lines, stats)


def _exim_without_logs(lines: Iterable[bytes], stats: ListingStats, now: float) -> Iterator[QueuedRecipient]:
    return exim.parse(lines, stats, lambda message_id: None, now)


_PARSERS: Final[dict[str, Parser]] = {
    "postfix": _postfix,
    "exim": _exim_without_logs,
    "sendmail": sendmail.parse,
    "opensmtpd": _opensmtpd,
}
_MAX_LINE_BYTES: Final = {
    "postfix": postfix.MAX_LINE_BYTES,
    "exim": exim.MAX_LINE_BYTES,
    "sendmail": sendmail.MAX_LINE_BYTES,
    "opensmtpd": opensmtpd.MAX_LINE_BYTES,
}


def choose(mta: str, command: Sequence[str]) -> tuple[str, list[str]] | None:
    """(MTA, listing argv) for --queue.mta and --queue.command; None when the reader is off (`none`, or `auto`
    finding no queue command). Raises ValueError for a choice that cannot work."""
    if mta == "none":
        return None
    if command:
        chosen = mta_of_command(command) if mta == "auto" else mta
        if chosen is None:
            raise ValueError(
                f"cannot tell which MTA {' '.join(command)!r} lists: set --queue.mta (postfix, exim, sendmail, "
                "opensmtpd)"
            )
        return chosen, list(command)
    chosen = detect() if mta == "auto" else mta
    if chosen is None:
        return None
    return chosen, default_command(chosen)


def build(
    mta: str, interval: float, command: Sequence[str], classifier: QueueClassifier
) -> QueueReader | None:
    """The queue reader for the settings (config's QueueConfig: mta, interval, command), or None when it is off
    (`none`, or `auto` finding no MTA). Raises ValueError for a choice that cannot work (see choose())."""
    chosen = choose(mta, command)
    if chosen is None:
        log.info(
            "queue reader off (--queue.mta %s%s)",
            mta,
            ": no MTA's queue command found" if mta == "auto" else "",
        )
        return None
    name, argv = chosen
    log.info("queue reader: %s, every %gs: %s", name, interval, " ".join(argv))
    return QueueReader(name, argv, classifier, interval=interval)
