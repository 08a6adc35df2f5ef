"""The systemd journal as a source, through `journalctl -f -o json`, resumed from a saved cursor.

Each entry is rebuilt as a syslog-like line, `<ISO 8601 time> <host> <identifier>[<pid>]: <message>`, so the MTA
parsers read it like a line of a log file.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import threading
import time
from datetime import UTC, datetime
from typing import Any, Final

from exporter.children import die_with_parent
from exporter.sources import Sink, SourceStatus
from exporter.sources.lines import LineSplitter
from exporter.sources.position import JournalPosition

log = logging.getLogger(__name__)

NAME: Final = "journal"
READ_CHUNK: Final = 1 << 16
MAX_ENTRY_BYTES: Final = 1 << 20
"""A JSON entry longer than this is dropped (its MESSAGE could not be analysed anyway)."""
RETRY_SECONDS: Final = (1.0, 30.0)
"""First and longest wait before starting journalctl again after it exited."""


def entry_line(entry: dict[str, Any]) -> bytes | None:
    """The syslog-like line for one journal entry; None for an entry without a message."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # journalctl writes a non-UTF-8 message as an array of bytes
        try:
            body = bytes(message)
        except (TypeError, ValueError):
            return None
    elif isinstance(message, str):
        body = message.encode()
    else:
        return None
    try:
        stamp = datetime.fromtimestamp(int(entry["__REALTIME_TIMESTAMP"]) / 1e6, tz=UTC)
        when = stamp.isoformat(timespec="microseconds")
    except (KeyError, ValueError, TypeError, OverflowError):
        when = datetime.now(tz=UTC).isoformat(timespec="microseconds")
    host = _field(entry, "_HOSTNAME") or "localhost"
    ident = _field(entry, "SYSLOG_IDENTIFIER") or _field(entry, "_COMM") or "unknown"
    pid = _field(entry, "SYSLOG_PID") or _field(entry, "_PID")
    tag = f"{ident}[{pid}]" if pid else ident
    return f"{when} {host} {tag}: ".encode() + body.replace(b"\n", b" ")


def _field(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    if isinstance(value, list):
        value = bytes(value).decode(errors="replace") if all(isinstance(v, int) for v in value) else None
    return value if isinstance(value, str) else None


class JournalSource:
    """Runs journalctl and delivers one line per entry; restarts it (with backoff) whenever it exits."""

    def __init__(
        self,
        sink: Sink,
        *,
        units: tuple[str, ...] = (),
        identifiers: tuple[str, ...] = (),
        from_beginning: bool = False,
        saved: JournalPosition | None = None,
        journalctl: str = "journalctl",
    ) -> None:
        self._sink = sink
        self._units = units
        self._identifiers = identifiers
        self._from_beginning = from_beginning
        self._cursor: str | None = saved.cursor if saved is not None else None
        self._journalctl = journalctl
        self.status = SourceStatus(name=NAME, resumed=self._cursor is None)

    def statuses(self) -> list[SourceStatus]:
        return [self.status]

    def command(self) -> list[str]:
        """The journalctl command line that continues after the last entry read."""
        cmd = [self._journalctl, "--follow", "--output=json", "--no-pager", "--quiet"]
        if self._cursor:
            cmd += [f"--after-cursor={self._cursor}", "--no-tail"]
        elif self._from_beginning:
            cmd += ["--no-tail"]
        else:
            cmd += ["--lines=0"]
        cmd += [f"--unit={unit}" for unit in self._units]
        cmd += [f"--identifier={ident}" for ident in self._identifiers]
        return cmd

    def stop_waking(self) -> None:
        """Nothing to wake: the reader looks at `stop` at least every half second."""

    def run(self, stop: threading.Event) -> None:
        wait = RETRY_SECONDS[0]
        while not stop.is_set():
            got_entries = self._run_once(stop)
            self.status.resumed = True
            if stop.is_set():
                break
            wait = RETRY_SECONDS[0] if got_entries else min(wait * 2, RETRY_SECONDS[1])
            self._sink.error(NAME)
            self.status.state, self.status.open = "error", False
            self.status.detail = "journalctl ended"
            log.warning("journalctl ended; starting it again in %.0f s", wait)
            stop.wait(wait)

    def _run_once(self, stop: threading.Event) -> bool:
        """Runs journalctl until it exits or `stop` is set; True when it delivered at least one entry."""
        try:
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=die_with_parent(),
            )
        except OSError as err:
            log.error("cannot run journalctl: %s", err)
            return False
        assert proc.stdout is not None and proc.stderr is not None
        threading.Thread(
            target=_log_stderr, args=(proc.stderr,), daemon=True, name="journalctl-stderr"
        ).start()
        self.status.open = True
        self.status.state = "open"
        splitter = LineSplitter(MAX_ENTRY_BYTES)
        fd = proc.stdout.fileno()
        delivered = False
        try:
            while not stop.is_set():
                readable, _, _ = select.select([fd], [], [], 0.5)
                if not readable:
                    self.status.resumed = True  # journalctl has written everything after the saved cursor
                    continue
                data = os.read(fd, READ_CHUNK)
                if not data:
                    break
                delivered |= self._deliver(splitter.feed(data), len(data))
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            if not stop.is_set():
                log.warning("journalctl exited with status %s", proc.returncode)
        return delivered

    def _deliver(self, raw: list[bytes], nbytes: int) -> bool:
        lines = []
        cursor = self._cursor
        for item in raw:
            try:
                entry = json.loads(item)
            except ValueError:
                log.debug("journalctl wrote a line that is not JSON: %r", item[:100])
                continue
            if not isinstance(entry, dict):
                continue
            found = entry.get("__CURSOR")
            if JournalPosition.accepts(found):
                cursor = found
            line = entry_line(entry)
            if line is not None:
                lines.append(line)
        if cursor == self._cursor and not lines:
            return False
        self._cursor = cursor
        self.status.offset += nbytes
        self.status.size = self.status.offset
        self.status.last_read = time.time()
        self._sink.lines(NAME, lines, nbytes, JournalPosition(cursor) if cursor else None)
        return True


def _log_stderr(stream: Any) -> None:
    for raw in stream:
        log.warning("journalctl: %s", raw.decode(errors="replace").rstrip())
    stream.close()
