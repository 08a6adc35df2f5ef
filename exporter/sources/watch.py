"""inotify (through watchdog) on the directories that hold followed files: any change there wakes the readers of
that directory. A directory deleted and created again is watched again at the next look."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Final

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)

IGNORED_EVENTS: Final = frozenset(("opened", "closed_no_write"))
"""Reading a file is not news: without this, the follower's own opens would wake it."""


class _Handler(FileSystemEventHandler):
    def __init__(self, watch: DirectoryWatch, directory: str) -> None:
        self._watch = watch
        self._directory = directory

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED_EVENTS:
            return
        if (
            event.is_directory
            and event.event_type == "deleted"
            and os.fsdecode(event.src_path) == self._directory
        ):
            self._watch.lost(self._directory)
        self._watch.wake(self._directory)


class DirectoryWatch:
    """Watches directories for the readers registered on them; `covers(d)` is true while d's watch is alive."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._watches: dict[str, tuple[Any, tuple[int, int]]] = {}
        """directory -> (watchdog's watch, the directory's device and inode when it was watched)."""
        self._observer: Any = None

    def start(self) -> None:
        # The observer's own loop need not wake every second: the readers' stat safety net is the fallback.
        self._observer = Observer(timeout=30)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()

    def listen(self, directory: str, wake: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.setdefault(directory, []).append(wake)
        self.ensure(directory)

    def covers(self, directory: str) -> bool:
        return directory in self._watches

    def ensure(self, directory: str) -> None:
        """Watches `directory` when it exists and is not watched (again, after it was deleted or replaced)."""
        if self._observer is None:
            return
        try:
            st = os.stat(directory)
        except OSError:
            self.lost(directory)
            return
        with self._lock:
            current = self._watches.get(directory)
            if current is not None and current[1] == (st.st_dev, st.st_ino):
                return
            if current is not None:
                self._unschedule(current[0])
            try:
                watch = self._observer.schedule(_Handler(self, directory), directory, recursive=False)
            except OSError as err:
                log.warning("cannot watch %s (polling only): %s", directory, err)
                self._watches.pop(directory, None)
                return
            self._watches[directory] = (watch, (st.st_dev, st.st_ino))

    def lost(self, directory: str) -> None:
        """The directory went away: its watch is dead."""
        with self._lock:
            current = self._watches.pop(directory, None)
            if current is not None:
                self._unschedule(current[0])

    def _unschedule(self, watch: Any) -> None:
        with contextlib.suppress(KeyError, OSError):
            self._observer.unschedule(watch)

    def wake(self, directory: str) -> None:
        with self._lock:
            listeners = list(self._listeners.get(directory, ()))
        for wake in listeners:
            wake()

    def silence(self) -> None:
        """Removes every watch while still counting it as alive: what a network filesystem looks like (the watch
        exists, nothing fires). For tests of the safety net."""
        with self._lock:
            for watch, _ in self._watches.values():
                self._unschedule(watch)
