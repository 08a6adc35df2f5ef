"""Standard input as a source (`--log.path -`): `docker logs -f`, `kubectl logs -f` or any pipe."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Final

from exporter.sources import Sink, SourceStatus
from exporter.sources.lines import LineSplitter

log = logging.getLogger(__name__)

NAME: Final = "-"
READ_CHUNK: Final = 1 << 16


class StdinSource:
    """Reads lines from a file descriptor until it closes; a pipe cannot be resumed, so no position is kept."""

    def __init__(self, sink: Sink, *, max_line_bytes: int, fd: int = 0) -> None:
        self._sink = sink
        self._fd = fd
        self._splitter = LineSplitter(max_line_bytes)
        self.status = SourceStatus(name=NAME, state="open", open=True)

    def statuses(self) -> list[SourceStatus]:
        return [self.status]

    def stop_waking(self) -> None:
        """Nothing to wake: the reader is blocked in read() and ends with the process."""

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                data = os.read(self._fd, READ_CHUNK)
            except OSError as err:
                log.error("standard input: %s", err)
                self._sink.error(NAME)
                break
            if not data:
                self._deliver(self._splitter.flush(), 0)
                log.info("standard input closed; still serving the metrics read so far")
                break
            self.status.offset += len(data)
            self.status.size = self.status.offset
            self._deliver(self._splitter.feed(data), len(data))
        self.status.finished = True
        self.status.state = "finished"
        self.status.open = False

    def _deliver(self, lines: list[bytes], nbytes: int) -> None:
        if lines or nbytes:
            self.status.last_read = time.time()
            self._sink.lines(NAME, lines, nbytes, None)
