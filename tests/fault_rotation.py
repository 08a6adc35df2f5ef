"""An MTA that writes continuously and a logrotate that rotates its log under it, for the fault tests.

The writer holds its log open like syslog does and reopens it only when the rotator asks (logrotate's
postrotate HUP), so after a rename it keeps appending to the rotated file for a moment. The rotator mixes four
methods: rename + create, copytruncate, delete + recreate, and rename + gzip of the rotated file once the writer
has let go of it. A deleted file's content is counted through a descriptor the rotator keeps on it, so the
ledger holds every line that ever reached a file.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

from fault_load import Totals, block, count_files

METHODS = ("rename", "copytruncate", "delete", "gzip")
_ROTATED = re.compile(r"\.(\d+)(\.gz)?$")


class Writer:
    """Appends blocks of the realistic mix at a steady pace; `reopen()` is what a HUP does to syslog."""

    def __init__(self, log: Path, *, lines_per_block: int = 50, pause: float = 0.01) -> None:
        self.log = log
        self.lines_per_block = lines_per_block
        self.pause = pause
        self.lock = threading.Lock()
        """Held for each write; copytruncate holds it to close logrotate's copy-then-truncate window."""
        self.written = 0
        self.writes = 0
        self._fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._reopen = threading.Event()
        self._reopened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            data = block(n, self.lines_per_block)
            with self.lock:
                os.write(self._fd, data)
                n += self.lines_per_block
                self.written = n
                self.writes += 1
            if self._reopen.is_set():
                self._reopen.clear()
                os.close(self._fd)
                self._fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._reopened.set()
            time.sleep(self.pause)

    def reopen(self, timeout: float = 5.0) -> None:
        """Asks the writer to reopen its log by name and waits until it has."""
        self._reopened.clear()
        self._reopen.set()
        assert self._reopened.wait(timeout), "the writer did not reopen its log"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        os.close(self._fd)


class Rotator:
    """Rotates `log` like logrotate with `rotate` unlimited: name.N -> name.N+1, then the chosen method."""

    def __init__(self, log: Path, writer: Writer) -> None:
        self.log = log
        self.writer = writer
        self.done: Counter[str] = Counter()
        self.deleted = Totals()
        """What deleted files held when the writer let go of them."""

    def rotated_files(self) -> list[Path]:
        name = self.log.name
        return sorted(
            p
            for p in self.log.parent.iterdir()
            if p.name.startswith(name) and _ROTATED.fullmatch(p.name[len(name) :])
        )

    def _shift(self) -> None:
        def number(path: Path) -> int:
            match = _ROTATED.search(path.name)
            assert match
            return int(match.group(1))

        for path in sorted(self.rotated_files(), key=number, reverse=True):
            suffix = ".gz" if path.name.endswith(".gz") else ""
            path.rename(self.log.with_name(f"{self.log.name}.{number(path) + 1}{suffix}"))

    def rotate(self, method: str) -> None:
        first = self.log.with_name(f"{self.log.name}.1")
        if method == "copytruncate":
            with self.writer.lock:
                self._shift()
                shutil.copyfile(self.log, first)
                os.truncate(self.log, 0)
        elif method == "delete":
            with open(self.log, "rb") as held:
                os.unlink(self.log)
                self.writer.reopen()
                self.deleted.add(held.read())
        else:
            self._shift()
            os.rename(self.log, first)
            self.log.touch()  # logrotate's `create`
            self.writer.reopen()
            if method == "gzip":
                with open(first, "rb") as src, gzip.open(f"{first}.gz", "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst)
                os.unlink(first)
        self.done[method] += 1

    def expected(self) -> Totals:
        """Every line in the log, its rotated files and the deleted files."""
        totals = count_files([self.log, *self.rotated_files()])
        totals += self.deleted
        return totals
